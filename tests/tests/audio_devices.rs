//! The real device path: two private PulseAudio servers (one per person),
//! each with a null-sink speaker and a virtual microphone. alice runs
//! `walkie talk --mic`: espeak-ng speech is played into her virtual
//! microphone once capture is live, captured through cpal, encoded, and sent
//! through a real Synapse; bob runs `walkie listen --play`, whose output goes
//! through the jitter buffer and the mixing queue to his null sink. bob's
//! speaker monitor must correlate with the speech, alice's speaker must have
//! sounded the talk-permit cue, and once the talk is over neither server
//! shows a stream of ours (the listener closes its output while it keeps
//! running).
#![recursion_limit = "256"]

use std::{process::Stdio, time::Duration};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use walkie_audio::{cues, similarity::normalised_cross_correlation, wav};
use walkie_tests::{pulse::PulseAudio, speech_wav, Synapse};

mod common;
use common::*;

fn f32_to_i16(v: &[f32]) -> Vec<i16> {
    v.iter().map(|&s| (s * 32767.0) as i16).collect()
}

/// The device tests share the machine's two cores with real-time audio:
/// run them one at a time so neither starves the other's audio threads.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mic_to_speaker_through_synapse_and_nothing_left_open() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let hs = Synapse::start().await?;
    let alice_audio = PulseAudio::start()?;
    let bob_audio = PulseAudio::start()?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = &pair_in_group(&hs, root.path(), &[]).await?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 4.0)?;

    // bob listens and plays; his speaker is recorded.
    let bob_heard = root.path().join("bob-speaker.wav");
    let bob_recorder = bob_audio.record_speaker(&bob_heard)?;
    let mut listen = bob.command();
    listen.envs(bob_audio.env());
    let (mut listener, bob_events) = spawn_listener(
        listen,
        &[
            room,
            "--play",
            "--out",
            root.path().join("bob-out").to_str().unwrap_or_default(),
            "--timeout",
            "120",
        ],
    )?;

    // alice talks from her microphone; the speech starts once capture is live.
    let alice_speaker = root.path().join("alice-speaker.wav");
    let alice_recorder = alice_audio.record_speaker(&alice_speaker)?;
    let mut talk = alice.command();
    talk.envs(alice_audio.env())
        .args(["talk", room, "--mic", "--seconds", "5.5"])
        .stdout(Stdio::piped());
    let mut talker = talk.spawn()?;
    let talk_lines = json_lines(talker.stdout.take().context("talk stdout")?);
    let (live, _) = wait_for(&talk_lines, Duration::from_secs(30), |v| {
        v["event"] == "capture_live"
    })?;
    eprintln!("alice capture live: {live}");
    let mut feed = alice_audio.play_into_mic(&speech)?;
    ensure!(
        feed.wait()?.success(),
        "paplay into the virtual microphone failed"
    );
    ensure!(talker.wait()?.success(), "walkie talk --mic failed");
    let summary: Value = talk_lines
        .try_iter()
        .last()
        .context("talk printed no summary")?;
    eprintln!("talk summary: {summary}");
    assert_eq!(summary["send_errors"], 0, "{summary}");
    assert_eq!(summary["recording"]["posted"], true, "{summary}");
    let frames = summary["frames_sent"].as_u64().unwrap_or(0);
    assert!(
        (270..=285).contains(&frames),
        "5.5 s of capture should be ~275 frames, sent {frames}"
    );

    // bob's player: the talk played, then the output closed while the
    // listener still runs; nothing of ours is left on either server.
    let (_, mut seen) = wait_for(&bob_events, Duration::from_secs(30), |v| {
        v["event"] == "saved"
    })?;
    let (_, after) = wait_for(&bob_events, Duration::from_secs(30), |v| {
        v["event"] == "output_closed"
    })?;
    seen.extend(after);
    eprintln!("bob's events until output_closed: {seen:?}");
    assert!(
        seen.iter().any(|v| v["event"] == "output_opened"),
        "bob's output never opened: {seen:?}"
    );
    assert!(
        !seen.iter().any(|v| v["event"] == "output_failed"),
        "bob's output failed: {seen:?}"
    );
    let left_bob = bob_audio.our_streams()?;
    let left_alice = alice_audio.our_streams()?;
    assert!(
        left_bob.is_empty() && left_alice.is_empty(),
        "streams left open: bob {left_bob:?}, alice {left_alice:?}"
    );
    ensure!(listener.try_wait()?.is_none(), "listener exited early");
    listener.kill()?;
    listener.wait()?;
    bob_recorder.stop()?;
    alice_recorder.stop()?;

    if let Some(dir) = std::env::var_os("WALKIE_TEST_KEEP") {
        for f in [&speech, &bob_heard, &alice_speaker] {
            std::fs::copy(
                f,
                std::path::Path::new(&dir).join(f.file_name().unwrap_or_default()),
            )?;
        }
    }
    // What bob's speaker played is the speech alice's microphone heard. The
    // jitter buffer may insert or drop a frame to adapt, which shifts the
    // rest by 20 ms, so the match is judged per 0.5 s window around the
    // talk's overall alignment.
    let source = wav::read_wav_mono_48k(&speech)?;
    let heard = wav::read_wav_mono_48k(&bob_heard)?;
    let (overall, lag) = normalised_cross_correlation(&source, &heard, heard.len().max(1) - 1);
    let windows = windowed_match(&source, &heard, lag);
    let mut sorted = windows.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    eprintln!(
        "bob's speaker: {:.2} s recorded, overall correlation {overall:.3} at lag {lag}; \
         per 0.5 s window (median {median:.3}): {windows:.2?}",
        heard.len() as f64 / 48_000.0
    );
    // Three windows in four match closely. The others straddle a jitter-
    // buffer adaptation (half the window 20 ms off scores ~0.6), most often
    // the first: the talk's first message waits for Olm session set-up, so
    // the buffer grows at the start.
    let good = windows.iter().filter(|&&w| w >= 0.8).count();
    assert!(
        median >= 0.9 && good * 4 >= windows.len() * 3,
        "bob's speaker does not match the speech: windows {windows:.2?}"
    );

    // alice heard the talk-permit cue on her speaker.
    let cue = f32_to_i16(&cues::samples(cues::Cue::TalkPermit));
    let alice_heard = wav::read_wav_mono_48k(&alice_speaker)?;
    let cue_corr = find_sound(&cue, &alice_heard);
    eprintln!("alice's speaker: permit cue correlation {cue_corr:.3}");
    assert!(
        cue_corr >= 0.8,
        "no talk-permit cue on alice's speaker: {cue_corr:.3}"
    );
    Ok(())
}

