//! The panel's microphone test: the device pickers list the system's inputs
//! and outputs; "Test microphone" opens the chosen input and its level
//! meter follows what the virtual microphone hears (a tone: loud; nothing:
//! silent); stopping the test closes the device (no stream of ours left).
//! Screenshot of the settings view to `$WALKIE_SCREENSHOT_DIR` when set.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use walkie_tests::pulse::tone_wav;

mod common;
use common::*;

const READY: Duration = Duration::from_secs(90);
const DOM: Duration = Duration::from_secs(20);

fn db(text: &str) -> Option<f32> {
    text.strip_suffix(" dBFS")?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_level_meter_hears_the_chosen_microphone() -> Result<()> {
    let desk = app_desk().await?;
    let (audio, root) = (&desk.audio, &desk.root);
    let app = desk.start_app().await?;
    app.wait_for("#state", |t| t == "online", READY).await?;
    let inputs = app.find_all("#input-device option").await?;
    let outputs = app.find_all("#output-device option").await?;
    eprintln!("{} inputs, {} outputs", inputs.len(), outputs.len());
    ensure!(inputs.len() >= 2 && outputs.len() >= 2, "no devices listed");

    // Silence first: the meter shows the mic is quiet.
    app.find("#mic-test").await?.click().await?;
    app.wait_for("#mic-level-text", |t| db(t).is_some_and(|d| d < -60.0), DOM)
        .await?;
    // A tone into the virtual microphone: the meter rises.
    let tone = root.path().join("tone.wav");
    tone_wav(&tone, 440.0, 3.0)?;
    let mut feed = audio.play_into_mic(&tone)?;
    let loud = app
        .wait_for_text("#mic-level-text", |t| db(t).is_some_and(|d| d > -20.0), DOM)
        .await;
    eprintln!("meter with the tone: {loud:?}");
    if let Some(dir) = std::env::var_os("WALKIE_SCREENSHOT_DIR") {
        app.execute(
            "document.getElementById('settings').scrollIntoView();",
            vec![],
        )
        .await?;
        app.screenshot(&std::path::Path::new(&dir).join("panel-settings.png"))
            .await?;
    }
    feed.wait()?;
    // Stop: the button comes back and the microphone is closed.
    app.find("#mic-test").await?.click().await?;
    app.wait_for("#mic-test", |t| t == "Test microphone", DOM)
        .await?;
    let deadline = Instant::now() + DOM;
    loop {
        let left = audio.our_streams()?;
        if left.is_empty() {
            break;
        }
        ensure!(Instant::now() < deadline, "streams left open: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.close().await?;
    Ok(())
}
