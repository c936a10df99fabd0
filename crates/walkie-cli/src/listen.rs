//! `walkie listen [ROOM…] --out DIR [--play]`: prints every engine event as
//! one JSON line and writes each received talk, decoded in sequence order,
//! to `DIR/<session_id>.wav` when it ends. With `--play` the talks also go
//! through the player (jitter buffer, mixing queue, cues) to the speakers,
//! and the player's events (output opened/closed, talk playing/played) are
//! printed too.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::json;
use tokio::sync::mpsc;
use walkie_audio::{
    codec::OpusDecoder,
    mixing_queue::QueueEvent,
    output::DeviceSink,
    player::{Player, PlayerConfig, PlayerEvent},
    queue_store::QueueStore,
    wav,
};
use walkie_core::{Engine, EngineEvent, Playback, Station};

use crate::exit::CliError;

/// What to listen to and where it goes.
#[derive(Debug)]
pub struct ListenOptions {
    /// Rooms to take talks from (empty: all walkie groups).
    pub rooms: Vec<String>,
    pub out: PathBuf,
    /// Exit after this many talks were saved (and, with `play`, played and
    /// the output closed again).
    pub talks: Option<usize>,
    pub timeout: Option<Duration>,
    /// Play to this output device (`Some(None)`: the default one).
    pub play: Option<Option<String>>,
}

/// A talk being received: its Opus packets by message.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) room_id: String,
    /// seq → Opus packets of that message.
    pub(crate) chunks: BTreeMap<u32, Vec<Vec<u8>>>,
}

/// One JSON line on stdout; a closed stdout (the reader went away) is not
/// worth a panic.
pub(crate) fn print(value: &serde_json::Value) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{value}");
}

/// An engine event as printed; a talk's start also says when it arrived
/// (`received_ms`, this machine's clock: press -> claim in the benches).
pub(crate) fn to_json(event: &EngineEvent) -> Result<serde_json::Value, CliError> {
    let mut value = serde_json::to_value(event).map_err(|e| CliError::Other(e.into()))?;
    if matches!(event, EngineEvent::TalkStarted { .. }) {
        value["received_ms"] = json!(walkie_core::engine::now_ms());
    }
    Ok(value)
}

fn player_json(event: &PlayerEvent) -> serde_json::Value {
    match event {
        PlayerEvent::OutputOpened => json!({"event": "output_opened"}),
        PlayerEvent::OutputClosed => json!({"event": "output_closed"}),
        PlayerEvent::OutputFailed(reason) => json!({"event": "output_failed", "reason": reason}),
        PlayerEvent::CueStarted(cue) => json!({"event": "cue", "cue": cue}),
        PlayerEvent::Queue(q) => json!({"event": "queue", "detail": format!("{q:?}")}),
    }
}

/// Where `walkie listen` is in its run.
struct Progress {
    saved: usize,
    played: usize,
    output_open: bool,
}

impl Progress {
    fn done(&self, options: &ListenOptions) -> bool {
        let Some(n) = options.talks else { return false };
        self.saved >= n && (options.play.is_none() || (self.played >= n && !self.output_open))
    }
}

pub async fn run(
    engine: &Engine,
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
    options: &ListenOptions,
    store: Option<QueueStore>,
) -> Result<(), CliError> {
    std::fs::create_dir_all(&options.out).map_err(|e| CliError::Other(e.into()))?;
    let (player_tx, mut player_events) = mpsc::unbounded_channel();
    let player: Option<std::sync::Arc<dyn Playback>> = match &options.play {
        None => None,
        Some(device) => Some(std::sync::Arc::new(
            Player::start(
                Box::new(DeviceSink::new(device.clone())),
                PlayerConfig::default(),
                store,
                move |event| {
                    let _ = player_tx.send(event);
                },
            )
            .map_err(|e| CliError::Other(e.into()))?,
        )),
    };
    let station = Station::new(engine.clone(), player);
    let mut sessions: HashMap<String, Received> = HashMap::new();
    let mut progress = Progress {
        saved: 0,
        played: 0,
        output_open: false,
    };
    let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
    let wanted = |room: &str| options.rooms.is_empty() || options.rooms.iter().any(|r| r == room);
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            e = events.recv() => e,
            Some(p) = player_events.recv() => {
                match &p {
                    PlayerEvent::OutputOpened => progress.output_open = true,
                    PlayerEvent::OutputClosed => progress.output_open = false,
                    PlayerEvent::Queue(QueueEvent::Finished { .. }) => progress.played += 1,
                    _ => {}
                }
                print(&player_json(&p));
                if progress.done(options) {
                    break;
                }
                continue;
            }
            _ = sleep => break,
        };
        let Some(event) = event else { break };
        if matches!(event, EngineEvent::SignedOut) {
            print(&to_json(&event)?);
            return Err(CliError::NotSignedIn);
        }
        let in_wanted_room = match &event {
            EngineEvent::TalkStarted { room_id, .. }
            | EngineEvent::Audio { room_id, .. }
            | EngineEvent::TalkEnded { room_id, .. } => wanted(room_id),
            _ => false,
        };
        if in_wanted_room {
            station.forward(&event);
        }
        match &event {
            // A new holder in a room: a talk we were playing there and
            // switched away from (it lost a collision) will not end here;
            // forget it, so the map only holds live talks.
            EngineEvent::TalkStarted {
                room_id,
                session_id,
                ..
            } => {
                sessions.retain(|sid, r| r.room_id != *room_id || sid == session_id);
            }
            EngineEvent::Audio {
                room_id,
                session_id,
                seq,
                frames,
                ..
            } if wanted(room_id) => {
                let entry = sessions.entry(session_id.clone()).or_default();
                entry.room_id = room_id.clone();
                entry.chunks.insert(*seq, frames.clone());
            }
            EngineEvent::TalkEnded {
                room_id,
                session_id,
                ..
            } if wanted(room_id) => {
                print(&to_json(&event)?);
                if let Some(received) = sessions.remove(session_id) {
                    let path = options.out.join(format!("{session_id}.wav"));
                    let samples = save(&received, &path)?;
                    print(&json!({
                        "event": "saved",
                        "room_id": received.room_id,
                        "session_id": session_id,
                        "path": path,
                        "samples": samples,
                    }));
                    progress.saved += 1;
                    if progress.done(options) {
                        break;
                    }
                }
                continue;
            }
            _ => {}
        }
        print(&to_json(&event)?);
    }
    drop(station);
    Ok(())
}

/// Decodes a talk's packets in sequence order into a WAV file.
fn save(received: &Received, path: &Path) -> Result<usize, CliError> {
    let pcm = decode(received)?;
    wav::write_wav_mono_48k(path, &pcm).map_err(|e| CliError::Other(e.into()))?;
    Ok(pcm.len())
}

/// A talk's packets decoded in sequence order (an undecodable packet is
/// concealed), 48 kHz mono.
pub(crate) fn decode(received: &Received) -> Result<Vec<i16>, CliError> {
    let mut decoder = OpusDecoder::new().map_err(|e| CliError::Other(e.into()))?;
    let mut pcm = Vec::new();
    for packets in received.chunks.values() {
        for packet in packets {
            match decoder.decode(packet) {
                Ok(samples) => pcm.extend_from_slice(&samples),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable Opus packet; concealing");
                    if let Ok(samples) = decoder.decode_lost() {
                        pcm.extend_from_slice(&samples);
                    }
                }
            }
        }
    }
    Ok(pcm)
}
