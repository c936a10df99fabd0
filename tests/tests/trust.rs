//! Trust (issue 10), tried as an attacker would, against a real Synapse
//! with real cross-signing:
//! - a device added to a member's account that its owner never signed (a
//!   password login, as a homeserver admin or a thief with the password
//!   makes one; it uploads its own keys) is sent nothing from a talk —
//!   counted at its client — and its audio is dropped, saying why, while a
//!   device its owner signed hears the talk;
//! - emoji (SAS) verification between two Walkie devices of one user, both
//!   sides comparing the emoji and confirming; after it the new device
//!   hears talks; a third device verified with the recovery key hears too;
//! - consent only its owner can write (another member's write of it is
//!   refused by the homeserver), and a grant not signed by its device
//!   counts as no consent;
//! - an identity change (bob resets his cross-signing identity): alice's
//!   next talk does not reach bob until alice accepts the change.
#![recursion_limit = "256"]

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

fn device_ids(status: &Value, key: &str) -> Vec<String> {
    status[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["device_id"].as_str().map(str::to_owned))
        .collect()
}

fn exclusion(status: &Value, device: &str) -> Option<String> {
    status["excluded"]
        .as_array()?
        .iter()
        .find(|d| d["device_id"] == device)
        .and_then(|d| d["reason"].as_str().map(str::to_owned))
}

/// Talks `seconds` of speech from `cli` into `room`; the talk's session id.
fn talk(cli: &Cli, room: &str, dir: &Path, seconds: f64) -> Result<String> {
    let speech = dir.join(format!("speech-{seconds}.wav"));
    if !speech.exists() {
        speech_wav(&speech, seconds)?;
    }
    let out = cli.ok(&["talk", room, "--wav", speech.to_str().unwrap_or_default()])?;
    Ok(out["session_id"].as_str().context("session id")?.to_owned())
}

fn saved(rx: &std::sync::mpsc::Receiver<Value>, session: &str) -> Result<()> {
    wait_for(rx, Duration::from_secs(30), |e| {
        e["event"] == "saved" && e["session_id"] == session
    })?;
    Ok(())
}

