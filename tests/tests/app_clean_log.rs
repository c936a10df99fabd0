//! A clean log in normal operation (issue 14): the desktop app signs in,
//! talks (the panel's talk button held 2 s; bob's listener saves it), plays
//! a talk of bob's, then idles for 2 minutes. Its log file holds no WARN or
//! ERROR line: expected 404s, the crypto crate's notes on walkie's own
//! to-device events and the like are not problems, and the log must not
//! cry wolf.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use walkie_tests::speech_wav;

mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(30);

/// The WARN and ERROR lines of the app's log files under `data`.
fn warnings_and_errors(data: &std::path::Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for file in walkie_tests::files_under(&data.join("logs"))? {
        for line in std::fs::read_to_string(&file)?.lines() {
            // `2026-12-06T09:07:20.761587Z  WARN target: message`
            let level = line.split_whitespace().nth(1).unwrap_or_default();
            if level == "WARN" || level == "ERROR" {
                found.push(line.to_owned());
            }
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_talk_listen_and_idle_leave_no_warning_in_the_log() -> Result<()> {
    let desk = app_desk().await?;
    let room = desk.people.group("Walkie test")?;
    let app = desk.start_app().await?;
    app.wait_for_log("walkie-app ready", READY).await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    app.wait_for(&format!(".group[data-room='{room}'] .name"), |_| true, DOM)
        .await?;

    // alice talks from the panel; bob's listener saves it.
    let bob = &desk.people.bob;
    let out = desk.root.path().join("out");
    let (mut listener, rx) = bob.listen(&[&room, "--out", out.to_str().unwrap_or_default()])?;
    app.execute(
        "document.getElementById('talk').dispatchEvent(new PointerEvent('pointerdown'));",
        vec![],
    )
    .await?;
    app.wait_for_log("talk pressed", DOM).await?;
    // The length of the talk (a fixed duration, not a wait for an event).
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.execute(
        "document.getElementById('talk').dispatchEvent(new PointerEvent('pointerup'));",
        vec![],
    )
    .await?;
    let (saved, _) = wait_for(&rx, Duration::from_secs(60), |e| e["event"] == "saved")?;
    ensure!(
        saved["samples"].as_u64().unwrap_or(0) >= 48_000,
        "bob saved: {saved}"
    );
    listener.kill()?;
    listener.wait()?;

    // bob talks; the app plays it.
    let speech = desk.root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;
    let since = app.log_lines().len();
    bob.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    app.wait_for_log_after(since, &["output opened"], DOM)
        .await?;
    app.wait_for_log_after(since, &["output closed"], DOM)
        .await?;

    // Two minutes idle (the stretch of time under test).
    tokio::time::sleep(Duration::from_secs(120)).await;
    app.close().await?;

    let lines = warnings_and_errors(&desk.people.app_data)?;
    let files = walkie_tests::files_under(&desk.people.app_data.join("logs"))?;
    ensure!(!files.is_empty(), "no log file");
    let total: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).map(|s| s.lines().count()))
        .sum::<std::io::Result<usize>>()
        .context("reading the log")?;
    eprintln!("{total} log lines, {} WARN or ERROR", lines.len());
    ensure!(
        lines.is_empty(),
        "warnings or errors in the log: {lines:#?}"
    );
    Ok(())
}
