//! One push-to-talk from press to release, shared by the CLI and the app:
//! opens the voice source (a microphone on press, in parallel with the floor
//! claim; a WAV file after it), sounds the talk-permit cue once capture is
//! live (or the busy cue when someone holds the floor), streams 20 ms Opus
//! frames through the engine, `batch` per message (more while the sender is
//! behind), and on release closes the device first, then releases the
//! floor. While it holds the floor the player holds received talks back
//! (the user is talking); a guard ends that on every way out. Shells call
//! it through [`crate::station::Station`].

use std::{future::Future, path::PathBuf, time::Duration};

use tokio::{sync::mpsc, time::Instant};
use walkie_audio::{
    capture::Capture,
    codec::{EncoderConfig, OpusEncoder, DEFAULT_BITRATE},
    cues::Cue,
    frames::{DeviceError, FrameSource, WavSource},
    source_thread::{SourceMessage, SourceThread},
};

use walkie_protocol::frames_ms;

use crate::{
    engine::{now_ms, Engine, EngineError, Talk, TalkSummary},
    station::{Playback, UserTalking},
};

/// Frames one message may gather while the sender is behind (100 ms).
const MAX_FRAMES_WHEN_BEHIND: usize = 5;

/// What the talk loop does next.
enum Step {
    Source(SourceMessage),
    /// The sender finished what it had: send the gathered frames.
    SenderFree,
    Stop,
}

/// Sends the gathered frames as one message, timed from the talk's start.
fn send_pending(
    talk: &mut Talk,
    pending: &mut Vec<Vec<u8>>,
    sent_frames: &mut u64,
    talk_start_ms: u64,
) -> Result<(), EngineError> {
    let first = *sent_frames;
    *sent_frames += pending.len() as u64;
    tracing::debug!(
        first,
        frames = pending.len(),
        sender_busy = talk.sender_behind(),
        "audio message queued"
    );
    talk.send(std::mem::take(pending), talk_start_ms + frames_ms(first))
}

/// Where the voice comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A 48 kHz WAV file, played in real time.
    Wav(PathBuf),
    /// A capture device (`None`: the default one).
    Mic(Option<String>),
    /// 48 kHz mono samples in memory, played in real time (the echo peer
    /// plays a talk it received back this way, never writing it to disk).
    Samples(std::sync::Arc<Vec<i16>>),
}

/// How to talk.
#[derive(Debug, Clone)]
pub struct TalkOptions {
    /// 20 ms frames per to-device message. One: a sealed batch costs one
    /// request whatever the group's size, and every frame held back for a
    /// batch is 20 ms more mouth-to-ear (`docs/benchmarks.md`).
    pub batch: usize,
    /// Opus bitrate, bit/s.
    pub bitrate: u32,
    /// Release at the latest this long after capture went live.
    pub max_after_live: Option<Duration>,
}

impl Default for TalkOptions {
    fn default() -> Self {
        Self {
            batch: 1,
            bitrate: DEFAULT_BITRATE,
            max_after_live: None,
        }
    }
}

/// Capture went live: the talk-permit cue sounds now.
#[derive(Debug, Clone, Copy)]
pub struct CaptureLive {
    /// From opening the device to its first samples.
    pub open_to_first_samples: Duration,
    /// From the press to the first samples.
    pub press_to_live: Duration,
    /// From the press to holding the floor.
    pub press_to_floor: Duration,
}

/// How a talk went.
#[derive(Debug)]
pub struct TalkOutcome {
    pub summary: TalkSummary,
    /// The audio source failed mid-talk (the talk ended there; what was
    /// sent is kept and posted).
    pub device_error: Option<String>,
}

/// Why a talk did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LiveTalkError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The voice source could not be read or opened before the talk.
    #[error("audio: {0}")]
    Audio(String),
}

fn start_source<O>(
    open: O,
    tx: mpsc::UnboundedSender<SourceMessage>,
) -> Result<SourceThread, LiveTalkError>
where
    O: FnOnce() -> Result<Box<dyn FrameSource>, DeviceError> + Send + 'static,
{
    SourceThread::start(open, move |message| tx.send(message).is_ok())
        .map_err(|e| LiveTalkError::Audio(format!("cannot start the capture thread: {e}")))
}

