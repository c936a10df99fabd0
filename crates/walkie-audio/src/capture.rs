//! Microphone capture through cpal, opened when a talk starts and closed
//! (dropped) when it ends: no input stream exists between talks. Owns the
//! device lookup, the stream in whatever format the device offers, the
//! conversion to 48 kHz mono (`resample`), framing, and the measurement of
//! how long the device took to deliver its first samples ("capture live").
//!
//! The cpal callback only copies samples into a bounded channel; all
//! conversion happens on the caller's thread in [`FrameSource::next_frame`].

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    time::{Duration, Instant},
};

use cpal::{
    traits::{DeviceTrait, HostTrait, StreamTrait},
    FromSample, SampleFormat, SizedSample,
};

use crate::{
    audio_host,
    frames::{DeviceError, Frame, FrameSource, Framer, Result},
    resample::ToMono48k,
};

/// Callbacks the channel holds before new ones are dropped (~2 s at 10 ms
/// callbacks): a stalled consumer loses audio, it never blocks the device.
const CHANNEL_CALLBACKS: usize = 200;
/// Capture period asked of the device: 10 ms (the default ALSA period made
/// the first samples arrive ~31 ms after opening).
const CAPTURE_PERIOD_MS: u32 = 10;
/// How long `next_frame` waits for samples before it reports the device as
/// silent (a working device delivers every 10–40 ms).
pub const STALL_TIMEOUT: Duration = Duration::from_millis(2_000);

enum Delivery {
    Samples { data: Vec<f32>, at: Instant },
    Failed(String),
}

/// An open capture stream. Dropping it closes the device.
pub struct Capture {
    _stream: cpal::Stream,
    rx: Receiver<Delivery>,
    name: String,
    converter: ToMono48k,
    framer: Framer,
    ready: std::collections::VecDeque<Frame>,
    opened_at: Instant,
    first_samples_at: Option<Instant>,
    failed: Option<String>,
    converted: Vec<f32>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("name", &self.name)
            .field("converter", &self.converter)
            .finish_non_exhaustive()
    }
}

/// Names of the input devices, for the device picker.
pub fn input_device_names() -> Result<Vec<String>> {
    let host = audio_host::host();
    let devices = host.input_devices().map_err(|e| DeviceError::Open {
        kind: "input",
        name: "(any)".into(),
        reason: e.to_string(),
    })?;
    Ok(devices.map(|d| audio_host::device_name(&d)).collect())
}

