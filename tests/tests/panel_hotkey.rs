//! Rebinding the shortcut from the panel: the user types another
//! combination and picks "press to start / stop"; the old combination stops
//! talking, the new one starts a talk with one press and ends it with the
//! next (bob's CLI sees the claim and the end), and the choice is still
//! there after a restart. A combination the system cannot use leaves the
//! old one in place and the panel says why.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::Result;
mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_panel_rebinds_the_shortcut_to_toggle_mode() -> Result<()> {
    let desk = app_desk().await?;
    let (desktop, root, people) = (&desk.desktop, &desk.root, &desk.people);
    let bob = &people.bob;
    let room = people.group("Walkie test")?;
    let app = desk.start_app().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    app.wait_for(&format!(".group[data-room='{room}'] .name"), |_| true, DOM)
        .await?;

    // A combination that cannot be a shortcut: refused, the old one stays.
    let input = app.find("#hotkey-input").await?;
    input.clear().await?;
    input.send_keys("ctrl+alt+NoSuchKey").await?;
    app.find("#hotkey-save").await?.click().await?;
    let error = app
        .wait_for_text("#hotkey-error", |t| !t.is_empty(), DOM)
        .await?;
    eprintln!("refused: {error}");
    assert!(error.contains("NoSuchKey"), "{error}");
    app.wait_for(".hint#hotkey", |t| t.contains("ctrl+alt+Space"), DOM)
        .await?;

    // ctrl+alt+t, press to start / stop.
    let input = app.find("#hotkey-input").await?;
    input.clear().await?;
    input.send_keys("ctrl+alt+KeyT").await?;
    app.execute(
        "document.getElementById('hotkey-mode').value = 'toggle';",
        vec![],
    )
    .await?;
    app.find("#hotkey-save").await?.click().await?;
    app.wait_for(".hint#hotkey", |t| t.contains("ctrl+alt+KeyT"), DOM)
        .await?;
    app.wait_for_log("push-to-talk shortcut registered", DOM)
        .await?;

    let (mut listener, bob_events) = bob.listen(&[
        &room,
        "--out",
        root.path().join("bob-out").to_str().unwrap_or_default(),
        "--timeout",
        "60",
    ])?;
    let key = |keys: &str| -> Result<()> {
        let status = desktop.command("xdotool").args(["key", keys]).status()?;
        anyhow::ensure!(status.success(), "xdotool key {keys} failed");
        Ok(())
    };
    // The old combination does nothing any more: no talk starts.
    key("ctrl+alt+space")?;
    // One press of the new one starts a talk, the next ends it.
    key("ctrl+alt+t")?;
    let (claim, before) = wait_for(&bob_events, DOM, |v| v["event"] == "talk_started")?;
    assert!(
        !before.iter().any(|v| v["event"] == "talk_started"),
        "the old shortcut still talks"
    );
    app.wait_for("#radio-state", |t| t == "talking", DOM)
        .await?;
    key("ctrl+alt+t")?;
    let (ended, _) = wait_for(&bob_events, DOM, |v| v["event"] == "talk_ended")?;
    assert_eq!(ended["session_id"], claim["session_id"]);
    app.wait_for("#radio-state", |t| t == "idle", DOM).await?;
    listener.kill()?;
    listener.wait()?;
    app.close().await?;

    // The choice outlives a restart (settings.json in the data directory).
    let app = desk.start_app().await?;
    app.wait_for(".hint#hotkey", |t| t.contains("ctrl+alt+KeyT"), READY)
        .await?;
    let mode = app.property("#hotkey-mode", "value").await?;
    assert_eq!(mode, "toggle", "mode after restart");
    app.close().await?;
    Ok(())
}
