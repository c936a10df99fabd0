//! Where recordings go, from the panel (issue 14): alice, the group's
//! admin, sees "in the chat" and may change it; she picks "in one thread";
//! the group marker changes for everyone (bob's client reads `thread` and
//! the thread root), and the panel shows the choice. Screenshot to
//! `$WALKIE_SCREENSHOT_DIR` when set.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Result};

mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_moves_the_recordings_into_a_thread_from_the_panel() -> Result<()> {
    let desk = app_desk().await?;
    let room = desk.people.group("Walkie test")?;
    let app = desk.start_app().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    let select = format!(".group[data-room='{room}'] .recordings");
    app.wait_for(&select, |_| true, DOM).await?;
    let value = app.property(&select, "value").await?;
    ensure!(value == "timeline", "recordings shown as {value}");
    let enabled = app.property(&select, "disabled").await?;
    ensure!(enabled == false, "the admin cannot change it");

    app.execute(
        "const s = document.querySelector(arguments[0]); s.value = 'thread'; \
         s.dispatchEvent(new Event('change'));",
        vec![serde_json::json!(select)],
    )
    .await?;
    // Everyone's client reads the new marker.
    let status = until(Duration::from_secs(30), "bob reads thread mode", || {
        let status = desk.people.bob.ok(&["status", &room])?;
        ensure!(status["recordings"] == "thread", "not yet: {status}");
        Ok(status)
    })?;
    eprintln!("bob's client: recordings {}", status["recordings"]);
    // The panel, redrawn, shows what applies.
    let deadline = std::time::Instant::now() + DOM;
    loop {
        let shown = async { app.find(&select).await?.property("value").await }.await;
        if shown.is_ok_and(|v| v == "thread") {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the panel does not show thread mode"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(dir) = std::env::var_os("WALKIE_SCREENSHOT_DIR") {
        app.screenshot(&std::path::Path::new(&dir).join("panel-recordings.png"))
            .await?;
    }
    app.close().await?;
    Ok(())
}