impl Capture {
    /// Opens and starts the named input device (or the default one). Returns
    /// as soon as the stream is started; samples follow when the device is
    /// live (see [`Capture::wait_live`]).
    pub fn open(device: Option<&str>) -> Result<Self> {
        let opened_at = Instant::now();
        let (host, device) =
            audio_host::find_device(device, true).ok_or_else(|| DeviceError::NotFound {
                kind: "input",
                name: device.map(str::to_owned),
            })?;
        let name = audio_host::device_name(&device);
        let open_err = |reason: String| DeviceError::Open {
            kind: "input",
            name: name.clone(),
            reason,
        };
        let supported = device
            .default_input_config()
            .map_err(|e| open_err(e.to_string()))?;
        let format = supported.sample_format();
        let mut config: cpal::StreamConfig = supported.into();
        let converter = ToMono48k::new(config.sample_rate, config.channels)?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CALLBACKS);
        let build_with = |config: &cpal::StreamConfig| match format {
            SampleFormat::F32 => build::<f32>(&device, config, tx.clone()),
            SampleFormat::I16 => build::<i16>(&device, config, tx.clone()),
            SampleFormat::I32 => build::<i32>(&device, config, tx.clone()),
            SampleFormat::U16 => build::<u16>(&device, config, tx.clone()),
            SampleFormat::U8 => build::<u8>(&device, config, tx.clone()),
            SampleFormat::I8 => build::<i8>(&device, config, tx.clone()),
            SampleFormat::F64 => build::<f64>(&device, config, tx.clone()),
            other => Err(cpal::Error::with_message(
                cpal::ErrorKind::UnsupportedConfig,
                format!("sample format {other} is not supported"),
            )),
        };
        // A short device period makes the first samples (and every later
        // block) arrive sooner; a device that refuses it keeps its default.
        let default_buffer = config.buffer_size;
        let period_ms = std::env::var("WALKIE_CAPTURE_PERIOD_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CAPTURE_PERIOD_MS);
        config.buffer_size = cpal::BufferSize::Fixed(config.sample_rate * period_ms / 1000);
        let stream = match build_with(&config) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "short capture period refused; using the default");
                config.buffer_size = default_buffer;
                build_with(&config).map_err(|e| open_err(e.to_string()))?
            }
        };
        stream.play().map_err(|e| open_err(e.to_string()))?;
        tracing::info!(
            device = %name,
            host = host.id().name(),
            buffer = ?config.buffer_size,
            rate = config.sample_rate,
            channels = config.channels,
            %format,
            "capture opened"
        );
        Ok(Self {
            _stream: stream,
            rx,
            name,
            converter,
            framer: Framer::new(),
            ready: Default::default(),
            opened_at,
            first_samples_at: None,
            failed: None,
            converted: Vec::new(),
        })
    }

    /// The device's name.
    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// The device's native sample rate (converted to 48 kHz).
    pub fn device_rate(&self) -> u32 {
        self.converter.input_rate()
    }

    /// Open → first samples, once they came.
    pub fn live_after(&self) -> Option<Duration> {
        self.first_samples_at
            .map(|at| at.saturating_duration_since(self.opened_at))
    }

    fn silent(&self, waited: Duration) -> DeviceError {
        DeviceError::Silent {
            kind: "input",
            name: self.name.clone(),
            waited_ms: waited.as_millis() as u64,
        }
    }

    /// Waits up to `timeout` for one delivery and converts it. `Ok(false)`
    /// on timeout.
    fn receive(&mut self, timeout: Duration) -> Result<bool> {
        if let Some(reason) = &self.failed {
            return Err(self.lost(reason.clone()));
        }
        match self.rx.recv_timeout(timeout) {
            Ok(Delivery::Samples { data, at }) => {
                self.first_samples_at.get_or_insert(at);
                self.converted.clear();
                self.converter.process(&data, &mut self.converted)?;
                let frames = self.framer.push_f32(&self.converted);
                self.ready.extend(frames);
                Ok(true)
            }
            Ok(Delivery::Failed(reason)) => {
                tracing::warn!(device = %self.name, %reason, "capture device failed");
                self.failed = Some(reason.clone());
                Err(self.lost(reason))
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => {
                let reason = "the stream stopped".to_string();
                self.failed = Some(reason.clone());
                Err(self.lost(reason))
            }
        }
    }

    fn lost(&self, reason: String) -> DeviceError {
        DeviceError::Lost {
            kind: "input",
            name: self.name.clone(),
            reason,
        }
    }
}

impl FrameSource for Capture {
    /// Blocks until the device has delivered its first samples and returns
    /// the time from [`Capture::open`] to them (the "capture live" delay).
    fn wait_live(&mut self, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        while self.first_samples_at.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.silent(timeout));
            }
            self.receive(left)?;
        }
        Ok(self.live_after().unwrap_or_default())
    }

    fn next_frame(&mut self) -> Result<Option<Frame>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            if !self.receive(STALL_TIMEOUT)? {
                tracing::warn!(device = %self.name, "capture delivered nothing for 2 s");
                return Err(self.silent(STALL_TIMEOUT));
            }
        }
    }
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    tx: SyncSender<Delivery>,
) -> std::result::Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let err_tx = tx.clone();
    let errors = std::sync::atomic::AtomicU64::new(0);
    let mut reported = false;
    let mut dropped = 0u64;
    device.build_input_stream(
        *config,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            let delivery = Delivery::Samples {
                data: data.iter().map(|&s| s.to_sample::<f32>()).collect(),
                at: Instant::now(),
            };
            if let Err(TrySendError::Full(_)) = tx.try_send(delivery) {
                dropped += 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "capture consumer is behind; dropping input");
                }
            }
        },
        move |err: cpal::Error| {
            // Only errors that end the stream are reported, once.
            if !reported && crate::output::is_fatal(&err, &errors) {
                reported = true;
                let _ = err_tx.try_send(Delivery::Failed(err.to_string()));
            }
        },
        None,
    )
}
