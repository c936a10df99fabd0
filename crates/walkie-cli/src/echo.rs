//! `walkie echo ROOM`: a headless member that plays each talk it hears back
//! into the group once the talk ends, as a new live talk of its own, so the
//! floor, the cues and the recording all happen for real. It is how a user
//! checks their microphone, keys and network end to end on any homeserver,
//! like the echo channels of Mumble and Zello. It grants its own consent
//! first and names its device [`DEVICE_NAME`], which the app's panel shows;
//! the echoed audio stays in memory (never written to disk).

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::json;
use tokio::sync::mpsc;
use walkie_core::{
    engine::TalkEndReason,
    live_talk::{Input, LiveTalkError, TalkOptions},
    Engine, EngineError, EngineEvent, Station,
};

use crate::{
    exit::CliError,
    listen::{decode, print, to_json, Received},
};

/// What to echo and for how long.
#[derive(Debug)]
pub struct EchoOptions {
    pub room: String,
    /// Exit after echoing this many talks.
    pub talks: Option<usize>,
    pub timeout: Option<Duration>,
}

/// The device name the echo gives itself (the app's panel recognises it).
pub const DEVICE_NAME: &str = "Walkie echo";

/// A talk shorter than this is not echoed (a slip of the key).
const MIN_ECHO_SAMPLES: usize = 48_000 / 4;

pub async fn run(
    engine: &Engine,
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
    options: &EchoOptions,
) -> Result<(), CliError> {
    let station = Station::new(engine.clone(), None);
    let room = options.room.as_str();
    let mut talks: HashMap<String, Received> = HashMap::new();
    let mut echoed = 0;
    let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            e = events.recv() => e,
            _ = sleep => break,
        };
        let Some(event) = event else { break };
        match &event {
            EngineEvent::SignedOut => {
                print(&to_json(&event)?);
                return Err(CliError::NotSignedIn);
            }
            EngineEvent::TalkStarted {
                room_id,
                session_id,
                ..
            } if room_id == room => {
                // A new holder: a talk switched away from will not end here.
                talks.clear();
                talks.entry(session_id.clone()).or_default().room_id = room_id.clone();
                print(&to_json(&event)?);
            }
            EngineEvent::Audio {
                room_id,
                session_id,
                seq,
                frames,
                ..
            } if room_id == room => {
                let talk = talks.entry(session_id.clone()).or_default();
                talk.room_id = room_id.clone();
                talk.chunks.insert(*seq, frames.clone());
            }
            EngineEvent::TalkEnded {
                room_id,
                session_id,
                reason,
                ..
            } if room_id == room => {
                print(&to_json(&event)?);
                let Some(talk) = talks.remove(session_id) else {
                    continue;
                };
                // Only a talk its talker released is whole; one cut off by
                // its lease or superseded is not played back.
                if *reason != TalkEndReason::Released {
                    continue;
                }
                let pcm = decode(&talk)?;
                if pcm.len() < MIN_ECHO_SAMPLES {
                    continue;
                }
                let seconds = pcm.len() as f64 / 48_000.0;
                let input = Input::Samples(Arc::new(pcm));
                let outcome = station
                    .talk(
                        room,
                        &input,
                        &TalkOptions::default(),
                        std::future::pending(),
                        |_| {},
                    )
                    .await;
                match outcome {
                    Ok(done) => {
                        echoed += 1;
                        print(&json!({
                            "event": "echoed",
                            "of": session_id,
                            "session_id": done.summary.session_id,
                            "seconds": seconds,
                        }));
                    }
                    Err(LiveTalkError::Engine(e @ EngineError::FloorBusy { .. })) => {
                        // Someone else took the floor first: their talk is
                        // echoed in turn.
                        print(
                            &json!({"event": "echo_skipped", "of": session_id, "reason": e.to_string()}),
                        );
                    }
                    Err(LiveTalkError::Engine(e)) => return Err(e.into()),
                    Err(LiveTalkError::Audio(m)) => {
                        return Err(CliError::Other(anyhow::anyhow!(m)))
                    }
                }
                if options.talks.is_some_and(|n| echoed >= n) {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(())
}
