//! Speaker output through rodio, opened on the first frame written and
//! closed by [`FrameSink::suspend`] (the player suspends after a short idle
//! time): no output stream exists while nothing plays. Owns the device
//! lookup, the lock-free ring between the player thread and the device
//! callback, underrun and gap counting, and the stream's buffering: short
//! for live talks, longer for stored ones, and longer for live ones too
//! after the device left gaps (see [`crate::output_gaps`]). rodio converts
//! our 48 kHz mono to the device's rate and channels.

use std::{
    num::NonZero,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use cpal::traits::HostTrait;
use rodio::{DeviceSinkBuilder, MixerDeviceSink, Source};

use crate::{
    audio_host,
    codec::{FRAME_SAMPLES, SAMPLE_RATE},
    frames::{i16_to_f32, DeviceError, Frame, FrameSink, OutputLatency, Result},
    output_gaps::GapDetector,
};

/// Audio the player keeps queued ahead of the device, beyond one device
/// period: 1 frame (20 ms). The device takes a whole period per callback
/// (rodio asks ALSA for 2048 frames, ~43 ms), so a ring shallower than a
/// period runs dry on every callback and clicks.
pub const AHEAD_FRAMES: usize = 1;
/// The output buffer asked of the native PulseAudio host: the stream's
/// callback period (the server's minimum request); cpal asks PulseAudio for a
/// target length of two periods and for `adjust_latency`. ALSA keeps rodio's
/// default (2048 frames). `WALKIE_OUTPUT_PERIOD_MS` overrides it (spike).
const OUTPUT_PERIOD_MS: u32 = 5;
/// The period for a stored talk played on request, and the most a live
/// talk's grows to after gaps: the server then holds 40 ms.
const RELAXED_PERIOD_MS: u32 = 20;
/// Live opens in a row without a gap or an underrun after which a grown
/// live period halves again (the machine is no longer that busy).
const CLEAN_OPENS_TO_SHRINK: u32 = 10;
/// Gaps in one live open after which it is reopened at once with twice the
/// period: what is queued in it (a period and the margin, ~10 ms at 5 ms)
/// is lost once, instead of a gap every few hundred ms for the rest of the
/// talk (measured on a busy 2-core machine: 10–20 gaps in a 4–5 s talk).
const GAPS_TO_REOPEN: u64 = 2;
/// The margin the ring keeps beyond one period through the native
/// PulseAudio host: 5 ms (240 samples), the player's top-up interval. Its
/// callbacks come every period in equal blocks, unlike ALSA's pulse plugin's
/// bursts; an underrun grows the margin by its own size.
/// `WALKIE_OUTPUT_AHEAD_MS` overrides it (spike).
const PULSE_AHEAD_SAMPLES: usize = SAMPLE_RATE as usize * 5 / 1000;
/// An open device that pulls no sample for this long counts as gone.
const STALL: Duration = Duration::from_secs(2);
/// Device period assumed when the device does not say (~85 ms).
const UNKNOWN_PERIOD_SAMPLES: usize = 4096;
/// Ring capacity: room for the largest period plus the margin and a burst.
const RING_SAMPLES: usize = FRAME_SAMPLES * 16;
/// Non-fatal device errors in a row after which the device counts as
/// failed: ALSA's pulse plugin reports a vanished server as a storm of
/// `BackendError`s (~750 000 a second) rather than once.
const ERROR_STORM: u64 = 1_000;

/// State shared with the device callback.
#[derive(Debug, Default)]
struct Shared {
    closed: AtomicBool,
    underruns: AtomicU64,
    /// Samples the device pulled (silence in underruns included).
    played: AtomicU64,
    failed: AtomicBool,
}

/// A device error that means the device or its server is gone.
fn is_lost(err: &cpal::Error) -> bool {
    use cpal::ErrorKind as K;
    matches!(
        err.kind(),
        K::DeviceNotAvailable | K::HostUnavailable | K::StreamInvalidated
    )
}

/// Whether a capture error ends the stream: a lost device or server at
/// once, anything else (xruns, transient backend errors) only as a storm.
pub(crate) fn is_fatal(err: &cpal::Error, count: &AtomicU64) -> bool {
    use cpal::ErrorKind as K;
    match err.kind() {
        K::DeviceNotAvailable | K::HostUnavailable | K::StreamInvalidated => true,
        K::Xrun => false,
        _ => count.fetch_add(1, Ordering::Relaxed) + 1 >= ERROR_STORM,
    }
}

/// The rodio source the device pulls: samples from the ring, silence when
/// the ring is empty (an underrun), the end when the sink closes.
struct RingSource {
    rx: rtrb::Consumer<f32>,
    shared: Arc<Shared>,
    starved: bool,
}

impl Iterator for RingSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if self.shared.closed.load(Ordering::Relaxed) {
            return None;
        }
        match self.rx.pop() {
            Ok(sample) => {
                self.starved = false;
                self.shared.played.fetch_add(1, Ordering::Relaxed);
                Some(sample)
            }
            Err(_) => {
                self.shared.played.fetch_add(1, Ordering::Relaxed);
                if !self.starved {
                    self.starved = true;
                    self.shared.underruns.fetch_add(1, Ordering::Relaxed);
                }
                Some(0.0)
            }
        }
    }
}

