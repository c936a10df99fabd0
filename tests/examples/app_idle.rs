//! `cargo run -p walkie-tests --example app_idle` (or `bash
//! scripts/bench-app-idle.sh`): the desktop app's idle cost. Starts a
//! Synapse, the headless desktop and a private PulseAudio, signs the app in
//! (one walkie group with consent), waits until it is ready, then measures
//! for 60 s with nobody talking: CPU time used (from /proc/PID/stat) as
//! percent of one core, resident memory (VmRSS, VmHWM), the same for the
//! webview's child processes, the audio streams open (none expected) and
//! the client requests Synapse served in that time (from its access log),
//! per minute. Prints one JSON line.
#![recursion_limit = "256"]

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use walkie_tests::{
    desktop::{ChildGuard, Desktop},
    proc_stats::{cpu_ticks, descendants, status_kib},
    pulse::PulseAudio,
    webdriver::app_binary,
    Synapse,
};

/// Client requests Synapse has logged as processed so far.
fn requests_served(hs: &Synapse) -> Result<usize> {
    let log = std::fs::read_to_string(hs.dir().join("homeserver.log"))?;
    Ok(log.matches("Processed request").count())
}

#[tokio::main]
async fn main() -> Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60);
    let hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    let audio = PulseAudio::start()?;
    let desktop = Desktop::start()?;
    let data = tempfile::tempdir()?;
    let mut cmd = desktop.command(app_binary()?);
    cmd.envs(audio.env())
        .env("WALKIE_HOMESERVER", hs.url())
        .env("WALKIE_USER", &alice.user_id)
        .env("WALKIE_PASSWORD", &alice.password)
        .env("WALKIE_DATA_DIR", data.path())
        .env("NO_AT_BRIDGE", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut app = ChildGuard::spawn("walkie-app", &mut cmd)?;
    let pid = app.pid();
    let stderr = app.child().stderr.take().context("app stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.contains("walkie-app ready") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(120)).is_err() {
        bail!("the app did not get ready");
    }
    // Settle: the first seconds include the initial sync and key upload.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let children = descendants(pid);
    let total_ticks =
        |pids: &[u32]| -> u64 { pids.iter().filter_map(|&p| cpu_ticks(p).ok()).sum() };
    let start_ticks = cpu_ticks(pid)?;
    let start_children = total_ticks(&children);
    let start_requests = requests_served(&hs)?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let used = (cpu_ticks(pid)? - start_ticks) as f64 / ticks_per_s;
    let children_used = total_ticks(&children).saturating_sub(start_children) as f64 / ticks_per_s;
    let children_rss: u64 = children
        .iter()
        .filter_map(|&p| status_kib(p, "VmRSS:").ok())
        .sum();
    let elapsed = started.elapsed().as_secs_f64();
    let requests = requests_served(&hs)?.saturating_sub(start_requests);
    let streams = audio.our_streams()?;
    println!(
        "{}",
        serde_json::json!({
            "seconds": elapsed,
            "cpu_percent_of_one_core": used / elapsed * 100.0,
            "cpu_seconds": used,
            "rss_kib": status_kib(pid, "VmRSS:")?,
            "peak_rss_kib": status_kib(pid, "VmHWM:")?,
            "threads": status_kib(pid, "Threads:")?,
            "webkit_processes": children.len(),
            "webkit_cpu_percent_of_one_core": children_used / elapsed * 100.0,
            "webkit_rss_kib": children_rss,
            "audio_streams_open": streams,
            "requests_per_minute": requests as f64 / elapsed * 60.0,
        })
    );
    Ok(())
}
