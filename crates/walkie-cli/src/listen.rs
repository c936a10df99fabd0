//! `walkie listen [ROOM…] --out DIR`: prints every engine event as one JSON
//! line and writes each received talk, decoded in sequence order, to
//! `DIR/<session_id>.wav` when it ends.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::Duration,
};

use serde_json::json;
use tokio::sync::mpsc;
use walkie_audio::{codec::OpusDecoder, wav};
use walkie_core::EngineEvent;

use crate::exit::CliError;

#[derive(Default)]
struct Received {
    room_id: String,
    /// seq → Opus packets of that message.
    chunks: BTreeMap<u32, Vec<Vec<u8>>>,
}

fn print(value: &serde_json::Value) {
    println!("{value}");
}

pub async fn run(
    mut events: mpsc::UnboundedReceiver<EngineEvent>,
    rooms: &[String],
    out: &Path,
    talks: Option<usize>,
    timeout: Option<Duration>,
) -> Result<(), CliError> {
    std::fs::create_dir_all(out).map_err(|e| CliError::Other(e.into()))?;
    let mut sessions: HashMap<String, Received> = HashMap::new();
    let mut saved = 0usize;
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        let event = match deadline {
            Some(d) => match tokio::time::timeout_at(d, events.recv()).await {
                Ok(e) => e,
                Err(_) => break,
            },
            None => events.recv().await,
        };
        let Some(event) = event else { break };
        let wanted = |room: &str| rooms.is_empty() || rooms.iter().any(|r| r == room);
        match &event {
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
                print(&serde_json::to_value(&event).map_err(|e| CliError::Other(e.into()))?);
                if let Some(received) = sessions.remove(session_id) {
                    let path = out.join(format!("{session_id}.wav"));
                    let samples = save(&received, &path)?;
                    print(&json!({
                        "event": "saved",
                        "room_id": received.room_id,
                        "session_id": session_id,
                        "path": path,
                        "samples": samples,
                    }));
                    saved += 1;
                    if talks.is_some_and(|n| saved >= n) {
                        break;
                    }
                }
                continue;
            }
            _ => {}
        }
        print(&serde_json::to_value(&event).map_err(|e| CliError::Other(e.into()))?);
    }
    Ok(())
}

/// Decodes a talk's packets in sequence order into a WAV file.
fn save(received: &Received, path: &Path) -> Result<usize, CliError> {
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
    wav::write_wav_mono_48k(path, &pcm).map_err(|e| CliError::Other(e.into()))?;
    Ok(pcm.len())
}