/// The talk stopped before the user let go (lost the floor, the group's
/// talk-time limit, this device's consent revoked or expired): the busy cue
/// tells the talker at once that nobody hears them any more.
fn talk_cut_short(player: Option<&dyn Playback>, e: EngineError) -> LiveTalkError {
    tracing::info!(error = %e, "talk cut short");
    if let Some(player) = player {
        player.cue(Cue::Busy);
    }
    e.into()
}

/// Talks into `room` until `release` completes (the key is let go), the
/// source ends, `max_after_live` passes or the source fails.
pub async fn run(
    engine: &Engine,
    room: &str,
    input: &Input,
    options: &TalkOptions,
    player: Option<&dyn Playback>,
    release: impl Future<Output = ()>,
    mut on_live: impl FnMut(CaptureLive),
) -> Result<TalkOutcome, LiveTalkError> {
    let mut encoder = OpusEncoder::with_config(EncoderConfig {
        bitrate: options.bitrate,
        ..EncoderConfig::default()
    })
    .map_err(|e| LiveTalkError::Audio(e.to_string()))?;
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
            wav =
                Some(WavSource::open(path, true).map_err(|e| LiveTalkError::Audio(e.to_string()))?);
        }
        Input::Samples(samples) => {
            wav = Some(WavSource::from_samples(samples.to_vec(), true));
        }
    }
    let mut talk = match engine.talk(room).await {
        Ok(talk) => talk,
        Err(e) => {
            if let (EngineError::FloorBusy { .. }, Some(player)) = (&e, player) {
                player.cue(Cue::Busy);
            }
            return Err(e.into());
        }
    };
    // Until this is dropped (however `run` returns) the player holds
    // received talks back.
    let _talking = UserTalking::start(player);
    let press_to_floor = press.elapsed();
    let talk_start_ms = now_ms();
    let source = match (source, wav) {
        (Some(source), _) => source,
        (None, Some(wav)) => start_source(move || Ok(Box::new(wav)), tx)?,
        (None, None) => return Err(LiveTalkError::Audio("no audio source".into())),
    };
    let mut sent_frames = 0u64;
    let mut pending = Vec::with_capacity(options.batch);
    let mut deadline: Option<Instant> = None;
    let mut failure = None;
    tokio::pin!(release);
    let batch = options.batch.max(1);
    loop {
        let step = tokio::select! {
            m = rx.recv() => m.map_or(Step::Stop, Step::Source),
            _ = async { tokio::time::sleep_until(deadline.unwrap_or(Instant::now())).await },
                if deadline.is_some() => Step::Stop,
            _ = &mut release => Step::Stop,
            // Frames gathered while the sender was busy go as soon as it is
            // free, not at the next frame.
            _ = talk.sender_idle(), if pending.len() >= batch => Step::SenderFree,
        };
        let message = match step {
            Step::Stop => break,
            Step::SenderFree => {
                send_pending(&mut talk, &mut pending, &mut sent_frames, talk_start_ms)
                    .map_err(|e| talk_cut_short(player, e))?;
                continue;
            }
            Step::Source(message) => message,
        };
        match message {
            SourceMessage::Live { after, since_start } => {
                if let Some(player) = player {
                    player.cue(Cue::TalkPermit);
                }
                on_live(CaptureLive {
                    open_to_first_samples: after,
                    press_to_live: since_start,
                    press_to_floor,
                });
                if let Some(max) = options.max_after_live {
                    deadline = Some(Instant::now() + max);
                }
            }
            SourceMessage::Frame(frame) => {
                match encoder.encode(&frame[..]) {
                    Ok(packet) => pending.push(packet),
                    Err(e) => {
                        // Cannot happen for a whole frame; never end a talk on it.
                        tracing::warn!(error = %e, "frame not encoded");
                        continue;
                    }
                }
                // While the sender is busy (the claim's Olm round, a slow
                // homeserver, a busy machine), frames wait for it and go in
                // one message when it is free: one request for the backlog
                // instead of a queue that drains a frame at a time.
                let full = pending.len() >= batch
                    && (pending.len() >= MAX_FRAMES_WHEN_BEHIND || !talk.sender_behind());
                if full {
                    send_pending(&mut talk, &mut pending, &mut sent_frames, talk_start_ms)
                        .map_err(|e| talk_cut_short(player, e))?;
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
        send_pending(&mut talk, &mut pending, &mut sent_frames, talk_start_ms)
            .map_err(|e| talk_cut_short(player, e))?;
    }
    let summary = talk.finish().await;
    Ok(TalkOutcome {
        summary: summary?,
        device_error: failure.map(|e| e.to_string()),
    })
}
