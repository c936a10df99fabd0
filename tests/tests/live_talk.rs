//! Live talk through a real Synapse with the real CLI: alice (one device)
//! talks a 5 s speech WAV; bob's consenting device receives audio that
//! matches the source; bob's other device and carol (no consent) are sent no
//! walkie message at all.
#![recursion_limit = "256"]

use anyhow::{ensure, Context, Result};
use serde_json::Value;
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