/// Correlation of `sound` with the first sound in `recording` (a steady tone
/// defeats a coarse search over the whole recording, so the search starts
/// where the recording stops being silent).
fn find_sound(sound: &[i16], recording: &[i16]) -> f64 {
    let Some(onset) = recording.iter().position(|s| s.unsigned_abs() > 300) else {
        return 0.0;
    };
    let from = onset.saturating_sub(1_000);
    let to = (onset + sound.len() + 1_000).min(recording.len());
    normalised_cross_correlation(sound, &recording[from..to], 1_500).0
}

/// The talker's sound server dies mid-talk (as when PulseAudio or PipeWire
/// crashes): the talk ends cleanly with exit code 10 naming the device,
/// what was sent before is posted as the voice message, and the listener
/// sees the talk end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_device_vanishing_mid_talk_ends_the_talk_cleanly() -> Result<()> {
    let _turn = ONE_AT_A_TIME.lock().await;
    let hs = Synapse::start().await?;
    let mut alice_audio = PulseAudio::start()?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = &pair_in_group(&hs, root.path(), &[]).await?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 8.0)?;
    let (mut listener, bob_events) = bob.listen(&[
        room,
        "--out",
        root.path().join("bob-out").to_str().unwrap_or_default(),
        "--timeout",
        "120",
    ])?;

    let mut talk = alice.command();
    talk.envs(alice_audio.env())
        .args(["talk", room, "--mic", "--no-cues", "--seconds", "30"])
        .stdout(Stdio::piped());
    let mut talker = talk.spawn()?;
    let talk_lines = json_lines(talker.stdout.take().context("talk stdout")?);
    wait_for(&talk_lines, Duration::from_secs(30), |v| {
        v["event"] == "capture_live"
    })?;
    let _feed = alice_audio.play_into_mic(&speech)?;
    // Once bob has heard a second of it (50 frames, however they were
    // batched), the sound server dies.
    let mut heard = 0;
    wait_for(&bob_events, Duration::from_secs(30), |v| {
        if v["event"] == "audio" {
            heard += v["frame_count"].as_u64().unwrap_or(0);
        }
        heard >= 50
    })?;
    alice_audio.kill()?;
    let killed = std::time::Instant::now();
    let status = talker.wait()?;
    let ended_after = killed.elapsed();
    let summary: Value = talk_lines
        .try_iter()
        .last()
        .context("talk printed no summary")?;
    eprintln!("talk ended {ended_after:?} after the server died ({status}): {summary}");
    assert_eq!(status.code(), Some(10), "exit code for a failed device");
    assert!(
        summary["device_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{summary}"
    );
    assert_eq!(summary["recording"]["posted"], true, "{summary}");
    assert!(summary["frames_sent"].as_u64() >= Some(50), "{summary}");
    assert!(
        ended_after < Duration::from_secs(5),
        "the talk took {ended_after:?} to end"
    );
    let (ended, _) = wait_for(&bob_events, Duration::from_secs(30), |v| {
        v["event"] == "talk_ended"
    })?;
    assert_eq!(ended["session_id"], summary["session_id"]);
    listener.kill()?;
    listener.wait()?;
    Ok(())
}
