//! Trust, first steps (issue 10), against a real Synapse:
//! - a walkie group exists only in an end-to-end encrypted room: `enable`
//!   on an unencrypted room is refused with a clear message, and a group
//!   marker put into one by a raw API call is ignored;
//! - only joined members count: after a kick (a raw API call, as any client
//!   makes it), the running listener of a member stops accepting the kicked
//!   member's audio (dropped with the reason) without a restart, `status`
//!   no longer lists the kicked member's device, and the next talk still
//!   reaches the members.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use serde_json::json;
use walkie_core::{
    matrix_sdk::ruma::OwnedDeviceId,
    protocol::{WalkieGroup, GROUP_EVENT_TYPE},
};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkie_groups_exist_only_in_encrypted_rooms() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let mut people = users(&hs, root.path(), &["alice"]).await?;
    let (alice, a) = people.pop().context("alice")?;
    let (status, created) = raw_api(
        &hs,
        Method::POST,
        &a.access_token,
        "/_matrix/client/v3/createRoom",
        json!({"name": "Plain", "preset": "private_chat"}),
    )
    .await?;
    ensure!(status.is_success(), "createRoom: {status}");
    let room = created["room_id"].as_str().context("room_id")?.to_owned();

    let out = alice.command().args(["enable", &room]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("not end-to-end encrypted"),
        "unclear refusal: {stderr}"
    );

    // A marker written around the client is not taken for a group.
    let (status, _) = raw_api(
        &hs,
        Method::PUT,
        &a.access_token,
        &format!("/_matrix/client/v3/rooms/{room}/state/{GROUP_EVENT_TYPE}/"),
        WalkieGroup::default().to_content(),
    )
    .await?;
    ensure!(status.is_success(), "marker: {status}");
    let out = alice.command().args(["status", &room]).output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("not a walkie group"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_member_is_neither_listed_nor_heard() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let ([(alice, a), (bob, b), (carol, c)], room) = trio_in_group(&hs, root.path()).await?;
    for cli in [&alice, &bob, &carol] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let devices_of = |status: &serde_json::Value, user: &str| -> Vec<String> {
        status["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["user_id"] == user)
            .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
            .collect()
    };
    let listed = |status: &serde_json::Value, user: &str| !devices_of(status, user).is_empty();
    let before = alice.ok(&["status", &room])?;
    ensure!(listed(&before, &c.user_id), "{before}");
    let bob_device: OwnedDeviceId = devices_of(&before, &b.user_id)
        .pop()
        .context("bob's device in status")?
        .into();

    // carol listens too, counting every walkie to-device message her client
    // receives: a talk before the kick reaches her (the count works)…
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;
    let speech_arg = speech.to_str().unwrap_or_default();
    let carol_listener = CountingListener::start(&carol, &room, &root.path().join("carol-out"))?;
    let before_kick = alice.ok(&["talk", &room, "--wav", speech_arg])?;
    wait_for(&carol_listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "saved" && e["session_id"] == before_kick["session_id"]
    })?;
    let received_before_kick = carol_listener.received()?;
    ensure!(received_before_kick > 0, "carol's count saw nothing");

    // bob listens throughout: nobody restarts after the kick.
    let (mut listener, rx) = bob.listen(&[
        &room,
        "--out",
        root.path().join("bob-out").to_str().unwrap_or_default(),
        "--timeout",
        "120",
    ])?;
    let (status, _) = raw_api(
        &hs,
        Method::POST,
        &a.access_token,
        &format!("/_matrix/client/v3/rooms/{room}/kick"),
        json!({"user_id": c.user_id, "reason": "test"}),
    )
    .await?;
    ensure!(status.is_success(), "kick: {status}");
    // bob's engine re-reads the room when the kick arrives.
    wait_for(&rx, Duration::from_secs(30), |e| {
        e["event"] == "room_changed" && e["room_id"] == room.as_str()
    })?;
    assert!(
        !listed(&alice.ok(&["status", &room])?, &c.user_id),
        "the kicked member's device is still listed"
    );
    assert!(
        !listed(&bob.ok(&["status", &room])?, &c.user_id),
        "bob still lists the kicked member's device"
    );

    // carol, kicked, sends a well-formed claim with audio to bob's device
    // from her own Olm session: bob drops it, saying why.
    hostile_claim(&hs, &carol, &room, &b.user_id, bob_device.as_str()).await?;
    let (dropped, seen) = wait_for(&rx, Duration::from_secs(30), |e| {
        e["event"] == "dropped" && e["reason"].as_str().is_some_and(|r| r.contains(&c.user_id))
    })?;
    assert!(
        dropped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a joined member")),
        "{dropped}"
    );
    assert!(
        !seen.iter().any(|e| e["event"] == "talk_started"),
        "the kicked member's talk was played: {seen:?}"
    );

    // The members still hear each other; the kicked member's client, still
    // running, receives nothing of the talk.
    let talk = alice.ok(&["talk", &room, "--wav", speech_arg])?;
    let (saved, _) = wait_for(&rx, Duration::from_secs(30), |e| e["event"] == "saved")?;
    assert_eq!(saved["session_id"], talk["session_id"]);
    assert_eq!(
        carol_listener.received()?,
        received_before_kick,
        "the kicked member's device was sent messages of the talk"
    );
    carol_listener.stop()?;
    listener.kill()?;
    listener.wait()?;
    Ok(())
}