impl Source for RingSource {
    fn current_span_len(&self) -> Option<usize> {
        None
    }
    fn channels(&self) -> rodio::ChannelCount {
        NonZero::<u16>::MIN
    }
    fn sample_rate(&self) -> rodio::SampleRate {
        NonZero::new(SAMPLE_RATE).unwrap_or(NonZero::<u32>::MIN)
    }
    fn total_duration(&self) -> Option<Duration> {
        None
    }
}

struct Open {
    _device: MixerDeviceSink,
    /// What the stream was opened for, and its period (PulseAudio only).
    latency: OutputLatency,
    period_ms: Option<u32>,
    gaps: GapDetector,
    opened_at: std::time::Instant,
    /// Samples the device had pulled at `pulled_at`: a device that pulls
    /// nothing for `STALL` while audio waits is taken as gone.
    pulled: u64,
    pulled_at: std::time::Instant,
    tx: rtrb::Producer<f32>,
    shared: Arc<Shared>,
    /// Samples (at 48 kHz) to keep queued: one device period plus margin,
    /// grown by `grow_samples` at every underrun.
    ahead_samples: usize,
    /// The margin's step: the margin itself (one 5 ms period through the
    /// native PulseAudio host, a frame through ALSA).
    grow_samples: usize,
    underruns_seen: u64,
}

/// Speakers as a [`FrameSink`].
pub struct DeviceSink {
    device: Option<String>,
    open: Option<Open>,
    underruns_before: u64,
    gaps_before: u64,
    /// What the next open is for.
    latency: OutputLatency,
    /// The period a live stream opens with: grown after gaps.
    live_period_ms: u32,
    clean_live_opens: u32,
}

impl std::fmt::Debug for DeviceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceSink")
            .field("device", &self.device)
            .field("open", &self.open.is_some())
            .finish()
    }
}

/// Names of the output devices, for the device picker.
pub fn output_device_names() -> Result<Vec<String>> {
    let host = audio_host::host();
    let devices = host.output_devices().map_err(|e| DeviceError::Open {
        kind: "output",
        name: "(any)".into(),
        reason: e.to_string(),
    })?;
    Ok(devices.map(|d| audio_host::device_name(&d)).collect())
}

impl DeviceSink {
    /// A sink for the named output device (or the default one). Nothing is
    /// opened until the first frame.
    pub fn new(device: Option<String>) -> Self {
        Self {
            device,
            open: None,
            underruns_before: 0,
            gaps_before: 0,
            latency: OutputLatency::Live,
            live_period_ms: env_ms("WALKIE_OUTPUT_PERIOD_MS").unwrap_or(OUTPUT_PERIOD_MS),
            clean_live_opens: 0,
        }
    }

    /// Gaps the device filled with silence (its callback came late) so far.
    pub fn gaps(&self) -> u64 {
        self.gaps_before + self.open.as_ref().map_or(0, |o| o.gaps.gaps())
    }

