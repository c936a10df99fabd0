//! Unplayed talks in the panel: with do not disturb on (from the panel), a
//! talk from bob (the CLI) is held by the mixing queue, announced by a
//! desktop notification (seen on the session bus) naming bob, and listed
//! under "Unplayed talks" with Play and Skip; Play plays it to the speakers (the app's
//! private PulseAudio sink hears it) and the list empties. Screenshot of the
//! view to `$WALKIE_SCREENSHOT_DIR` when set.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use walkie_tests::speech_wav;

mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muted_talks_wait_in_the_panel_and_play_on_request() -> Result<()> {
    let desk = app_desk().await?;
    let (audio, desktop, root, people) = (&desk.audio, &desk.desktop, &desk.root, &desk.people);
    let bob_r = &people.bob_r;
    let room = people.group("Walkie test")?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;
    let app = desk.start_app().await?;
    app.wait_for_log("walkie-app ready", READY).await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    app.wait_for(&format!(".group[data-room='{room}'] .name"), |_| true, DOM)
        .await?;
    // Do not disturb until turned off, from the panel.
    panel_dnd_on(&app).await?;
    // Watch the session bus for the desktop notification of a missed talk.
    let mut monitor = desktop
        .command("stdbuf")
        .args(["-oL", "dbus-monitor", "--session"])
        .arg("interface='org.freedesktop.Notifications',member='Notify'")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let monitor_out = monitor.stdout.take().context("dbus-monitor stdout")?;
    let (notified_tx, notified) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(monitor_out)
            .lines()
            .map_while(|l| l.ok())
        {
            if notified_tx.send(line).is_err() {
                break;
            }
        }
    });

    let item = bob_talk_held(&app, people, &room, &speech).await?;
    // The missed talk was announced on the desktop, naming bob.
    let deadline = std::time::Instant::now() + DOM;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match notified.recv_timeout(left) {
            Ok(line) if line.contains("Missed talk") => break,
            Ok(line) => seen.push(line),
            Err(_) => anyhow::bail!("no Missed talk notification on the bus: {seen:?}"),
        }
    }
    let body = notified
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default();
    eprintln!("notification body: {body}");
    ensure!(
        body.contains(&bob_r.user_id),
        "notification does not name bob: {body}"
    );
    monitor.kill()?;
    monitor.wait()?;
    if let Some(dir) = std::env::var_os("WALKIE_SCREENSHOT_DIR") {
        app.screenshot(&std::path::Path::new(&dir).join("panel-unplayed.png"))
            .await?;
    }

    // Play it: it goes to the speakers and leaves the list.
    let heard = root.path().join("alice-speaker.wav");
    let played = play_from_panel(&app, audio, &item, &heard).await?;
    let source = walkie_audio::wav::read_wav_mono_48k(&speech)?;
    let (corr, _) = walkie_audio::similarity::normalised_cross_correlation(
        &source,
        &played,
        played.len().max(1) - 1,
    );
    eprintln!(
        "played {:.2} s, correlation {corr:.3}",
        played.len() as f64 / 48_000.0
    );
    ensure!(corr >= 0.8, "what played is not bob's talk: {corr:.3}");
    app.close().await?;
    Ok(())
}
