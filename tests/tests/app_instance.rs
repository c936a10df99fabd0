//! Start-up behaviour of the real app: it logs to a daily file in its data
//! directory; "Start Walkie when I log in" in the panel writes (and removes)
//! the desktop session's autostart entry; and a second start of the app does
//! not run a second Walkie: it exits and the running one shows its panel.
#![recursion_limit = "256"]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{ensure, Result};
use walkie_tests::{
    desktop::Desktop,
    init_tracing,
    secret_service::SecretService,
    webdriver::{app_binary, AppDriver},
    Synapse,
};

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
    Ok(())
}