    /// Device underruns (the ring ran dry while playing) so far.
    pub fn underruns(&self) -> u64 {
        self.underruns_before
            + self
                .open
                .as_ref()
                .map_or(0, |o| o.shared.underruns.load(Ordering::Relaxed))
    }

    fn open(&mut self) -> Result<&mut Open> {
        if self.open.is_none() {
            let period_ms = match self.latency {
                OutputLatency::Live => self.live_period_ms,
                OutputLatency::Relaxed => RELAXED_PERIOD_MS.max(self.live_period_ms),
            };
            let opened = open_device(self.device.as_deref(), self.latency, period_ms)?;
            self.open = Some(opened);
        }
        // Just set above.
        self.open.as_mut().ok_or_else(|| DeviceError::NotFound {
            kind: "output",
            name: self.device.clone(),
        })
    }

    fn close(&mut self) {
        if let Some(open) = self.open.take() {
            open.shared.closed.store(true, Ordering::Relaxed);
            let underruns = open.shared.underruns.load(Ordering::Relaxed);
            self.underruns_before += underruns;
            self.gaps_before += open.gaps.gaps();
            let pulled = open.shared.played.load(Ordering::Relaxed);
            tracing::info!(
                pulled_samples = pulled,
                open_ms = open.opened_at.elapsed().as_millis() as u64,
                underruns,
                gaps = open.gaps.gaps(),
                gap_ms = open.gaps.gap_ms().round() as u64,
                ahead_samples = open.ahead_samples,
                latency = ?open.latency,
                period_ms = open.period_ms,
                "output closed"
            );
            self.adapt_live_period(&open, underruns);
        }
    }

    /// A live stream that left gaps makes the next one buffer twice as
    /// much (up to the relaxed period); enough clean ones in a row halve
    /// it again.
    fn adapt_live_period(&mut self, open: &Open, underruns: u64) {
        if open.latency != OutputLatency::Live || open.period_ms.is_none() {
            return;
        }
        let base = env_ms("WALKIE_OUTPUT_PERIOD_MS").unwrap_or(OUTPUT_PERIOD_MS);
        let before = self.live_period_ms;
        if open.gaps.gaps() > 0 {
            self.clean_live_opens = 0;
            self.live_period_ms = (before * 2).min(RELAXED_PERIOD_MS.max(base));
        } else if underruns == 0 {
            self.clean_live_opens += 1;
            if self.clean_live_opens >= CLEAN_OPENS_TO_SHRINK {
                self.clean_live_opens = 0;
                self.live_period_ms = (before / 2).max(base);
            }
        }
        if self.live_period_ms != before {
            tracing::info!(
                from_ms = before,
                to_ms = self.live_period_ms,
                "live output period changed (gaps grow it, clean talks shrink it)"
            );
        }
    }
}

