//! Walkie's audio crate.
//!
//! Send path: a [`frames::FrameSource`] (microphone: `capture`, opened on
//! press, converted to 48 kHz mono by `resample`; or a WAV file) run by
//! `source_thread`, then the Opus encoder (`codec`).
//! Receive path: `player` (one thread) takes talks into the `mixing_queue`
//! (one talk at a time, the rest queued; `queue_store` keeps unplayed talks
//! encrypted on disk), plays the live one through the `jitter` buffer and
//! the Opus decoder with FEC/PLC, mixes in `cues`, and writes to a
//! [`frames::FrameSink`] (speakers: `output`, opened on demand; or a WAV).
//! Recordings: `ogg_opus` and `waveform`. Tools for tests and benchmarks,
//! public only with the `test-utils` feature (other crates' tests and the
//! benchmark turn it on; this crate's unit tests always have them):
//! `netsim` (seeded network), `similarity`, `test_signal` and the Ogg Opus
//! reader `ogg_opus::read_ogg_opus`.

mod audio_host;
pub mod capture;
pub mod codec;
pub mod cues;
pub mod frames;
#[cfg(test)]
mod fuzz_tests;
pub mod jitter;
pub mod mixing_queue;
#[cfg(any(test, feature = "test-utils"))]
pub mod netsim;
pub mod ogg_opus;
pub mod output;
pub mod output_gaps;
pub mod player;
pub mod queue_store;
pub mod resample;
#[cfg(any(test, feature = "test-utils"))]
pub mod similarity;
pub mod source_thread;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_signal;
pub mod wav;
pub mod waveform;
