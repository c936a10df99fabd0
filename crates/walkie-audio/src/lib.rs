//! Walkie's audio crate: the Opus codec (`codec`), the Ogg Opus recording
//! writer and checker (`ogg_opus`), WAV files (`wav`), the voice-message
//! waveform (`waveform`), and signal comparison for tests and benchmarks
//! (`similarity`), and the adaptive jitter buffer (`jitter`). Device capture
//! and playback and the mixing queue follow (see `docs/architecture.md`).

pub mod codec;
pub mod jitter;
pub mod ogg_opus;
pub mod similarity;
pub mod wav;
pub mod waveform;

#[cfg(test)]
mod test_signal;