fn open_device(name: Option<&str>, latency: OutputLatency, period_ms: u32) -> Result<Open> {
    let (host, device) =
        audio_host::find_device(name, false).ok_or_else(|| DeviceError::NotFound {
            kind: "output",
            name: name.map(str::to_owned),
        })?;
    let device_name = audio_host::device_name(&device);
    let shared = Arc::new(Shared::default());
    let on_error = {
        let shared = shared.clone();
        move |err: cpal::Error| {
            // Only a lost device or server ends the stream here; backend
            // error storms (ALSA's pulse plugin reports some right after
            // opening while it keeps playing) are judged by whether the
            // device still pulls samples (see `frames_wanted`).
            // An error after we closed the stream is its teardown, not a
            // failure (PulseAudio reports "No such entity" for it at times).
            if shared.closed.load(Ordering::Relaxed) {
                tracing::debug!(%err, "output error after close");
            } else if is_lost(&err) && !shared.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(%err, "output device failed");
            }
        }
    };
    let builder = || {
        DeviceSinkBuilder::from_device(device.clone()).map_err(|e| DeviceError::Open {
            kind: "output",
            name: device_name.clone(),
            reason: e.to_string(),
        })
    };
    // The device's own buffer size: a forced short one (10 ms) made ALSA's
    // pulse plugin fail with I/O errors on every period.
    // Through the native PulseAudio host a short buffer works: ask for it.
    let mut builder = builder()?;
    let pulse = audio_host::is_pulseaudio(&host);
    if pulse {
        let rate = builder_rate(&device).unwrap_or(SAMPLE_RATE);
        builder =
            builder.with_buffer_size(cpal::BufferSize::Fixed((rate * period_ms / 1000).max(1)));
    }
    let mut sink = builder
        .with_error_callback(on_error)
        .open_sink_or_fallback()
        .map_err(|e| DeviceError::Open {
            kind: "output",
            name: device_name.clone(),
            reason: e.to_string(),
        })?;
    sink.log_on_drop(false);
    let config = sink.config();
    let period = match config.buffer_size() {
        cpal::BufferSize::Fixed(frames) => {
            // The period in device frames, as 48 kHz samples.
            *frames as usize * SAMPLE_RATE as usize / config.sample_rate().get().max(1) as usize
        }
        cpal::BufferSize::Default => UNKNOWN_PERIOD_SAMPLES,
    };
    let default_margin = if audio_host::is_pulseaudio(&host) {
        PULSE_AHEAD_SAMPLES
    } else {
        AHEAD_FRAMES * FRAME_SAMPLES
    };
    let margin = env_ms("WALKIE_OUTPUT_AHEAD_MS")
        .map_or(default_margin, |ms| (SAMPLE_RATE * ms / 1000) as usize);
    let ahead_samples = (period + margin).min(RING_SAMPLES - FRAME_SAMPLES);
    let (tx, rx) = rtrb::RingBuffer::new(RING_SAMPLES);
    sink.mixer().add(RingSource {
        rx,
        shared: shared.clone(),
        starved: false,
    });
    tracing::info!(
        device = %device_name,
        host = host.id().name(),
        config = ?sink.config(),
        ahead_samples,
        ?latency,
        "output opened"
    );
    Ok(Open {
        _device: sink,
        latency,
        period_ms: pulse.then_some(period_ms),
        gaps: GapDetector::new(SAMPLE_RATE, (period * 1000 / SAMPLE_RATE as usize) as f64),
        opened_at: std::time::Instant::now(),
        tx,
        shared,
        ahead_samples,
        grow_samples: margin.clamp(1, FRAME_SAMPLES),
        underruns_seen: 0,
        pulled: 0,
        pulled_at: std::time::Instant::now(),
    })
}

/// Whether an open stream should be reopened now with a longer period: a
/// live one with a period that can still grow, after `GAPS_TO_REOPEN` gaps.
fn reopen_now(latency: OutputLatency, period_ms: Option<u32>, gaps: u64, base_ms: u32) -> bool {
    latency == OutputLatency::Live
        && gaps >= GAPS_TO_REOPEN
        && period_ms.is_some_and(|p| p < RELAXED_PERIOD_MS.max(base_ms))
}

/// A millisecond setting from the environment (spike knobs).
fn env_ms(var: &str) -> Option<u32> {
    std::env::var(var).ok()?.parse().ok()
}

/// The device's default output rate (rodio opens it at that rate).
fn builder_rate(device: &cpal::Device) -> Option<u32> {
    use cpal::traits::DeviceTrait;
    device.default_output_config().ok().map(|c| c.sample_rate())
}

impl FrameSink for DeviceSink {
    fn frames_wanted(&mut self) -> Result<usize> {
        Ok(self.samples_wanted()?.div_ceil(FRAME_SAMPLES))
    }

