//! `walkie talk ROOM --wav FILE | --mic`: one push-to-talk through the
//! station (`walkie_core::Station`), released at the end of the file, after
//! `--seconds` of capture, or on Ctrl-C. With `--mic` it prints a
//! `capture_live` line (device start-up figures) before the summary.

use serde_json::json;
use walkie_audio::player::Player;
use walkie_core::{
    live_talk::{Input, LiveTalkError, TalkOptions, TalkOutcome},
    Station,
};

use crate::exit::CliError;

pub async fn run(
    station: &Station,
    room: &str,
    input: &Input,
    options: &TalkOptions,
    player: Option<&Player>,
) -> Result<TalkOutcome, CliError> {
    let release = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mic = matches!(input, Input::Mic(_));
    let outcome = station
        .talk(room, input, options, release, |live| {
            if !mic {
                return;
            }
            println!(
                "{}",
                json!({
                    "event": "capture_live",
                    "open_to_first_samples_ms": live.open_to_first_samples.as_secs_f64() * 1000.0,
                    "press_to_live_ms": live.press_to_live.as_secs_f64() * 1000.0,
                    "press_to_floor_ms": live.press_to_floor.as_millis() as u64,
                })
            );
        })
        .await;
    if let (Err(LiveTalkError::Engine(walkie_core::EngineError::FloorBusy { .. })), Some(p)) =
        (&outcome, player)
    {
        // Let the busy cue sound before the process exits.
        p.drain();
    }
    outcome.map_err(|e| match e {
        LiveTalkError::Engine(e) => e.into(),
        LiveTalkError::Audio(m) => CliError::Other(anyhow::anyhow!(m)),
    })
}
