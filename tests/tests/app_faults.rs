//! The desktop app through faults (issue 13), driven over WebDriver under
//! Xvfb with gnome-keyring and a private PulseAudio:
//! - the homeserver is killed (SIGKILL): the panel and the tray say
//!   "offline" while it is down, and "online" again once it is back,
//!   without restarting the app;
//! - the app is killed (SIGKILL) holding an unplayed talk (do not disturb):
//!   started again, it lists the same talk and plays it whole on request;
//! - nothing under the app's data directory holds its access token or a
//!   recording's plaintext (Ogg/Opus or WAV headers) after all of that;
//! - its access token is revoked on the server (signed out from another
//!   client): the panel says "signed out elsewhere" and shows the sign-in
//!   form, and the app keeps running without retrying the dead token.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use walkie_tests::speech_wav;

mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(30);

/// The access token of the session the app keeps in the keyring.
fn app_token(desk: &AppDesk) -> Result<String> {
    let saved = desk
        .secrets
        .lookup(&[("service", "walkie"), ("username", "session")])?
        .context("the app's session is not in the keyring")?;
    let saved: serde_json::Value = serde_json::from_str(&saved)?;
    Ok(saved["session"]["tokens"]["access_token"]
        .as_str()
        .or_else(|| saved["session"]["access_token"].as_str())
        .context("no access token in the saved session")?
        .to_owned())
}

