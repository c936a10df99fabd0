//! The panel, driven for real over WebDriver (tauri-driver + WebKitWebDriver)
//! under Xvfb with a D-Bus session and gnome-keyring: sign in with a
//! password, make a room a walkie group, grant a 1-minute consent and watch
//! its countdown go down, revoke it; quit, start again and find the session
//! restored from the keyring without signing in; sign out, which removes the
//! session from the keyring and the account's local store. Screenshots of
//! each view go to `$WALKIE_SCREENSHOT_DIR` when set (docs/screenshots).
#![recursion_limit = "256"]

use std::{path::Path, time::Duration};

use anyhow::{ensure, Context, Result};
use walkie_tests::{
    desktop::Desktop,
    init_tracing,
    secret_service::SecretService,
    webdriver::{app_binary, AppDriver},
    Synapse,
};

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(20);

async fn shot(app: &AppDriver, name: &str, dir: &Path) -> Result<()> {
    app.screenshot(&dir.join(name)).await?;
    if let Some(docs) = std::env::var_os("WALKIE_SCREENSHOT_DIR") {
        std::fs::copy(dir.join(name), Path::new(&docs).join(name))?;
    }
    Ok(())
}

/// `mm:ss` / `h:mm:ss` to seconds.
fn seconds(text: &str) -> Option<u64> {
    text.split(':').try_fold(0u64, |acc, part| {
        Some(acc * 60 + part.trim().parse::<u64>().ok()?)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_group_consent_countdown_restore_and_sign_out() -> Result<()> {
    init_tracing();
    let hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    // A room of alice's to turn into a walkie group from the panel
    // (encrypted: only such rooms are offered).
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_matrix/client/v3/createRoom", hs.url()))
        .bearer_auth(&alice.access_token)
        .json(
            &serde_json::json!({"name": "Family", "preset": "private_chat",
            "initial_state": [{"type": "m.room.encryption", "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}),
        )
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let room = created["room_id"]
        .as_str()
        .context("no room id")?
        .to_owned();

    let desktop = Desktop::start()?;
    let secrets = SecretService::on_bus(desktop.bus_address())?;
    let data = tempfile::tempdir()?;
    let shots = tempfile::tempdir()?;
    let data_dir = data.path().to_string_lossy().into_owned();
    let env = [
        ("WALKIE_DATA_DIR", data_dir.as_str()),
        ("RUST_LOG", "info,matrix_sdk=warn,matrix_sdk_crypto=warn"),
        ("NO_AT_BRIDGE", "1"),
        ("NO_COLOR", "1"),
    ];

    // Signed out: the panel asks.
    let app = AppDriver::start(&desktop, &app_binary()?, env).await?;
    app.wait_for_log("walkie-app ready", READY).await?;
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    ensure!(
        app.find("#sign-in").await?.is_displayed().await?,
        "no sign-in form"
    );
    shot(&app, "panel-sign-in.png", shots.path()).await?;

    // A wrong password says so.
    app.find("#si-user")
        .await?
        .send_keys(&alice.user_id)
        .await?;
    app.find("#si-homeserver")
        .await?
        .send_keys(&hs.url())
        .await?;
    app.find("#si-password")
        .await?
        .send_keys("not the password")
        .await?;
    app.find("#si-submit").await?.click().await?;
    let error = app
        .wait_for_text("#si-error", |t| !t.is_empty(), DOM)
        .await?;
    eprintln!("wrong password: {error}");
    ensure!(
        error.to_lowercase().contains("password"),
        "unclear error: {error}"
    );

    app.find("#si-password").await?.clear().await?;
    app.find("#si-password")
        .await?
        .send_keys(&alice.password)
        .await?;
    app.find("#si-submit").await?.click().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    ensure!(
        app.text("#user").await? == alice.user_id,
        "wrong user shown"
    );
    let saved = secrets
        .lookup(&[("service", "walkie"), ("username", "session")])?
        .context("the session is not in the keyring")?;
    let token: serde_json::Value = serde_json::from_str(&saved)?;
    let token = token["session"]["tokens"]["access_token"]
        .as_str()
        .or_else(|| token["session"]["access_token"].as_str())
        .context("no access token in the saved session")?
        .to_owned();
    for file in walkie_tests::files_under(data.path())? {
        let bytes = std::fs::read(&file)?;
        ensure!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the access token is in a plain file: {}",
            file.display()
        );
    }

    // Make the room a walkie group.
    app.wait_for(
        &format!("#other-rooms option[value='{room}']"),
        |_| true,
        DOM,
    )
    .await?;
    app.execute(
        "document.getElementById('other-rooms').value = arguments[0];",
        vec![serde_json::json!(room)],
    )
    .await?;
    app.find("#make-group").await?.click().await?;
    let group = format!(".group[data-room='{room}']");
    app.wait_for(&format!("{group} .name"), |t| t == "Family", DOM)
        .await?;

    // A 1-minute consent counts down. The list is redrawn on status
    // changes, and WebDriver's clear takes the focus away that holds a
    // redraw off: a redraw between the steps makes the field stale, and the
    // user's typing is done again on the new one.
    let mut attempts = 0;
    loop {
        let typed = async {
            let minutes = app.find(&format!("{group} .custom-minutes")).await?;
            minutes.clear().await?;
            minutes.send_keys("1").await?;
            app.find(&format!("{group} .grant-custom"))
                .await?
                .click()
                .await
        }
        .await;
        match typed {
            Ok(()) => break,
            Err(e) if attempts < 10 && walkie_tests::webdriver::is_transient(&e) => attempts += 1,
            Err(e) => return Err(e),
        }
    }
    let countdown = format!("{group} .countdown");
    let first = app
        .wait_for_text(
            &countdown,
            |t| seconds(t).is_some_and(|s| (50..=60).contains(&s)),
            DOM,
        )
        .await?;
    let first_s = seconds(&first).context("countdown")?;
    let later = app
        .wait_for_text(
            &countdown,
            |t| seconds(t).is_some_and(|s| s + 2 <= first_s),
            DOM,
        )
        .await?;
    eprintln!("countdown {first} -> {later}");
    ensure!(app.text(&format!("{group} .mine")).await? == "Consenting, ends in");
    shot(&app, "panel-groups.png", shots.path()).await?;

    // Revoke.
    app.find(&format!("{group} .revoke")).await?.click().await?;
    app.wait_for(&format!("{group} .mine"), |t| t == "Not consenting", DOM)
        .await?;
    app.close().await?;

    // A restart restores the session from the keyring, no sign-in.
    let app = AppDriver::start(&desktop, &app_binary()?, env).await?;
    app.wait_for_log("session restored from the keyring", READY)
        .await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    ensure!(
        app.text("#user").await? == alice.user_id,
        "wrong user after restart"
    );
    ensure!(
        !app.find("#sign-in").await?.is_displayed().await?,
        "asked to sign in again"
    );

    // Sign out: keyring entry and local store gone.
    app.find("#sign-out").await?.click().await?;
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    ensure!(
        secrets
            .lookup(&[("service", "walkie"), ("username", "session")])?
            .is_none(),
        "the session is still in the keyring"
    );
    let accounts = data.path().join("accounts");
    let left = std::fs::read_dir(&accounts).map(|d| d.count()).unwrap_or(0);
    ensure!(
        left == 0,
        "{left} account store(s) left in {}",
        accounts.display()
    );
    app.close().await?;
    Ok(())
}
