//! Start-up behaviour of the real app: it logs to a daily file in its data
//! directory; "Start Walkie when I log in" in the panel writes (and
//! removes) the desktop session's autostart entry, which starts it in the
//! tray; and a second start of the app does not run a second Walkie: it
//! exits and the running one shows its panel;
//! a start while the old app is still quitting (its single-instance name
//! still on the bus, answering nothing) starts once the name is free
//! instead of failing.
#![recursion_limit = "256"]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{ensure, Result};
use walkie_tests::{
    desktop::ChildGuard,
    desktop::Desktop,
    init_tracing,
    secret_service::SecretService,
    webdriver::{app_binary, AppDriver},
    Synapse,
};

/// An app that is quitting, as a new start meets it on the bus: it owns
/// the single-instance name and refuses to show its panel.
struct Quitting;

#[zbus::interface(name = "org.SingleInstance.DBus")]
impl Quitting {
    fn execute_callback(&self, _argv: Vec<String>, _cwd: String) -> zbus::fdo::Result<()> {
        Err(zbus::fdo::Error::Failed("quitting".into()))
    }
}

/// Waits until the file at `path` contains `needle` (a log being written
/// by a process the test started without a pipe).
async fn wait_for_file_text(path: &std::path::Path, needle: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{needle:?} not in {} within {timeout:?}; it says:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autostart_toggle_and_a_single_instance() -> Result<()> {
    init_tracing();
    let hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    let desktop = Desktop::start()?;
    let _secrets = SecretService::on_bus(desktop.bus_address())?;
    let home = tempfile::tempdir()?;
    let data = home.path().join("data");
    let env = vec![
        (
            "HOME".to_owned(),
            home.path().to_string_lossy().into_owned(),
        ),
        (
            "XDG_CONFIG_HOME".to_owned(),
            home.path().join(".config").to_string_lossy().into_owned(),
        ),
        ("WALKIE_HOMESERVER".to_owned(), hs.url()),
        ("WALKIE_USER".to_owned(), alice.user_id.clone()),
        ("WALKIE_PASSWORD".to_owned(), alice.password.clone()),
        (
            "WALKIE_DATA_DIR".to_owned(),
            data.to_string_lossy().into_owned(),
        ),
        (
            "RUST_LOG".to_owned(),
            "info,matrix_sdk=warn,matrix_sdk_crypto=warn".to_owned(),
        ),
        ("NO_AT_BRIDGE".to_owned(), "1".to_owned()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    let app = AppDriver::start(&desktop, &app_binary()?, env.clone()).await?;
    app.wait_for("#state", |t| t == "online", READY).await?;

    // The log also goes to a daily file in the data directory.
    let logs = data.join("logs");
    let deadline = Instant::now() + DOM;
    loop {
        let text: String = std::fs::read_dir(&logs)
            .into_iter()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
            .collect();
        if text.contains("walkie-app ready") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no log file with the ready line in {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let entry = home.path().join(".config/autostart/walkie.desktop");
    let wait_file = |exists: bool| {
        let entry = entry.clone();
        async move {
            let deadline = Instant::now() + DOM;
            while entry.exists() != exists {
                ensure!(
                    Instant::now() < deadline,
                    "autostart entry exists: {}",
                    !exists
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok::<(), anyhow::Error>(())
        }
    };
    ensure!(!entry.exists(), "autostart on before asked");
    app.find("#autostart").await?.click().await?;
    wait_file(true).await?;
    let desktop_file =
        std::fs::read_to_string(home.path().join(".config/autostart/walkie.desktop"))?;
    eprintln!("{desktop_file}");
    ensure!(
        desktop_file.contains("walkie-app"),
        "entry does not start walkie-app"
    );
    // Logging in starts it in the tray, without opening the panel.
    ensure!(
        desktop_file.contains("--hidden"),
        "entry does not start Walkie in the tray"
    );
    app.find("#autostart").await?.click().await?;
    wait_file(false).await?;

    // A second start: it exits at once, the first one shows its panel.
    let mut second = desktop.command(app_binary()?);
    second
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let status = second.status()?;
    ensure!(status.success(), "second start exited with {status}");
    app.wait_for_log("second start: showing the running app's panel", DOM)
        .await?;
    app.close().await?;

    // A start while the old app quits: its name is still on the bus, and
    // the call that would show its panel fails. The new app
    // starts again until the name is free, then runs.
    // (Taken once the app just closed has left the bus.)
    let deadline = Instant::now() + DOM;
    let quitting = loop {
        match zbus::connection::Builder::address(desktop.bus_address())?
            .name("org.walkie.desktop.SingleInstance")?
            .serve_at("/org/walkie/desktop/SingleInstance", Quitting)?
            .build()
            .await
        {
            Ok(connection) => break connection,
            Err(zbus::Error::NameTaken) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let log = home.path().join("start-while-quitting.log");
    let mut start = desktop.command(app_binary()?);
    start
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?);
    let mut started = ChildGuard::spawn("walkie-app", &mut start)?;
    wait_for_file_text(&log, "starting again once it is gone", DOM).await?;
    ensure!(
        started.child().try_wait()?.is_none(),
        "the app gave up while the old one was quitting"
    );
    drop(quitting);
    wait_for_file_text(&log, "walkie-app ready", READY).await?;
    ensure!(
        started.child().try_wait()?.is_none(),
        "the app exited after starting"
    );
    // SAFETY: kill(2) on the app this test started.
    unsafe { libc::kill(started.pid() as libc::pid_t, libc::SIGTERM) };
    let status = started.child().wait()?;
    ensure!(status.success(), "the app exited with {status} on SIGTERM");
    Ok(())
}