/// The length an unplayed talk's entry in the panel gives ("…, 2.0 s").
fn listed_seconds(entry: &str) -> Option<f64> {
    entry
        .rsplit(", ")
        .next()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_says_offline_recovers_and_keeps_unplayed_talks_across_a_crash() -> Result<()> {
    let mut desk = app_desk().await?;
    let room = desk.people.group("Walkie test")?;
    let speech = desk.root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;
    let app = desk.start_app().await?;
    app.wait_for_log("walkie-app ready", READY).await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    app.wait_for(&format!(".group[data-room='{room}'] .name"), |_| true, DOM)
        .await?;
    let first_token = app_token(&desk)?;

    // Do not disturb: bob's talk waits in the panel, unplayed.
    panel_dnd_on(&app).await?;
    let item = bob_talk_held(&app, &desk.people, &room, &speech).await?;
    // The whole talk is in before the homeserver dies: the panel lists it
    // (as soon as its first frames are in) with the length received so
    // far. Killed earlier, the rest would come back more than MAX_AGE
    // late, be refused, and the talk kept after the crash would be a
    // fragment.
    app.wait_for(&item, |t| listed_seconds(t).is_some_and(|s| s >= 1.9), DOM)
        .await?;

    // The homeserver dies: panel and tray say offline.
    let since = app.log_lines().len();
    desk.hs.kill()?;
    let killed = Instant::now();
    app.wait_for("#state", |t| t == "offline", DOM).await?;
    let to_offline = killed.elapsed();
    app.wait_for_log_after(since, &["tray state", "offline"], DOM)
        .await?;
    app.wait_for("#error", |t| t.contains("Offline"), DOM)
        .await?;
    if let Some(dir) = std::env::var_os("WALKIE_SCREENSHOT_DIR") {
        app.screenshot(&std::path::Path::new(&dir).join("panel-offline.png"))
            .await?;
    }
    // The outage itself (a fault of fixed length, not a wait for an event).
    tokio::time::sleep(Duration::from_secs(3)).await;
    desk.hs.restart().await?;
    let back = Instant::now();
    app.wait_for("#state", |t| t == "online", Duration::from_secs(90))
        .await?;
    let to_online = back.elapsed();
    app.wait_for("#error", |t| t.is_empty(), DOM).await?;
    eprintln!(
        "offline shown {} ms after the kill; online {} ms after the homeserver was back",
        to_offline.as_millis(),
        to_online.as_millis()
    );

    // The app is killed holding the unplayed talk, and started again.
    let pid = app.app_pid().context("the app's pid")?;
    // SAFETY: kill(2) on the app this test started.
    let killed = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    ensure!(killed == 0, "could not kill the app");
    drop(app);
    let app = desk.start_app().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    app.wait_for(&item, |t| t.contains(&desk.people.bob_r.user_id), DOM)
        .await?;
    let heard = desk.root.path().join("alice-speaker.wav");
    let played = play_from_panel(&app, &desk.audio, &item, &heard).await?;
    let source = walkie_audio::wav::read_wav_mono_48k(&speech)?;
    let (corr, _) = walkie_audio::similarity::normalised_cross_correlation(
        &source,
        &played,
        played.len().max(1) - 1,
    );
    eprintln!(
        "after the crash: played {:.2} s, correlation {corr:.3}",
        played.len() as f64 / 48_000.0
    );
    keep_audio(&heard, "after the crash")?;
    ensure!(corr >= 0.8, "what played is not bob's talk: {corr:.3}");
    let second_token = app_token(&desk)?;
    app.close().await?;

    // Nothing in the app's files gives the account or the audio away.
    let leaks = files_holding(
        &desk.people.app_data,
        &[first_token.as_bytes(), second_token.as_bytes()]
            .into_iter()
            .chain(PLAINTEXT_AUDIO)
            .collect::<Vec<_>>(),
    )?;
    let files = walkie_tests::files_under(&desk.people.app_data)?.len();
    eprintln!("scanned {files} files under the app's data directory");
    ensure!(leaks.is_empty(), "found in the app's files: {leaks:#?}");

    // Signed out from another client: the token is revoked on the server.
    let app = desk.start_app().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    let log_before = revoke_token(&desk.hs, &app_token(&desk)?).await?;
    let revoked = Instant::now();
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    let shown = revoked.elapsed();
    let error = app
        .wait_for_text("#si-error", |t| t.contains("Signed out elsewhere"), DOM)
        .await?;
    app.wait_for_log("signed out elsewhere", DOM).await?;
    ensure!(
        app.find("#sign-in").await?.is_displayed().await?,
        "the sign-in form is not shown"
    );
    ensure!(
        app.property("#si-submit", "disabled").await? == false,
        "the sign-in button is disabled"
    );
    // No retry loop: the app's requests with the dead token over the next
    // few seconds (an observation window, not a wait for an event).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let syncs = sync_requests_since(&desk.hs, log_before)?;
    // The long poll in flight, and the one the server answered 401: none
    // after that answer.
    let refused = syncs
        .iter()
        .position(|l| l.contains(" 401 "))
        .context("no /sync was refused with 401 after the revocation")?;
    eprintln!(
        "signed out elsewhere: shown {} ms after the revocation ({error:?}); {} /sync requests in the 5 s after, the 401 the last",
        shown.as_millis(),
        syncs.len()
    );
    ensure!(
        refused + 1 == syncs.len(),
        "/sync requests after the 401: {:#?}",
        &syncs[refused..]
    );
    ensure!(app.app_pid().is_some(), "the app exited");
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    app.close().await?;

    // The dead session is forgotten: started again (without the test's
    // password in its environment), the app asks for a sign-in instead of
    // trying the revoked token.
    let env: Vec<(String, String)> = desk
        .people
        .app_env(&desk.hs, &desk.audio)
        .into_iter()
        .filter(|(k, _)| {
            !["WALKIE_HOMESERVER", "WALKIE_USER", "WALKIE_PASSWORD"].contains(&k.as_str())
        })
        .collect();
    let app = walkie_tests::webdriver::AppDriver::start(
        &desk.desktop,
        &walkie_tests::webdriver::app_binary()?,
        env,
    )
    .await?;
    app.wait_for_log("not signed in; the panel asks", READY)
        .await?;
    app.wait_for("#state", |t| t == "signed out", DOM).await?;
    ensure!(
        app.find("#sign-in").await?.is_displayed().await?,
        "the sign-in form is not shown after a restart"
    );
    ensure!(
        desk.secrets
            .lookup(&[("service", "walkie"), ("username", "session")])?
            .is_none(),
        "the revoked session is still in the keyring"
    );
    app.close().await?;
    Ok(())
}
