//! `walkie talk ROOM --wav FILE`: claims the floor, then encodes the WAV as
//! 20 ms Opus frames and sends them in real time, `batch` frames per
//! message, and releases the floor at the end.

use std::{path::Path, time::Duration};

use tokio::time::Instant;
use walkie_audio::{codec::OpusEncoder, wav};
use walkie_core::{
    engine::{now_ms, TalkSummary},
    Engine,
};

use crate::exit::CliError;

pub async fn run(
    engine: &Engine,
    room: &str,
    wav_path: &Path,
    batch: usize,
) -> Result<TalkSummary, CliError> {
    let pcm = wav::read_wav_mono_48k(wav_path).map_err(|e| CliError::Other(e.into()))?;
    let mut encoder = OpusEncoder::new().map_err(|e| CliError::Other(e.into()))?;
    let mut talk = engine.talk(room).await?;
    let started = Instant::now();
    let talk_start_ms = now_ms();
    let frame = Duration::from_millis(20);
    let mut pending = Vec::with_capacity(batch);
    let mut first_index = 0usize;
    for (index, samples) in wav::frames(&pcm).enumerate() {
        // Real time: frame `index` is "captured" at start + index * 20 ms.
        tokio::time::sleep_until(started + frame * (index as u32 + 1)).await;
        let packet = encoder
            .encode(&samples)
            .map_err(|e| CliError::Other(e.into()))?;
        if pending.is_empty() {
            first_index = index;
        }
        pending.push(packet);
        if pending.len() >= batch {
            let ts = talk_start_ms + first_index as u64 * 20;
            talk.send(std::mem::take(&mut pending), ts)?;
        }
    }
    if !pending.is_empty() {
        talk.send(pending, talk_start_ms + first_index as u64 * 20)?;
    }
    Ok(talk.finish().await?)
}
