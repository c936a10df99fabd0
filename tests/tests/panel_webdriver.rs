//! The real app's panel over WebDriver (tauri-driver + WebKitWebDriver)
//! under the headless desktop with a keyring: the app signs in to a real Synapse from its
//! environment, and the panel's DOM shows what the app knows — online, the
//! user id, a device, the homeserver, no sign-in form, no error — and the
//! JS bridge to the Rust side answers. The harness's input commands work on
//! a probe input. A screenshot of the panel is saved.
#![recursion_limit = "256"]

use std::{path::PathBuf, time::Duration, time::Instant};

use anyhow::{ensure, Context, Result};
use walkie_tests::{
    desktop::Desktop,
    init_tracing,
    secret_service::SecretService,
    webdriver::{app_binary, AppDriver},
    Synapse,
};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
const DOM_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `pid` runs (a zombie waiting for PID 1 to reap it does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_shows_the_signed_in_account() -> Result<()> {
    init_tracing();
    let hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    let desktop = Desktop::start()?;
    // The app keeps its session in the OS keyring and says so on the panel
    // when there is none: an unlocked keyring on the desktop's bus.
    let _secrets = SecretService::on_bus(desktop.bus_address())?;
    let data = tempfile::tempdir()?;

    let started = Instant::now();
    let app = AppDriver::start(
        &desktop,
        &app_binary()?,
        [
            ("WALKIE_HOMESERVER", hs.url().as_str()),
            ("WALKIE_USER", alice.localpart.as_str()),
            ("WALKIE_PASSWORD", alice.password.as_str()),
            ("WALKIE_DATA_DIR", &data.path().to_string_lossy()),
            ("RUST_LOG", "info"),
            ("NO_AT_BRIDGE", "1"),
            ("NO_COLOR", "1"),
        ],
    )
    .await?;
    eprintln!(
        "WebDriver session after {} ms",
        started.elapsed().as_millis()
    );

    let pid = app
        .app_pid()
        .context("no walkie-app process under tauri-driver")?;
    eprintln!("walkie-app runs as pid {pid}");
    let ready = app.wait_for_log("walkie-app ready", READY_TIMEOUT).await?;
    eprintln!(
        "app ready after {} ms: {ready}",
        started.elapsed().as_millis()
    );

    ensure!(app.title().await? == "Walkie", "not the panel's page");
    let state = app
        .wait_for("#state", |t| t == "online", DOM_TIMEOUT)
        .await
        .context("the panel does not say online")?;
    ensure!(
        state.attribute("data-state").await?.as_deref() == Some("online"),
        "#state data-state is not online"
    );
    let user = app.text("#user").await?;
    ensure!(user == alice.user_id, "panel shows user {user:?}");
    let device = app.text("#device").await?;
    ensure!(
        !device.is_empty() && device != "—",
        "panel shows no device: {device:?}"
    );
    let homeserver = app.text("#homeserver").await?;
    ensure!(
        homeserver.trim_end_matches('/') == hs.url(),
        "panel shows homeserver {homeserver:?}, not {}",
        hs.url()
    );
    ensure!(
        app.find("#account").await?.is_displayed().await?,
        "the account section is hidden"
    );
    ensure!(
        !app.find("#sign-in").await?.is_displayed().await?,
        "the sign-in form shows although signed in"
    );
    let error = app.find("#error").await?;
    ensure!(
        !error.is_displayed().await?,
        "panel shows an error: {:?}",
        error.property("textContent").await?
    );

    // The page's view of the DOM and the Rust side's status agree.
    let shown = app
        .execute("return document.getElementById('user').textContent", vec![])
        .await?;
    ensure!(shown == alice.user_id.as_str(), "script saw {shown}");
    let status = app
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.__TAURI__.core.invoke('status').then(done, e => done({error: String(e)}));",
            vec![],
        )
        .await?;
    ensure!(
        status["account"] == "online" && status["user_id"] == alice.user_id.as_str(),
        "the status command answered {status}"
    );
    ensure!(
        status["device_id"] == device.as_str(),
        "status device {} but panel {device}",
        status["device_id"]
    );

    // The client's input commands, on a probe input the test adds (the
    // panel has no input of its own yet).
    app.execute(
        "const i = document.createElement('input'); i.id = 'wd-probe'; \
         document.body.append(i);",
        vec![],
    )
    .await?;
    let probe = app.find("#wd-probe").await?;
    probe.click().await?;
    probe.send_keys("over and out").await?;
    let typed = probe.property("value").await?;
    ensure!(typed == "over and out", "the probe input holds {typed}");
    let focused = app
        .execute(
            "return document.activeElement === arguments[0]",
            vec![probe.as_arg()],
        )
        .await?;
    ensure!(focused == true, "the clicked probe input has no focus");
    app.execute("document.getElementById('wd-probe').remove()", vec![])
        .await?;

    let shots = std::env::var_os("WALKIE_SCREENSHOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("walkie-screenshots"));
    let shot = shots.join("panel-webdriver.png");
    app.screenshot(&shot).await?;
    let png = std::fs::read(&shot)?;
    ensure!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{} is not a real PNG ({} bytes)",
        shot.display(),
        png.len()
    );
    eprintln!("panel screenshot: {} ({} bytes)", shot.display(), png.len());

    let closing = Instant::now();
    app.close().await?;
    ensure!(!alive(pid), "walkie-app (pid {pid}) outlived the driver");
    eprintln!(
        "session closed and app ended in {} ms; whole test {} ms",
        closing.elapsed().as_millis(),
        started.elapsed().as_millis()
    );
    Ok(())
}
