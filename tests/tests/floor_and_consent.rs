//! Floor control and consent through a real Synapse with the real CLI:
//! two presses 10 ms apart converge on one talker; a talker killed mid-talk
//! frees the floor within the lease and its recording is posted on its next
//! start; a consent that expires mid-talk stops delivery to that device; a
//! device without consent cannot talk.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use walkie_audio::{similarity::normalised_cross_correlation, wav};
use walkie_core::engine::now_ms;
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

fn events<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|e| e["event"] == kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presses_10ms_apart_converge_on_one_talker() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let ([(alice, a), (bob, _), (carol, _)], room) = trio_in_group(&hs, root.path()).await?;
    for cli in [&alice, &bob, &carol] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 4.0)?;
    let out = root.path().join("carol-out");
    let (mut listener, rx) = carol.listen(&[
        &room,
        "--out",
        out.to_str().unwrap_or_default(),
        "--timeout",
        "25",
    ])?;

    // Both press at agreed instants 10 ms apart (after their engines are up).
    let t = now_ms() + 6000;
    let spawn = |cli: &Cli, at: u64| {
        cli.command()
            .args([
                "talk",
                &room,
                "--wav",
                speech.to_str().unwrap_or_default(),
                "--start-at",
                &at.to_string(),
            ])
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&alice, t));
        let hb = s.spawn(|| spawn(&bob, t + 10));
        (ha.join(), hb.join())
    });
    let (ra, rb) = (
        ra.map_err(|_| anyhow::anyhow!("alice panicked"))??,
        rb.map_err(|_| anyhow::anyhow!("bob panicked"))??,
    );
    // Alice pressed first, so she wins everywhere; bob hears busy naming her.
    ensure!(
        ra.status.success(),
        "alice's talk failed: {}",
        String::from_utf8_lossy(&ra.stderr)
    );
    assert_eq!(rb.status.code(), Some(8), "bob's talk: {rb:?}");
    let bob_err = String::from_utf8_lossy(&rb.stderr);
    assert!(
        bob_err.contains("busy") && bob_err.contains(&a.user_id),
        "bob's message: {bob_err}"
    );
    let alice_talk: Value = serde_json::from_slice(ra.stdout.trim_ascii())?;
    // The loser's few frames are not kept as a recording.
    let leftovers = std::fs::read_dir(bob.dir.join("outbox"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "bob's lost talk was left in his outbox");

    // Carol converged on alice and heard her whole talk.
    let (saved, before) = wait_for(&rx, Duration::from_secs(20), |e| {
        e["event"] == "saved" && e["session_id"] == alice_talk["session_id"]
    })?;
    let started = events(&before, "talk_started");
    assert_eq!(
        started.last().map(|e| e["user_id"].clone()),
        Some(Value::from(a.user_id.as_str())),
        "carol's holders: {started:?}"
    );
    let source = wav::read_wav_mono_48k(&speech)?;
    let heard = wav::read_wav_mono_48k(saved["path"].as_str().context("path")?)?;
    let len = source.len().min(heard.len());
    let (corr, lag) = normalised_cross_correlation(&source[..len], &heard[..len], 4800);
    eprintln!(
        "carol heard alice: {} samples, correlation {corr:.3} at lag {lag}",
        heard.len()
    );
    assert!(
        corr >= 0.9,
        "alice's talk was not heard unbroken: correlation {corr:.3}"
    );
    assert!(
        heard.len() + 960 * 3 >= source.len(),
        "alice's talk was cut: {} of {}",
        heard.len(),
        source.len()
    );
    let _ = listener.kill();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_talker_frees_the_floor_within_the_lease_and_posts_on_restart() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = &pair_in_group(&hs, root.path(), &[]).await?;
    let lease_ms = alice.ok(&["status", room])?["lease_ms"]
        .as_u64()
        .context("lease")?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 8.0)?;
    let (mut listener, rx) = bob.listen(&[
        room,
        "--out",
        root.path().join("out").to_str().unwrap_or_default(),
        "--timeout",
        "40",
    ])?;

    let mut talker = alice
        .command()
        .args(["talk", room, "--wav", speech.to_str().unwrap_or_default()])
        .spawn()?;
    // Once bob has heard two seconds of audio, alice's process dies.
    let mut frames = 0u64;
    wait_for(&rx, Duration::from_secs(30), |e| {
        if e["event"] == "audio" {
            frames += e["frame_count"].as_u64().unwrap_or(0);
        }
        frames >= 100
    })?;
    talker.kill()?;
    talker.wait()?;
    let killed = Instant::now();
    let (ended, _) = wait_for(&rx, Duration::from_millis(lease_ms + 3000), |e| {
        e["event"] == "talk_ended"
    })?;
    let freed_after = killed.elapsed();
    eprintln!(
        "floor free {} ms after the kill ({ended})",
        freed_after.as_millis()
    );
    assert!(
        freed_after <= Duration::from_millis(lease_ms + 500),
        "freed after {freed_after:?}"
    );
    let _ = listener.kill();

    // Nothing posted yet; alice's next start posts what was recorded.
    assert!(
        voice_messages(&hs, bob, room).await?.is_empty(),
        "posted before the restart"
    );
    alice.ok(&["status", room])?;
    let voice = voice_messages(&hs, bob, room).await?;
    assert_eq!(voice.len(), 1, "after the restart: {voice:?}");
    let seconds = opusdec_seconds(&voice[0].1, root.path())?;
    eprintln!("recovered recording: {seconds:.2} s");
    assert!(
        (1.5..8.0).contains(&seconds),
        "recovered recording lasts {seconds} s"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_consent_stops_delivery_and_no_consent_cannot_talk() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let ([(alice, a), (bob, _), (carol, _)], room) = trio_in_group(&hs, root.path()).await?;
    alice.ok(&["consent", &room, "--for", "1h"])?;
    carol.ok(&["consent", &room, "--for", "1h", "--receive-only"])?;

    // Without talk consent, talking is refused and nothing is sent.
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 8.0)?;
    let (mut carol_listen, carol_rx) = carol.listen(&[
        &room,
        "--out",
        root.path().join("c").to_str().unwrap_or_default(),
        "--timeout",
        "40",
    ])?;
    let refused = bob
        .command()
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .output()?;
    assert_eq!(
        refused.status.code(),
        Some(7),
        "bob without consent: {refused:?}"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("consent"),
        "unclear error"
    );
    let refused = carol
        .command()
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .output()?;
    assert_eq!(
        refused.status.code(),
        Some(7),
        "carol with receive-only consent: {refused:?}"
    );

    // Alice talks for 8 s; once the talk is live, bob consents for 3 s.
    let (mut bob_listen, bob_rx) = bob.listen(&[
        &room,
        "--out",
        root.path().join("b").to_str().unwrap_or_default(),
        "--timeout",
        "40",
    ])?;
    let talker = alice
        .command()
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let (_, mut carol_before) = wait_for(&carol_rx, Duration::from_secs(30), |e| {
        e["event"] == "talk_started"
    })?;
    bob.ok(&["consent", &room, "--for", "3s"])?;
    let consented_at = Instant::now();
    let done = talker.wait_with_output()?;
    ensure!(done.status.success(), "alice's talk failed: {done:?}");
    let talk: Value = serde_json::from_slice(done.stdout.trim_ascii())?;
    ensure!(talk["frames_sent"] == 400, "alice's talk: {talk}");

    // Carol (consent for an hour) heard all of it, bob only until expiry.
    let (carol_saved, rest) = wait_for(&carol_rx, Duration::from_secs(15), |e| {
        e["event"] == "saved"
    })?;
    carol_before.extend(rest);
    assert!(
        events(&carol_before, "talk_started")
            .iter()
            .all(|e| e["user_id"] == a.user_id.as_str()),
        "only alice talked"
    );
    let carol_samples = carol_saved["samples"].as_u64().unwrap_or(0);
    assert!(
        carol_samples >= 7 * 48_000,
        "carol heard {carol_samples} samples"
    );
    let bob_events = {
        let _ = bob_listen.kill();
        let _ = bob_listen.wait();
        drain(&bob_rx)
    };
    let bob_frames: u64 = events(&bob_events, "audio")
        .iter()
        .map(|e| e["frame_count"].as_u64().unwrap_or(0))
        .sum();
    let window = consented_at.elapsed();
    eprintln!(
        "bob heard {bob_frames} frames of 400 with a 3 s consent ({window:?} since consenting)"
    );
    assert!(
        bob_frames > 0,
        "bob heard nothing while consenting: {bob_events:?}"
    );
    assert!(
        bob_frames <= 160,
        "bob heard {bob_frames} frames (>3.2 s) with a 3 s consent"
    );
    let _ = carol_listen.kill();
    Ok(())
}
