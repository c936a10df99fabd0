//! The panel's trust side, driven for real over WebDriver under Xvfb with
//! a D-Bus session and gnome-keyring, against a real Synapse. A first
//! sign-in on an account without a cross-signing identity creates one: the
//! panel shows the recovery key once (never in the log, never on disk) and
//! this device as verified; "I have saved it" hides the key. A sign-in on an
//! account whose identity another device (a CLI) created leaves this device
//! unverified, without a key: a wrong recovery key is refused with a clear
//! error, the right one verifies the device. Another new device of that
//! account is verified with emoji against the CLI (`walkie verify
//! request`): both show the same seven emoji. Screenshots go to
//! `$WALKIE_SCREENSHOT_DIR` when set.
#![recursion_limit = "256"]

mod common;

use std::{io::Write, path::Path, process::Stdio, time::Duration};

use anyhow::{ensure, Context, Result};
use common::{json_lines, login, wait_for, Cli};
use walkie_tests::{
    desktop::Desktop,
    init_tracing,
    secret_service::SecretService,
    webdriver::{app_binary, AppDriver},
    Registered, Synapse,
};

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(20);
const VERIFIED: &str = "This device is verified";

async fn shot(app: &AppDriver, name: &str, dir: &Path) -> Result<()> {
    app.screenshot(&dir.join(name)).await?;
    if let Some(docs) = std::env::var_os("WALKIE_SCREENSHOT_DIR") {
        std::fs::create_dir_all(&docs)?;
        std::fs::copy(dir.join(name), Path::new(&docs).join(name))?;
    }
    Ok(())
}

