//! Live talk through a real Synapse with the real CLI: alice (one device)
//! talks a 5 s speech WAV; bob's consenting device receives audio that
//! matches the source; bob's other device and carol (no consent) are sent no
//! walkie message at all. And a talk's voice message, a text message or a
//! receipt in the group does not make a listener re-read the group (one
//! `room_changed` per talk, in every app, for nothing); a state event does.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use walkie_audio::{similarity::normalised_cross_correlation, wav};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_talks_and_only_bobs_consenting_device_hears_it() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (alice_r, bob_r, carol_r) = (
        hs.register("alice").await?,
        hs.register("bob").await?,
        hs.register("carol").await?,
    );
    let (alice, bob1, bob2, carol) = (
        Cli::new(root.path(), "alice"),
        Cli::new(root.path(), "bob1"),
        Cli::new(root.path(), "bob2"),
        Cli::new(root.path(), "carol"),
    );
    login(&hs, &alice, &alice_r)?;
    let bob1_device = login(&hs, &bob1, &bob_r)?["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    login(&hs, &bob2, &bob_r)?;
    login(&hs, &carol, &carol_r)?;

    let room = alice.ok(&[
        "create",
        "Walkie test",
        "--invite",
        &bob_r.user_id,
        "--invite",
        &carol_r.user_id,
    ])?;
    let room = room["room_id"].as_str().context("no room id")?.to_owned();
    bob1.ok(&["join", &room])?;
    carol.ok(&["join", &room])?;
    alice.ok(&["consent", &room, "--for", "1h"])?;
    bob1.ok(&["consent", &room, "--for", "1h"])?;

    let status = alice.ok(&["status", &room])?;
    let devices: Vec<&str> = status["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert_eq!(devices.len(), 2, "status: {status}");
    assert!(devices.contains(&bob1_device.as_str()), "status: {status}");

    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 5.0)?;
    let out1 = root.path().join("out-bob1");
    let (mut l1, rx1) = bob1.listen(&[
        &room,
        "--out",
        out1.to_str().unwrap_or_default(),
        "--talks",
        "1",
        "--timeout",
        "60",
    ])?;
    let (mut l2, rx2) = bob2.listen(&[
        &room,
        "--out",
        root.path().join("out-bob2").to_str().unwrap_or_default(),
        "--timeout",
        "12",
    ])?;
    let (mut l3, rx3) = carol.listen(&[
        &room,
        "--out",
        root.path().join("out-carol").to_str().unwrap_or_default(),
        "--timeout",
        "12",
    ])?;

    let summary = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    assert_eq!(summary["send_errors"], 0, "talk: {summary}");
    assert_eq!(summary["frames_sent"], 250, "talk: {summary}");

    ensure!(l1.wait()?.success(), "bob1's listener failed");
    let events1: Vec<Value> = rx1.try_iter().collect();
    let saved = events1
        .iter()
        .find(|e| e["event"] == "saved")
        .with_context(|| format!("bob1 saved no talk: {events1:?}"))?;
    assert_eq!(saved["session_id"], summary["session_id"]);
    assert!(events1
        .iter()
        .any(|e| e["event"] == "talk_started" && e["user_id"] == alice_r.user_id.as_str()));
    assert!(
        !events1.iter().any(|e| e["event"] == "dropped"),
        "bob1 dropped messages: {events1:?}"
    );

    let source = wav::read_wav_mono_48k(&speech)?;
    let heard = wav::read_wav_mono_48k(saved["path"].as_str().context("no path")?)?;
    let len = source.len().min(heard.len());
    let (corr, lag) = normalised_cross_correlation(&source[..len], &heard[..len], 4800);
    eprintln!(
        "bob1 heard {} samples; correlation {corr:.3} at lag {lag}",
        heard.len()
    );
    assert!(
        corr >= 0.9,
        "received audio does not match the source: correlation {corr:.3}"
    );
    assert!(
        (heard.len() as i64 - source.len() as i64).abs() <= 960 * 2,
        "length {} vs {}",
        heard.len(),
        source.len()
    );

    // bob's other device and carol never got a walkie message: no talk, no
    // audio, and nothing dropped (a dropped event would mean one arrived).
    ensure!(
        l2.wait()?.success() && l3.wait()?.success(),
        "a non-consenting listener failed"
    );
    for (who, rx) in [("bob2", rx2), ("carol", rx3)] {
        let events: Vec<Value> = rx.try_iter().collect();
        let walkie: Vec<&Value> = events
            .iter()
            .filter(|e| {
                ["talk_started", "audio", "talk_ended", "dropped", "saved"]
                    .contains(&e["event"].as_str().unwrap_or(""))
            })
            .collect();
        assert!(walkie.is_empty(), "{who} got walkie traffic: {walkie:?}");
    }

    // The room holds exactly one voice message for the talk; its file,
    // downloaded and decrypted here, is a valid 5 s Ogg Opus stream.
    assert_eq!(summary["recording"]["posted"], true, "talk: {summary}");
    let voice = voice_messages(&hs, &bob1, &room).await?;
    assert_eq!(voice.len(), 1, "voice messages: {voice:?}");
    let (content, ogg) = &voice[0];
    assert_eq!(content["body"], "Voice message");
    assert!(
        content.get("org.matrix.msc3245.voice").is_some(),
        "not a voice message: {content}"
    );
    assert_eq!(
        content["org.matrix.msc4002.talk"]["session_id"],
        summary["session_id"]
    );
    assert_eq!(content["info"]["mimetype"], "audio/ogg");
    let waveform = content["org.matrix.msc1767.audio"]["waveform"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        waveform.len() >= 30
            && waveform
                .iter()
                .all(|v| v.as_u64().is_some_and(|v| v <= 1024)),
        "waveform: {waveform:?}"
    );
    assert!(
        waveform.iter().any(|v| v.as_u64() > Some(0)),
        "silent waveform"
    );
    walkie_audio::ogg_opus::read_ogg_opus(ogg)?;
    let seconds = opusdec_seconds(ogg, root.path())?;
    eprintln!("recording: {} bytes, {seconds:.3} s by opusdec", ogg.len());
    assert!(
        (seconds - 5.0).abs() <= 0.1,
        "recording lasts {seconds} s, not 5 s ± 2 %"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_state_events_make_a_listener_re_read_the_group() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = &pair_in_group(&hs, root.path(), &[]).await?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 1.0)?;
    let speech = speech.to_str().unwrap_or_default();
    let out = root.path().join("bob-out");
    let (mut listener, rx) = bob.listen(&[
        room,
        "--out",
        out.to_str().unwrap_or_default(),
        "--timeout",
        "120",
    ])?;
    let limit = Duration::from_secs(30);
    let is = |name: &'static str| move |e: &Value| e["event"] == name;

    // The first talk: what bob's start-up re-read comes before its end.
    alice.ok(&["talk", room, "--wav", speech])?;
    wait_for(&rx, limit, is("saved"))?;
    // alice's talk has posted its voice message; then a text message and a
    // receipt on it, as any client sends them.
    let token = access_token(alice)?;
    let (status, sent) = raw_api(
        &hs,
        Method::PUT,
        &token,
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"),
        json!({"msgtype": "m.text", "body": "dinner at 7"}),
    )
    .await?;
    ensure!(status.is_success(), "message: {status}");
    let event_id = sent["event_id"].as_str().context("event_id")?;
    let (status, _) = raw_api(
        &hs,
        Method::POST,
        &token,
        &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
        json!({}),
    )
    .await?;
    ensure!(status.is_success(), "receipt: {status}");
    // The second talk's claim reaches bob in a sync no older than those
    // events, and the engine applies a sync's rooms before its to-device
    // messages: any re-read they caused is printed before `talk_started`.
    alice.ok(&["talk", room, "--wav", speech])?;
    let (_, between) = wait_for(&rx, limit, is("talk_started"))?;
    let reread: Vec<&Value> = between
        .iter()
        .filter(|e| e["event"] == "room_changed")
        .collect();
    ensure!(
        reread.is_empty(),
        "a voice message, a text message or a receipt re-read the group: {between:?}"
    );
    wait_for(&rx, limit, is("saved"))?;

    // A state event does.
    let (status, _) = raw_api(
        &hs,
        Method::PUT,
        &token,
        &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
        json!({"topic": "the kitchen"}),
    )
    .await?;
    ensure!(status.is_success(), "topic: {status}");
    wait_for(&rx, limit, |e| {
        e["event"] == "room_changed" && e["room_id"] == room.as_str()
    })?;
    listener.kill()?;
    listener.wait()?;
    Ok(())
}
