//! Walkie's audio crate. Today: the waveform summary that a voice message
//! carries (`org.matrix.msc1767.audio.waveform`). Capture, Opus, jitter
//! buffer, playback scheduler and the Ogg writer join it next (see
//! `docs/architecture.md`).

pub mod waveform;