/// Types `user`'s credentials into the panel's sign-in form and submits.
async fn sign_in(app: &AppDriver, hs: &Synapse, user: &Registered) -> Result<()> {
    for (field, value) in [
        ("#si-user", user.user_id.clone()),
        ("#si-homeserver", hs.url()),
        ("#si-password", user.password.clone()),
    ] {
        let input = app.find(field).await?;
        input.clear().await?;
        input.send_keys(&value).await?;
    }
    app.find("#si-submit").await?.click().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    ensure!(app.text("#user").await? == user.user_id, "wrong user shown");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_key_shown_once_verify_with_key_and_with_emoji() -> Result<()> {
    init_tracing();
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    // carol's identity is created by the app; dave's by a CLI beforehand.
    let carol = hs.register("carol").await?;
    let dave = hs.register("dave").await?;
    let dave_cli = Cli::new(root.path(), "dave-cli");
    let dave_login = login(&hs, &dave_cli, &dave)?;
    let dave_key = dave_login["recovery_key"]
        .as_str()
        .context("the CLI's first sign-in shows no recovery key")?
        .to_owned();

    let desktop = Desktop::start()?;
    let _secrets = SecretService::on_bus(desktop.bus_address())?;
    let data = root.path().join("app");
    let shots = tempfile::tempdir()?;
    let data_dir = data.to_string_lossy().into_owned();
    let env = [
        ("WALKIE_DATA_DIR", data_dir.as_str()),
        ("RUST_LOG", "info,matrix_sdk=warn,matrix_sdk_crypto=warn"),
        ("NO_AT_BRIDGE", "1"),
        ("NO_COLOR", "1"),
    ];
    let app = AppDriver::start(&desktop, &app_binary()?, env).await?;
    app.wait_for_log("walkie-app ready", READY).await?;
    app.wait_for("#state", |t| t == "signed out", DOM).await?;

    // 1. A new identity: the recovery key once, this device verified.
    sign_in(&app, &hs, &carol).await?;
    app.wait_for("#device-state", |t| t == VERIFIED, READY)
        .await?;
    let key = app
        .wait_for_text("#recovery-key", |t| t.trim().len() > 40, DOM)
        .await?;
    let key = key.trim().to_owned();
    let notice = app.text("#recovery-key-box").await?;
    ensure!(
        notice.contains("save it in a password manager")
            && notice.contains("will not show it again"),
        "unclear recovery key notice: {notice}"
    );
    ensure!(
        !app.find("#verify-box").await?.is_displayed().await?,
        "a verified device is offered verification"
    );
    shot(&app, "first-sign-in-new-identity.png", shots.path()).await?;
    ensure!(
        !app.log_lines().iter().any(|l| l.contains(&key)),
        "the recovery key is in the app's log"
    );
    for file in walkie_tests::files_under(&data)? {
        let bytes = std::fs::read(&file)?;
        ensure!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "the recovery key is in a plain file: {}",
            file.display()
        );
    }
    app.click("#recovery-key-saved", DOM).await?;
    app.wait_for("#recovery-key-box", str::is_empty, DOM)
        .await?;
    ensure!(
        !app.find("#recovery-key-box").await?.is_displayed().await?,
        "the recovery key is still shown"
    );
    let kept = app
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.__TAURI__.core.invoke('status').then(s => done(s.recovery_key === null));",
            vec![],
        )
        .await?;
    ensure!(
        kept == serde_json::json!(true),
        "the app still holds the key"
    );

    // 2. An existing identity (dave's, made by his CLI): unverified, no key.
    app.click("#sign-out", DOM).await?;
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    sign_in(&app, &hs, &dave).await?;
    app.wait_for("#device-state", |t| t.contains("not verified"), READY)
        .await?;
    ensure!(
        app.text("#device-state").await?
            == "This device is not verified — other people's Walkie will not talk to it or play its talks.",
        "unclear device state"
    );
    ensure!(
        !app.find("#recovery-key-box").await?.is_displayed().await?,
        "a recovery key is shown for an existing identity"
    );
    ensure!(
        app.find("#recover-key").await?.is_displayed().await?,
        "no recovery key form on an unverified device"
    );
    shot(&app, "first-sign-in-existing-identity.png", shots.path()).await?;

    // A wrong key is refused, clearly.
    app.find("#recover-key")
        .await?
        .send_keys("EsTc 1234 wrong key")
        .await?;
    app.click("#recover-submit", DOM).await?;
    let error = app
        .wait_for_text("#recover-error", |t| !t.is_empty(), READY)
        .await?;
    eprintln!("wrong recovery key: {error}");
    ensure!(
        error.to_lowercase().contains("recovery key"),
        "unclear error: {error}"
    );
    ensure!(app.text("#device-state").await?.contains("not verified"));

    // The right one verifies this device.
    let input = app.find("#recover-key").await?;
    input.clear().await?;
    input.send_keys(&dave_key).await?;
    app.click("#recover-submit", DOM).await?;
    app.wait_for("#device-state", |t| t == VERIFIED, READY)
        .await?;
    app.wait_for("#verify-box", str::is_empty, DOM).await?;
    ensure!(
        !app.find("#verify-box").await?.is_displayed().await?,
        "verification still offered on a verified device"
    );
    ensure!(
        !app.log_lines().iter().any(|l| l.contains(&dave_key)),
        "the recovery key is in the app's log"
    );

    // 3. A new device of dave's, verified with emoji against his CLI.
    app.click("#sign-out", DOM).await?;
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    sign_in(&app, &hs, &dave).await?;
    app.wait_for("#device-state", |t| t.contains("not verified"), READY)
        .await?;
    let device = app.text("#device").await?;
    app.click("#verify-device", DOM).await?;
    app.wait_for_log("waiting for another device of this account", DOM)
        .await?;
    let mut request = dave_cli
        .command()
        .args(["verify", "request", &device])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let request_out = json_lines(request.stdout.take().context("stdout")?);
    let (on_cli, _) = wait_for(&request_out, READY, |e| e.get("emoji").is_some())?;
    let on_cli: Vec<String> = on_cli["emoji"]
        .as_array()
        .context("no emoji from the CLI")?
        .iter()
        .filter_map(|e| e["symbol"].as_str().map(str::to_owned))
        .collect();
    app.wait_for("#verify-compare", |t| t.contains("They match"), READY)
        .await?;
    let on_panel: Vec<String> = serde_json::from_value(
        app.execute(
            "return [...document.querySelectorAll('#verify-emoji .symbol')]\
             .map(e => e.textContent);",
            vec![],
        )
        .await?,
    )?;
    ensure!(on_panel.len() == 7, "the panel shows {on_panel:?}");
    ensure!(
        on_panel == on_cli,
        "the panel shows {on_panel:?}, the CLI {on_cli:?}"
    );
    shot(&app, "verify-with-emoji.png", shots.path()).await?;
    app.click("#verify-match", DOM).await?;
    request.stdin.take().context("stdin")?.write_all(b"yes\n")?;
    let (done, _) = wait_for(&request_out, READY, |e| e.get("device_state").is_some())?;
    ensure!(
        request.wait()?.success(),
        "walkie verify request failed: {done}"
    );
    app.wait_for("#device-state", |t| t == VERIFIED, READY)
        .await?;
    app.wait_for("#verify-box", str::is_empty, DOM).await?;
    app.close().await?;
    Ok(())
}
