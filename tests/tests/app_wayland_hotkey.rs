//! Push-to-talk on Wayland (issue 14), through the desktop portal's
//! GlobalShortcuts interface: the real app, told it is in a Wayland session
//! (`XDG_SESSION_TYPE=wayland`), binds its shortcut with the stand-in
//! portal on the desktop's private session bus (`walkie_tests::portal`)
//! instead of grabbing the key through X11; the portal's `Activated` starts
//! a talk that bob hears begin, and `Deactivated` ends it. No compositor
//! with a real portal runs here: this is the client side against the
//! interface as specified.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Result};
use walkie_tests::{portal::StandInPortal, webdriver::AppDriver};

mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portals_shortcut_presses_and_releases_a_talk() -> Result<()> {
    let desk = app_desk().await?;
    let room = desk.people.group("Walkie test")?;
    let portal = StandInPortal::start(desk.desktop.bus_address()).await?;
    let bob_out = desk.root.path().join("bob-out");
    let (mut bob, bob_events) = desk.people.bob.listen(&[
        &room,
        "--out",
        bob_out.to_str().unwrap_or_default(),
        "--timeout",
        "180",
    ])?;
    let mut env = desk.people.app_env(&desk.hs, &desk.audio);
    env.push(("XDG_SESSION_TYPE".into(), "wayland".into()));
    let app = AppDriver::start(&desk.desktop, &walkie_tests::webdriver::app_binary()?, env).await?;

    // The app asks the portal, with our shortcut as the preferred trigger.
    let shortcut = portal.bound(READY).await?;
    eprintln!("bound through the portal: {shortcut:?}");
    ensure!(shortcut.id == "push-to-talk", "bound {:?}", shortcut.id);
    ensure!(
        shortcut.preferred_trigger.as_deref() == Some("CTRL+ALT+space"),
        "preferred trigger {:?}",
        shortcut.preferred_trigger
    );
    let (registered, line) = app
        .wait_for_log_after(0, &["push-to-talk shortcut registered"], READY)
        .await?;
    ensure!(line.contains("via=\"portal\""), "registered as: {line}");
    app.wait_for("#hotkey", |t| t.contains("CTRL+ALT+space"), STEP)
        .await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    app.wait_for_log("walkie groups", READY).await?;

    // Activated: a talk starts, and bob hears it begin.
    portal.press(&shortcut).await?;
    let (pressed, _) = app
        .wait_for_log_after(registered, &["talk pressed"], STEP)
        .await?;
    let (live, _) = app
        .wait_for_log_after(pressed, &["capture live"], STEP)
        .await?;
    let alice = desk.people.alice_r.user_id.clone();
    let (started, _) = wait_for(&bob_events, STEP, |v| {
        v["event"] == "talk_started" && v["user_id"] == alice.as_str()
    })?;
    eprintln!("bob: {started}");
    // Deactivated: the talk ends (after the release tail).
    portal.release(&shortcut).await?;
    app.wait_for_log_after(live, &["talk released"], STEP)
        .await?;
    let (ended, _) = wait_for(&bob_events, STEP, |v| {
        v["event"] == "talk_ended" && v["session_id"] == started["session_id"]
    })?;
    eprintln!("bob: {ended}");
    ensure!(
        !app.log_lines()
            .iter()
            .any(|l| l.contains("shortcut registered") && l.contains("x11")),
        "the app grabbed the key through X11 as well"
    );
    let noise: Vec<String> = app
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("zbus") && (l.contains(" WARN ") || l.contains(" ERROR ")))
        .collect();
    ensure!(noise.is_empty(), "the portal path logged: {noise:#?}");
    let _ = bob.kill();
    let _ = bob.wait();
    app.close().await?;
    Ok(())
}