    /// What the ring lacks of `ahead_samples`: the player writes exactly
    /// that (pieces of frames), so the ring holds one period plus the margin
    /// and at most one top-up interval more, not a whole extra frame.
    fn samples_wanted(&mut self) -> Result<usize> {
        let Some(open) = self.open.as_mut() else {
            // Closed: the first frame opens the device.
            return Ok(FRAME_SAMPLES);
        };
        let pulled = open.shared.played.load(Ordering::Relaxed);
        if pulled != open.pulled {
            open.pulled = pulled;
            open.pulled_at = std::time::Instant::now();
        }
        let now_ms = open.opened_at.elapsed().as_secs_f64() * 1000.0;
        if let Some(gap_ms) = open.gaps.check(now_ms, pulled) {
            tracing::info!(
                gap_ms = gap_ms.round() as u64,
                "the device played silence: its callback came late"
            );
            let base = env_ms("WALKIE_OUTPUT_PERIOD_MS").unwrap_or(OUTPUT_PERIOD_MS);
            if reopen_now(open.latency, open.period_ms, open.gaps.gaps(), base) {
                tracing::info!(
                    gaps = open.gaps.gaps(),
                    period_ms = open.period_ms,
                    "reopening the live output with a longer period: its callbacks keep coming late"
                );
                // `close` grows the live period; open again at once, so the
                // player goes on with the frame it holds (a failed open is
                // reported like any lost device).
                self.close();
                return Ok(self.open()?.ahead_samples);
            }
        }
        let stalled = open.pulled_at.elapsed() >= STALL;
        if stalled {
            tracing::warn!("output device stopped pulling audio");
        }
        if stalled || open.shared.failed.load(Ordering::Relaxed) {
            let name = self.device.clone().unwrap_or_else(|| "default".into());
            self.close();
            return Err(DeviceError::Lost {
                kind: "output",
                name,
                reason: "the device reported an error".into(),
            });
        }
        // The device ran dry: it pulls in bigger or less regular bursts than
        // its period says (ALSA's pulse plugin does, right after opening).
        // Keep one step more queued from now on, up to the ring's size.
        let underruns = open.shared.underruns.load(Ordering::Relaxed);
        if underruns > open.underruns_seen {
            open.underruns_seen = underruns;
            open.ahead_samples =
                (open.ahead_samples + open.grow_samples).min(RING_SAMPLES - FRAME_SAMPLES);
            tracing::debug!(
                underruns,
                ahead_samples = open.ahead_samples,
                "output underrun; queueing more"
            );
        }
        let queued = RING_SAMPLES - open.tx.slots();
        Ok(open.ahead_samples.saturating_sub(queued))
    }

    fn write_frame(&mut self, frame: &Frame) -> Result<()> {
        self.write_samples(frame)
    }

    fn write_samples(&mut self, samples: &[i16]) -> Result<()> {
        let open = self.open()?;
        for &sample in samples {
            // A full ring means the device stopped pulling: drop, never block.
            if open.tx.push(i16_to_f32(sample)).is_err() {
                break;
            }
        }
        Ok(())
    }

    fn suspend(&mut self) -> Result<()> {
        self.close();
        Ok(())
    }

    fn is_open(&self) -> bool {
        self.open.is_some()
    }

    fn prefer_latency(&mut self, latency: OutputLatency) {
        self.latency = latency;
    }
}

impl Drop for DeviceSink {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_stream_reopens_after_its_second_gap() {
        assert!(!reopen_now(OutputLatency::Live, Some(5), 1, 5));
        assert!(reopen_now(OutputLatency::Live, Some(5), 2, 5));
        assert!(reopen_now(OutputLatency::Live, Some(10), 3, 5));
    }

    #[test]
    fn a_stream_at_the_longest_period_is_left_alone() {
        assert!(!reopen_now(
            OutputLatency::Live,
            Some(RELAXED_PERIOD_MS),
            5,
            5
        ));
        // A longer base period asked for in the environment is the cap.
        assert!(reopen_now(OutputLatency::Live, Some(20), 5, 40));
        assert!(!reopen_now(OutputLatency::Live, Some(40), 5, 40));
    }

    #[test]
    fn stored_talks_and_alsa_streams_never_reopen() {
        assert!(!reopen_now(OutputLatency::Relaxed, Some(5), 9, 5));
        // ALSA's pulse plugin: no period of ours to grow.
        assert!(!reopen_now(OutputLatency::Live, None, 9, 5));
    }
}
