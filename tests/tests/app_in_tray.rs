//! Started in the tray, as the desktop session's autostart starts it: the
//! real app with `--hidden` signs in with no window on screen; a second
//! start with `--hidden` (the session starting again) leaves it there; a
//! group made from another client while it is hidden reaches the app; a
//! plain second start opens the panel, which then shows that group (the
//! hidden panel was told nothing meanwhile: it is brought up to date when
//! shown).
#![recursion_limit = "256"]

use std::{process::Stdio, time::Duration};

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use serde_json::json;
use walkie_core::protocol::{WalkieGroup, GROUP_EVENT_TYPE};
use walkie_tests::{
    desktop::Desktop,
    init_tracing,
    secret_service::SecretService,
    webdriver::{app_binary, AppDriver},
    Synapse,
};

mod common;
use common::raw_api;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(20);

/// The Walkie windows on screen.
fn visible_panels(desktop: &Desktop) -> Result<usize> {
    let out = desktop
        .command("xdotool")
        .args(["search", "--onlyvisible", "--name", "^Walkie$"])
        .stderr(Stdio::null())
        .output()?;
    // xdotool exits 1 when it finds none.
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_in_the_tray_and_opens_up_to_date() -> Result<()> {
    init_tracing();
    let hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    let desktop = Desktop::start()?;
    let _secrets = SecretService::on_bus(desktop.bus_address())?;
    let data = tempfile::tempdir()?;
    let env = vec![
        ("WALKIE_HOMESERVER".to_owned(), hs.url()),
        ("WALKIE_USER".to_owned(), alice.user_id.clone()),
        ("WALKIE_PASSWORD".to_owned(), alice.password.clone()),
        (
            "WALKIE_DATA_DIR".to_owned(),
            data.path().to_string_lossy().into_owned(),
        ),
        (
            "RUST_LOG".to_owned(),
            "info,matrix_sdk=warn,matrix_sdk_crypto=warn".to_owned(),
        ),
        ("NO_AT_BRIDGE".to_owned(), "1".to_owned()),
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ];
    let app =
        AppDriver::start_with_args(&desktop, &app_binary()?, &["--hidden"], env.clone()).await?;
    // Ready is logged after start-up, which shows the panel unless asked
    // not to: no window on screen now means none was shown.
    let ready = app.wait_for_log("walkie-app ready", READY).await?;
    ensure!(ready.contains("Online"), "ready but not online: {ready}");
    ensure!(
        visible_panels(&desktop)? == 0,
        "a window is on screen after a start in the tray"
    );

    // The session starting Walkie again: it stays in the tray.
    let start = |args: &[&str]| -> Result<()> {
        let status = desktop
            .command(app_binary()?)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        ensure!(status.success(), "second start exited with {status}");
        Ok(())
    };
    start(&["--hidden"])?;
    app.wait_for_log("second start in the tray: nothing to show", DOM)
        .await?;
    ensure!(
        visible_panels(&desktop)? == 0,
        "a second start in the tray showed a window"
    );

    // A walkie group made by alice on another device while the panel is
    // hidden: the app takes it up (its log says so) with nobody looking.
    let (status, created) = raw_api(
        &hs,
        Method::POST,
        &alice.access_token,
        "/_matrix/client/v3/createRoom",
        json!({"name": "Kitchen", "preset": "private_chat", "initial_state": [
            {"type": "m.room.encryption", "state_key": "",
             "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {"type": GROUP_EVENT_TYPE, "state_key": "",
             "content": WalkieGroup::default().to_content()}]}),
    )
    .await?;
    ensure!(status.is_success(), "createRoom: {status}");
    let room = created["room_id"].as_str().context("no room id")?;
    app.wait_for_log(&format!("talk_room=\"{room}\""), DOM)
        .await?;

    // The user starts it: the panel opens, saying what the app reached
    // while it was hidden.
    start(&[])?;
    app.wait_for_log("second start: showing the running app's panel", DOM)
        .await?;
    let windows = desktop.wait_for_window(&["--onlyvisible", "--name", "^Walkie$"], DOM)?;
    ensure!(!windows.is_empty(), "no panel on screen after a start");
    app.wait_for("#state", |t| t == "online", DOM).await?;
    app.wait_for("#user", |t| t == alice.user_id, DOM).await?;
    app.wait_for(
        &format!(".group[data-room='{room}'] .name"),
        |t| t == "Kitchen",
        DOM,
    )
    .await?;
    app.close().await?;
    Ok(())
}
