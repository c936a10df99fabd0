//! The echo peer (issue 14): bob runs `walkie echo ROOM`, which grants its
//! own consent and plays each talk it hears back into the group once the
//! talk ends, as a live talk of its own. alice talks 3 s; carol's listener
//! hears alice, then bob's echo of it (the same speech, by correlation);
//! both talks are in the room as voice messages.
#![recursion_limit = "256"]

use std::{process::Stdio, time::Duration};

use anyhow::{ensure, Context, Result};
use walkie_audio::{similarity::normalised_cross_correlation, wav};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_peer_plays_a_talk_back_as_its_own() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (people, room) = trio_in_group(&hs, root.path()).await?;
    let [(alice, _), (bob, b), (carol, _)] = &people;
    alice.ok(&["consent", &room, "--for", "1h"])?;
    carol.ok(&["consent", &room, "--for", "1h"])?;

    let mut echo = bob
        .command()
        .args(["echo", &room, "--talks", "1", "--timeout", "120"])
        .stdout(Stdio::piped())
        .spawn()?;
    let echo_rx = json_lines(echo.stdout.take().context("echo stdout")?);
    wait_for(&echo_rx, Duration::from_secs(60), |e| {
        e["event"] == "echoing"
    })?;
    // The echo's own consent reached alice: her talk goes to its device.
    until_counted(alice, &room, &b.user_id, Duration::from_secs(60))?;

    let listener = CountingListener::start(carol, &room, &root.path().join("out"))?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 3.0)?;
    let said = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    let (echoed, _) = wait_for(&echo_rx, Duration::from_secs(60), |e| {
        e["event"] == "echoed"
    })?;
    ensure!(echoed["of"] == said["session_id"], "echoed: {echoed}");
    let (saved, seen) = wait_for(&listener.rx, Duration::from_secs(60), |e| {
        e["event"] == "saved" && e["session_id"] == echoed["session_id"]
    })?;
    let started = seen
        .iter()
        .find(|e| e["event"] == "talk_started" && e["session_id"] == echoed["session_id"])
        .context("the echo did not start a talk at carol")?;
    ensure!(
        started["user_id"] == b.user_id.as_str(),
        "the echo talked as {}",
        started["user_id"]
    );
    ensure!(
        seen.iter()
            .any(|e| e["event"] == "saved" && e["session_id"] == said["session_id"]),
        "carol did not hear alice first"
    );
    let heard = wav::read_wav_mono_48k(saved["path"].as_str().context("path")?)?;
    let source = wav::read_wav_mono_48k(&speech)?;
    let (corr, lag) = normalised_cross_correlation(&source, &heard, 48_000);
    eprintln!(
        "the echo: {:.2} s, correlation with alice's speech {corr:.3} at lag {lag}",
        heard.len() as f64 / 48_000.0
    );
    // Encoded twice (alice's talk, then the echo's): one generation of Opus
    // scores 0.95 here, two about 0.87.
    ensure!(corr >= 0.8, "the echo is not alice's speech: {corr:.3}");
    let status = echo.wait()?;
    ensure!(status.success(), "walkie echo exited with {status}");
    listener.stop()?;

    // Both talks are voice messages in the room.
    let posted = voice_messages(&hs, alice, &room).await?;
    for session in [&said["session_id"], &echoed["session_id"]] {
        let n = posted
            .iter()
            .filter(|(c, _)| &c["org.matrix.msc4002.talk"]["session_id"] == session)
            .count();
        ensure!(n == 1, "talk {session} posted {n} times");
    }
    Ok(())
}