/// Signs a new CLI device in as `user`; its login output.
fn new_device(
    hs: &Synapse,
    root: &Path,
    name: &str,
    user: &walkie_tests::Registered,
) -> Result<(Cli, Value)> {
    let cli = Cli::new(root, name);
    let out = login(hs, &cli, user)?;
    Ok((cli, out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_devices_their_owner_signed_hear_and_are_heard() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let dir = root.path();
    let (alice_r, bob_r) = (hs.register("alice").await?, hs.register("bob").await?);
    let (alice, alice_login) = new_device(&hs, dir, "alice", &alice_r)?;
    let (bob1, bob1_login) = new_device(&hs, dir, "bob1", &bob_r)?;
    // First sign-in of each account: an identity with a recovery key.
    for out in [&alice_login, &bob1_login] {
        assert_eq!(out["device_state"], "verified", "{out}");
        ensure!(
            out["recovery_key"].as_str().is_some_and(|k| k.len() > 40),
            "{out}"
        );
    }
    let recovery_key = bob1_login["recovery_key"]
        .as_str()
        .context("key")?
        .to_owned();
    // A device added to bob's account: its own keys, never signed by bob.
    let (rogue, rogue_login) = new_device(&hs, dir, "rogue", &bob_r)?;
    assert_eq!(rogue_login["device_state"], "unverified", "{rogue_login}");
    assert!(rogue_login["recovery_key"].is_null(), "{rogue_login}");
    let rogue_device = rogue_login["device_id"]
        .as_str()
        .context("device")?
        .to_owned();
    let bob1_device = bob1_login["device_id"]
        .as_str()
        .context("device")?
        .to_owned();

    let room = group(&alice, &[(&bob1, &bob_r.user_id)], &[])?;
    for cli in [&alice, &bob1, &rogue] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let status = alice.ok(&["status", &room])?;
    let listed = device_ids(&status, "devices");
    assert!(listed.contains(&bob1_device), "{status}");
    assert!(
        !listed.contains(&rogue_device),
        "the rogue device is listed: {status}"
    );
    assert_eq!(
        exclusion(&status, &rogue_device).as_deref(),
        Some("not_signed_by_owner"),
        "{status}"
    );

    let rogue_listener = CountingListener::start(&rogue, &room, &dir.join("rogue-out"))?;
    let bob1_listener = CountingListener::start(&bob1, &room, &dir.join("bob1-out"))?;
    let session = talk(&alice, &room, dir, 2.0)?;
    saved(&bob1_listener.rx, &session)?;
    assert!(
        bob1_listener.received()? > 0,
        "the signed device's log counts nothing"
    );
    assert_eq!(
        rogue_listener.received()?,
        0,
        "the unsigned device was sent walkie messages"
    );
    assert!(
        !drain(&rogue_listener.rx)
            .iter()
            .any(|e| e["event"] == "talk_started"),
        "the unsigned device heard the talk"
    );

    // The rogue talks: alice's listener drops it and says why.
    let alice_listener = CountingListener::start(&alice, &room, &dir.join("alice-out"))?;
    // Walkie itself refuses to talk from an unverified device, saying why;
    // a hostile client would send anyway, so the rogue's audio goes out
    // around Walkie's rules.
    let refused = rogue
        .command()
        .args(["talk", &room, "--wav"])
        .arg(dir.join("speech-2.wav"))
        .output()?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("not verified"), "{stderr}");
    let alice_device = alice_login["device_id"].as_str().context("device")?;
    hostile_claim(&hs, &rogue, &room, &alice_r.user_id, alice_device).await?;
    let (dropped, seen) = wait_for(&alice_listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "dropped"
    })?;
    assert!(
        dropped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not signed by its owner")),
        "{dropped}"
    );
    assert!(
        !seen.iter().any(|e| e["event"] == "talk_started"),
        "{seen:?}"
    );
    rogue_listener.stop()?;

    // Emoji verification of a second device against bob1.
    let (bob2, bob2_login) = new_device(&hs, dir, "bob2", &bob_r)?;
    assert_eq!(bob2_login["device_state"], "unverified");
    let bob2_device = bob2_login["device_id"]
        .as_str()
        .context("device")?
        .to_owned();
    bob1_listener.stop()?;
    let mut accept = bob1
        .command()
        .args(["verify", "accept"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let accept_out = json_lines(accept.stdout.take().context("stdout")?);
    // bob1 listens (and knows bob2's keys) before bob2 asks: matrix-sdk
    // drops a request from a device it has not fetched yet.
    wait_for(&accept_out, Duration::from_secs(60), |e| {
        e["waiting_for"] == "verification request"
    })?;
    let mut request = bob2
        .command()
        .args(["verify", "request", &bob1_device])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let request_out = json_lines(request.stdout.take().context("stdout")?);
    let emoji_of = |rx: &std::sync::mpsc::Receiver<Value>| -> Result<Value> {
        Ok(wait_for(rx, Duration::from_secs(60), |e| e.get("emoji").is_some())?.0["emoji"].clone())
    };
    let (on_bob1, on_bob2) = (emoji_of(&accept_out)?, emoji_of(&request_out)?);
    assert_eq!(on_bob1.as_array().map(Vec::len), Some(7), "{on_bob1}");
    assert_eq!(on_bob1, on_bob2, "the two devices show different emoji");
    for child in [&mut accept, &mut request] {
        use std::io::Write;
        child.stdin.take().context("stdin")?.write_all(b"yes\n")?;
    }
    for (child, rx) in [(&mut accept, &accept_out), (&mut request, &request_out)] {
        let (done, _) = wait_for(rx, Duration::from_secs(60), |e| {
            e.get("device_state").is_some()
        })?;
        ensure!(child.wait()?.success(), "verify failed: {done}");
    }
    let state = bob2.ok(&["verify", "status"])?;
    assert_eq!(state["device_state"], "verified", "{state}");

    // A third device, verified with the recovery key.
    let (bob3, _) = new_device(&hs, dir, "bob3", &bob_r)?;
    let mut cmd = bob3.command();
    cmd.env("WALKIE_RECOVERY_KEY", &recovery_key);
    let state = ok_output(cmd, &["verify", "recovery-key"])?;
    assert_eq!(state["device_state"], "verified", "{state}");
    let mut cmd = bob3.command();
    cmd.env("WALKIE_RECOVERY_KEY", "EsTc 1234 wrong key");
    let wrong = cmd.args(["verify", "recovery-key"]).output()?;
    assert!(!wrong.status.success());

    // Both newly verified devices hear alice.
    for cli in [&bob2, &bob3] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let bob2_listener = CountingListener::start(&bob2, &room, &dir.join("bob2-out"))?;
    let bob3_listener = CountingListener::start(&bob3, &room, &dir.join("bob3-out"))?;
    let status = alice.ok(&["status", &room])?;
    assert!(
        device_ids(&status, "devices").contains(&bob2_device),
        "{status}"
    );
    let session = talk(&alice, &room, dir, 2.0)?;
    saved(&bob2_listener.rx, &session)?;
    saved(&bob3_listener.rx, &session)?;
    for l in [bob2_listener, bob3_listener, alice_listener] {
        l.stop()?;
    }
    let _ = Command::new("true").status();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_only_its_owner_can_write_and_sign() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let ([(alice, a), (bob, b), (_carol, c)], room) = trio_in_group(&hs, root.path()).await?;
    alice.ok(&["consent", &room, "--for", "1h"])?;
    bob.ok(&["consent", &room, "--for", "1h"])?;
    let before = alice.ok(&["status", &room])?;
    let alice_devices = device_ids(&before, "devices");
    ensure!(alice_devices.len() == 2, "{before}");

    // carol, a member, writes alice's consent: the homeserver refuses.
    let path = |user: &str| {
        format!(
            "/_matrix/client/v3/rooms/{room}/state/{}/{user}",
            walkie_core::protocol::CONSENT_EVENT_TYPE
        )
    };
    let (status, _) = raw_api(
        &hs,
        Method::PUT,
        &c.access_token,
        &path(&a.user_id),
        json!({"devices": {}}),
    )
    .await?;
    assert_eq!(
        status.as_u16(),
        403,
        "a member wrote someone else's consent"
    );
    assert_eq!(
        device_ids(&alice.ok(&["status", &room])?, "devices"),
        alice_devices
    );

    // A grant for bob's real device that the device did not sign (as a
    // homeserver could forge it, here written with bob's own token).
    let bob_device = device_ids(&before, "devices")
        .into_iter()
        .find(|d| {
            before["devices"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|x| x["device_id"] == d.as_str() && x["user_id"] == b.user_id.as_str())
            })
        })
        .context("bob's device")?;
    let (_, current) = raw_api(
        &hs,
        Method::GET,
        &b.access_token,
        &path(&b.user_id),
        Value::Null,
    )
    .await?;
    let mut forged = current.clone();
    let entry = &mut forged["devices"][&bob_device];
    entry["expires_ts"] = json!(walkie_core::engine::now_ms() + 86_400_000);
    let (status, _) = raw_api(&hs, Method::PUT, &b.access_token, &path(&b.user_id), forged).await?;
    ensure!(status.is_success(), "{status}");
    let after = alice.ok(&["status", &room])?;
    assert!(
        !device_ids(&after, "devices").contains(&bob_device),
        "{after}"
    );
    assert_eq!(
        exclusion(&after, &bob_device).as_deref(),
        Some("bad_consent_signature"),
        "{after}"
    );

    // bob's own client grants again, signed: it counts.
    bob.ok(&["consent", &room, "--for", "1h"])?;
    let again = alice.ok(&["status", &room])?;
    assert!(
        device_ids(&again, "devices").contains(&bob_device),
        "{again}"
    );

    // Another device of bob's writes his content without this device's
    // entry (a concurrent read-modify-write): bob's running client puts its
    // grant back by itself. Each state change reaches bob's listener as
    // `room_changed`; after each, alice's view is checked.
    let listener = CountingListener::start(&bob, &room, &root.path().join("bob-out"))?;
    let (status, _) = raw_api(
        &hs,
        Method::PUT,
        &b.access_token,
        &path(&b.user_id),
        json!({"devices": {}}),
    )
    .await?;
    ensure!(status.is_success(), "{status}");
    // The PUT was acknowledged before alice's fresh client syncs, so
    // seeing bob's device listed again means bob's client re-asserted it.
    let listed = |s: &Value| device_ids(s, "devices").contains(&bob_device);
    let back = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "room_changed" && matches!(alice.ok(&["status", &room]), Ok(s) if listed(&s))
    });
    if let Err(e) = back {
        anyhow::bail!("{e:#}\nbob's log:\n{}", listener.log()?);
    }
    let (_, content) = raw_api(
        &hs,
        Method::GET,
        &b.access_token,
        &path(&b.user_id),
        Value::Null,
    )
    .await?;
    assert!(content["devices"].get(&bob_device).is_some(), "{content}");
    listener.stop()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_identity_is_not_talked_to_until_accepted() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let dir = root.path();
    let Pair {
        alice,
        bob,
        bob_r,
        room,
    } = pair_in_group(&hs, dir, &[]).await?;
    let bob_device = bob.ok(&["verify", "status"])?;
    ensure!(bob_device["device_state"] == "verified", "{bob_device}");
    let before = alice.ok(&["status", &room])?;
    ensure!(device_ids(&before, "devices").len() == 2, "{before}");

    // bob replaces his identity (his device is signed by the new one).
    let mut cmd = bob.command();
    cmd.env("WALKIE_PASSWORD", &bob_r.password);
    let reset = ok_output(cmd, &["recovery", "reset"])?;
    ensure!(reset["recovery_key"].is_string(), "{reset}");

    let listener = CountingListener::start(&bob, &room, &dir.join("bob-out"))?;
    let status = alice.ok(&["status", &room])?;
    let bob_devices: Vec<String> = status["excluded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["user_id"] == bob_r.user_id.as_str())
        .map(|d| d["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(bob_devices, vec!["identity_changed".to_owned()], "{status}");
    assert_eq!(device_ids(&status, "devices").len(), 1, "{status}");
    let session = talk(&alice, &room, dir, 1.0)?;
    // The talk's recording reaches the room; bob's device got no live audio.
    assert_eq!(listener.received()?, 0, "bob's device was sent live audio");

    alice.ok(&["accept-identity", &bob_r.user_id])?;
    let status = alice.ok(&["status", &room])?;
    assert_eq!(device_ids(&status, "devices").len(), 2, "{status}");
    let session2 = talk(&alice, &room, dir, 1.0)?;
    saved(&listener.rx, &session2)?;
    assert_ne!(session, session2);
    listener.stop()?;
    Ok(())
}
