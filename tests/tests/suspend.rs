//! Suspend and resume (issue 13): bob's listener is stopped (SIGSTOP) while
//! alice talks, for 2 minutes, then continued (SIGCONT): to the process the
//! wall clock jumped 2 minutes ahead at once, as after a laptop's sleep
//! (unlike a real sleep, its monotonic clock jumped too). Its sync resumes
//! and brings the backlog: alice's talk from before, now stale, is not
//! honoured (no talk starts from it); her next talk is saved whole.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_listener_drops_stale_talks_and_hears_the_next() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = pair_in_group(&hs, root.path(), &[]).await?;
    let listener = CountingListener::start(&bob, &room, &root.path().join("out"))?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;

    signal(listener.pid(), libc::SIGSTOP)?;
    let stopped = Instant::now();
    let before = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    // The rest of the suspension (a fault of fixed length).
    tokio::time::sleep(Duration::from_secs(120).saturating_sub(stopped.elapsed())).await;
    signal(listener.pid(), libc::SIGCONT)?;
    let suspended = stopped.elapsed();

    let after = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    let (saved, seen) = wait_for(&listener.rx, Duration::from_secs(60), |e| {
        e["event"] == "saved" && e["session_id"] == after["session_id"]
    })?;
    ensure!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "saved: {saved}"
    );
    let stale: Vec<_> = seen
        .iter()
        .filter(|e| e["session_id"] == before["session_id"] && e["event"] == "talk_started")
        .collect();
    ensure!(
        stale.is_empty(),
        "a talk from before the suspension was honoured: {stale:?}"
    );
    let dropped = seen.iter().filter(|e| e["event"] == "dropped").count();
    eprintln!(
        "after {} s stopped: the stale talk dropped ({dropped} report(s)), the next one saved",
        suspended.as_secs()
    );
    listener.stop()
}
