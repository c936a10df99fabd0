//! The real desktop app under Xvfb with its own D-Bus session bus and a
//! tray host: it signs in to a real Synapse, shows its panel window, says
//! it is ready, stays up, and exits cleanly soon after SIGTERM.
#![recursion_limit = "256"]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::Stdio,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use walkie_tests::{
    desktop::ChildGuard, desktop::Desktop, init_tracing, webdriver::app_binary, Synapse,
};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const STAY_UP: Duration = Duration::from_secs(5);
const EXIT_WITHIN: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_starts_signed_in_shows_panel_and_exits_on_sigterm() -> Result<()> {
    init_tracing();
    let hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    let desktop = Desktop::start()?;
    // The app keeps its store passphrase in the OS keyring (no file
    // fallback), so the desktop session has one.
    let _secrets = walkie_tests::secret_service::SecretService::on_bus(desktop.bus_address())?;
    let data = tempfile::tempdir()?;

    let mut cmd = desktop.command(app_binary()?);
    cmd.env("WALKIE_HOMESERVER", hs.url())
        .env("WALKIE_USER", &alice.localpart)
        .env("WALKIE_PASSWORD", &alice.password)
        .env("WALKIE_DATA_DIR", data.path())
        .env("RUST_LOG", "info")
        .env("NO_AT_BRIDGE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut app = ChildGuard::spawn("walkie-app", &mut cmd)?;

    // Forward the app's log and report the ready line.
    let stderr = app.child().stderr.take().context("app stderr")?;
    let (ready_tx, ready_rx) = mpsc::channel::<String>();
    let log_thread = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            eprintln!("[walkie-app] {line}");
            if line.contains("walkie-app ready") {
                let _ = ready_tx.send(line.clone());
            }
            lines.push(line);
        }
        lines
    });

    let ready = ready_rx
        .recv_timeout(READY_TIMEOUT)
        .map_err(|_| anyhow::anyhow!("the app did not report ready within {READY_TIMEOUT:?}"))?;
    let ready_after = started.elapsed();
    eprintln!("app ready after {} ms: {ready}", ready_after.as_millis());
    ensure!(ready.contains("Online"), "ready but not online: {ready}");
    ensure!(
        ready.contains(&alice.user_id),
        "ready as someone else: {ready}"
    );

    // The panel window is mapped on screen.
    let windows = desktop.wait_for_window(
        &["--onlyvisible", "--name", "^Walkie$"],
        Duration::from_secs(10),
    )?;
    ensure!(!windows.is_empty(), "no visible Walkie window");

    // Stays up.
    if let Some(status) = walkie_tests::wait_for_exit(app.child(), STAY_UP)? {
        bail!("the app exited by itself with {status}");
    }
    let shots = std::env::var_os("WALKIE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("walkie-screenshots"));
    let shot = shots.join("app-start.png");
    desktop.screenshot(&shot)?;
    eprintln!("screenshot: {}", shot.display());

    // SIGTERM: a clean exit, status 0, within the limit.
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(app.pid() as libc::pid_t, libc::SIGTERM);
    }
    let term_at = Instant::now();
    let status = walkie_tests::wait_for_exit(app.child(), EXIT_WITHIN)?
        .with_context(|| format!("the app was still running {EXIT_WITHIN:?} after SIGTERM"))?;
    eprintln!(
        "exited {} ms after SIGTERM with {status}",
        term_at.elapsed().as_millis()
    );
    ensure!(status.success(), "unclean exit after SIGTERM: {status}");
    let lines = log_thread
        .join()
        .map_err(|_| anyhow::anyhow!("log thread panicked"))?;
    ensure!(
        lines
            .iter()
            .any(|l| l.contains("exit requested") && l.contains("SIGTERM")),
        "the app did not log handling SIGTERM"
    );
    ensure!(
        !lines.iter().any(|l| l.contains("panicked")),
        "the app panicked"
    );
    Ok(())
}
