//! The homeserver crashes mid-talk (issue 13): Synapse is killed with
//! SIGKILL 2 s into alice's 8 s talk and started again 3 s later (longer
//! than the lease). Alice's recording, journalled on her disk all along, is
//! posted exactly once after it returns, whole; a later run of her client
//! does not post it again; bob's listener, never restarted, reconnects and
//! saves her next talk.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

/// Voice messages in `room` that are the recording of `session`, as
/// `cli` reads them (not a client whose process is running: the store is
/// shared).
async fn recordings_of(hs: &Synapse, cli: &Cli, room: &str, session: &str) -> Result<Vec<Value>> {
    Ok(voice_messages(hs, cli, room)
        .await?
        .into_iter()
        .map(|(content, _)| content)
        .filter(|c| c["org.matrix.msc4002.talk"]["session_id"] == session)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_homeserver_killed_mid_talk_loses_no_recording_and_listeners_recover() -> Result<()> {
    let mut hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (Pair { alice, room, .. }, listener, speech) =
        pair_listening(&hs, root.path(), 8.0).await?;
    let talk_log = root.path().join("alice-talk.log");
    let talk = alice
        .command()
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&talk_log)?)
        .spawn()?;

    // 2 s of alice's talk reached bob: the homeserver dies.
    wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "audio" && e["frame_index"].as_u64().is_some_and(|i| i >= 100)
    })?;
    hs.kill()?;
    let killed = Instant::now();
    // The outage itself (a fault of fixed length, not a wait for an event).
    tokio::time::sleep(Duration::from_secs(3)).await;
    hs.restart().await?;
    eprintln!("homeserver down for {} ms", killed.elapsed().as_millis());

    let done = talk.wait_with_output()?;
    let log = std::fs::read_to_string(&talk_log).unwrap_or_default();
    ensure!(done.status.success(), "alice's talk failed: {log}");
    let summary = last_json_line(&done.stdout).context("alice's talk summary")?;
    eprintln!("alice's talk: {summary}");
    let session = summary["session_id"]
        .as_str()
        .context("session id")?
        .to_owned();
    ensure!(
        summary["send_errors"].as_u64().unwrap_or(0) > 0,
        "no send failed: the homeserver was not down during the talk? {summary}"
    );

    // Posted exactly once, whole (8 s), once the homeserver was back.
    let deadline = Instant::now() + Duration::from_secs(60);
    let posted = loop {
        let found = recordings_of(&hs, &alice, &room, &session).await?;
        if !found.is_empty() {
            break found;
        }
        ensure!(
            Instant::now() < deadline,
            "alice's recording was never posted"
        );
        // Alice's client posts from its outbox on its next run.
        alice.ok(&["status", &room])?;
    };
    assert_eq!(posted.len(), 1, "posted {} times: {posted:?}", posted.len());
    let ms = posted[0]["info"]["duration"].as_u64().unwrap_or(0);
    assert!(
        (7_500..=8_500).contains(&ms),
        "posted {ms} ms of 8 s: {}",
        posted[0]
    );
    // Another run of alice's client posts nothing again.
    alice.ok(&["status", &room])?;
    let again = recordings_of(&hs, &alice, &room, &session).await?;
    assert_eq!(again.len(), 1, "posted again: {again:?}");

    // Bob's listener, never restarted, is back: it saves alice's next talk.
    let short = root.path().join("short.wav");
    speech_wav(&short, 2.0)?;
    let next = alice.ok(&["talk", &room, "--wav", short.to_str().unwrap_or_default()])?;
    let (saved, _) = wait_for(&listener.rx, Duration::from_secs(60), |e| {
        e["event"] == "saved" && e["session_id"] == next["session_id"]
    })?;
    assert!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "saved: {saved}"
    );

    // Nothing the homeserver keeps (database, media store, its log) holds
    // a recording's plaintext (Ogg/Opus headers) or unencrypted walkie
    // audio (its `frames` field).
    let needles: Vec<&[u8]> = PLAINTEXT_AUDIO
        .into_iter()
        .chain([b"\"frames\"".as_slice()])
        .collect();
    let leaks = files_holding(hs.dir(), &needles)?;
    assert!(leaks.is_empty(), "plaintext at the homeserver: {leaks:#?}");
    listener.stop()
}
