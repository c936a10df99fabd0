//! `walkie talk ROOM --wav FILE | --mic`: claims the floor, streams 20 ms
//! Opus frames from the source in real time, `batch` frames per message,
//! and releases the floor when the source ends, after `--seconds`, or on
//! Ctrl-C. With `--mic` the microphone is opened on press, in parallel with
//! the floor claim, and the talk-permit cue sounds once capture is live.

use std::{path::PathBuf, time::Duration};

use serde_json::json;
use tokio::{sync::mpsc, time::Instant};
use walkie_audio::{
    capture::Capture,
    codec::{EncoderConfig, OpusEncoder},
    cues::Cue,
    frames::{DeviceError, FrameSource, WavSource},
    player::Player,
    source_thread::{SourceMessage, SourceThread},
};
use walkie_core::{
    engine::{now_ms, TalkSummary},
    Engine, EngineError,
};

use crate::exit::CliError;

/// Where the voice comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A 48 kHz WAV file, played in real time.
    Wav(PathBuf),
    /// A capture device (`None`: the default one).
    Mic(Option<String>),
}

/// How to talk.
#[derive(Debug, Clone)]
pub struct TalkOptions {
    pub batch: usize,
    /// Release after this long (from capture live); `None`: at the end of
    /// the file, or on Ctrl-C.
    pub seconds: Option<f64>,
    pub bitrate: u32,
}

fn start_source<O>(
    open: O,
    tx: mpsc::UnboundedSender<SourceMessage>,
) -> Result<SourceThread, CliError>
where
    O: FnOnce() -> Result<Box<dyn FrameSource>, DeviceError> + Send + 'static,
{
    SourceThread::start(open, move |message| tx.send(message).is_ok())
        .map_err(|e| CliError::Other(e.into()))
}

/// How a talk went.
#[derive(Debug)]
pub struct TalkOutcome {
    pub summary: TalkSummary,
    /// The audio source failed mid-talk (the talk ended there).
    pub device_error: Option<String>,
}

pub async fn run(
    engine: &Engine,
    room: &str,
    input: &Input,
    options: &TalkOptions,
    player: Option<&Player>,
) -> Result<TalkOutcome, CliError> {
    let mut encoder = OpusEncoder::with_config(EncoderConfig {
        bitrate: options.bitrate,
        ..EncoderConfig::default()
    })
    .map_err(|e| CliError::Other(e.into()))?;
    let press = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    // A microphone takes from tens of ms to seconds to deliver its first
    // samples: open it on press, while the floor is claimed. A file is read
    // (and checked) before claiming and streamed after.
    let mut source = None;
    let mut wav = None;
    match input {
        Input::Mic(device) => {
            if let Some(player) = player {
                player.open_output();
            }
            let device = device.clone();
            let open = move || -> Result<Box<dyn FrameSource>, DeviceError> {
                Ok(Box::new(Capture::open(device.as_deref())?))
            };
            source = Some(start_source(open, tx.clone())?);
        }
        Input::Wav(path) => {
            wav = Some(WavSource::open(path, true).map_err(|e| CliError::Other(e.into()))?);
        }
    }
    let mut talk = match engine.talk(room).await {
        Ok(talk) => talk,
        Err(e) => {
            if let (EngineError::FloorBusy { .. }, Some(player)) = (&e, player) {
                player.cue(Cue::Busy);
                player.drain();
            }
            return Err(e.into());
        }
    };
    let claimed_ms = press.elapsed().as_millis() as u64;
    let talk_start_ms = now_ms();
    let source = match (source, wav) {
        (Some(source), _) => source,
        (None, Some(wav)) => start_source(move || Ok(Box::new(wav)), tx)?,
        (None, None) => return Err(CliError::Other(anyhow::anyhow!("no audio source"))),
    };
    let mut sent_frames = 0u64;
    let mut pending = Vec::with_capacity(options.batch);
    let mut deadline: Option<Instant> = None;
    let mut failure = None;
    loop {
        let message = tokio::select! {
            m = rx.recv() => m,
            _ = async { tokio::time::sleep_until(deadline.unwrap_or(Instant::now())).await },
                if deadline.is_some() => None,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(message) = message else { break };
        match message {
            SourceMessage::Live { after, since_start } => {
                if let Some(player) = player {
                    player.cue(Cue::TalkPermit);
                }
                let live_ms = since_start.as_secs_f64() * 1000.0;
                println!(
                    "{}",
                    json!({
                        "event": "capture_live",
                        "open_to_first_samples_ms": after.as_secs_f64() * 1000.0,
                        "press_to_live_ms": live_ms,
                        "press_to_floor_ms": claimed_ms,
                    })
                );
                if let Some(secs) = options.seconds {
                    deadline = Some(Instant::now() + Duration::from_secs_f64(secs));
                }
            }
            SourceMessage::Frame(frame) => {
                let packet = encoder
                    .encode(&frame[..])
                    .map_err(|e| CliError::Other(e.into()))?;
                pending.push(packet);
                if pending.len() >= options.batch {
                    let first = sent_frames;
                    sent_frames += pending.len() as u64;
                    talk.send(std::mem::take(&mut pending), talk_start_ms + first * 20)?;
                }
            }
            SourceMessage::Ended => break,
            SourceMessage::Failed(e) => {
                tracing::warn!(error = %e, "audio source failed; ending the talk");
                failure = Some(e);
                break;
            }
        }
    }
    // Release: close the device first (no more audio), then the floor.
    source.stop();
    if !pending.is_empty() {
        talk.send(pending, talk_start_ms + sent_frames * 20)?;
    }
    // A device failure still ends the talk normally: what was sent is
    // kept and posted; the caller reports the failure after posting.
    Ok(TalkOutcome {
        summary: talk.finish().await?,
        device_error: failure.map(|e| e.to_string()),
    })
}
