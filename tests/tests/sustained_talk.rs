//! Sixty seconds of continuous talk against Synapse's stock rate limits:
//! no request is refused (no 429 in the homeserver's log), no frame is lost.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{Context, Result};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_seconds_of_talk_get_no_429_and_lose_no_frame() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    // Talks may last up to two minutes in this group.
    let Pair {
        alice, bob, room, ..
    } = &pair_in_group(&hs, root.path(), &["--max-talk", "120"]).await?;
    let speech = root.path().join("speech.wav");
    // espeak's text is shorter than a minute: loop it with sox.
    let one = root.path().join("one.wav");
    speech_wav(&one, 15.0)?;
    let status = std::process::Command::new("sox")
        .arg(&one)
        .arg(&speech)
        .args(["repeat", "5", "trim", "0", "60"])
        .status()?;
    anyhow::ensure!(status.success(), "sox failed");
    let (mut listener, rx) = bob.listen(&[
        room,
        "--out",
        root.path().join("out").to_str().unwrap_or_default(),
        "--timeout",
        "120",
    ])?;

    let talk = alice.ok(&["talk", room, "--wav", speech.to_str().unwrap_or_default()])?;
    assert_eq!(talk["frames_sent"], 3000, "talk: {talk}");
    assert_eq!(talk["send_errors"], 0, "talk: {talk}");
    let (saved, before) = wait_for(&rx, Duration::from_secs(30), |e| e["event"] == "saved")?;
    let frames: u64 = before
        .iter()
        .filter(|e| e["event"] == "audio")
        .map(|e| e["frame_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(frames, 3000, "bob received {frames} of 3000 frames");
    assert!(
        !before.iter().any(|e| e["event"] == "dropped"),
        "bob dropped messages"
    );
    assert_eq!(saved["samples"].as_u64().context("samples")?, 3000 * 960);
    let log = hs.log_tail(1_000_000);
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("B 429 \"")).collect();
    assert!(
        refused.is_empty(),
        "the homeserver rate-limited us: {refused:?}"
    );
    let requests = log
        .lines()
        .filter(|l| l.contains("PUT /_matrix/client/v3/sendToDevice/"))
        .count();
    eprintln!(
        "60 s talk: {requests} to-device PUTs ({:.1}/s), no 429",
        requests as f64 / 60.0
    );
    let _ = listener.kill();
    Ok(())
}
