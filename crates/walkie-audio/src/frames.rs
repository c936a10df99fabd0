//! The two seams between Walkie's audio and the outside world: a
//! [`FrameSource`] gives 20 ms frames of 48 kHz mono PCM (a microphone, a WAV
//! file) and a [`FrameSink`] takes them (speakers, a WAV file). Also owns
//! [`Framer`], which cuts a stream of samples into such frames, and the WAV
//! implementations of both traits.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::{
    codec::{FRAME_MS, FRAME_SAMPLES},
    wav::{self, WavError},
};

/// One 20 ms frame of 48 kHz mono 16-bit PCM.
pub type Frame = [i16; FRAME_SAMPLES];

/// Failures of sources and sinks.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// No device of that kind exists (or none by that name).
    #[error("no {kind} device{}", name.as_ref().map(|n| format!(" named {n:?}")).unwrap_or_default())]
    NotFound {
        kind: &'static str,
        name: Option<String>,
    },
    /// The device exists but cannot be opened with any usable format.
    #[error("cannot open {kind} device {name:?}: {reason}")]
    Open {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// The device went away or failed while in use.
    #[error("{kind} device {name:?} failed while in use: {reason}")]
    Lost {
        kind: &'static str,
        name: String,
        reason: String,
    },
    /// The device opened but delivered no samples in time.
    #[error("{kind} device {name:?} delivered no audio within {waited_ms} ms")]
    Silent {
        kind: &'static str,
        name: String,
        waited_ms: u64,
    },
    /// A WAV file could not be read or written.
    #[error(transparent)]
    Wav(#[from] WavError),
    /// The sample-rate converter could not be built for this device format.
    #[error("cannot convert {rate} Hz x {channels} channels to 48 kHz mono: {reason}")]
    Resampler {
        rate: u32,
        channels: u16,
        reason: String,
    },
    /// A sink that takes whole frames only was given part of one.
    #[error("this sink takes whole frames of {FRAME_SAMPLES} samples, not {0}")]
    PartialFrame(usize),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, DeviceError>;

/// Where a talk's audio comes from.
pub trait FrameSource: Send {
    /// Blocks until the next frame is available. `Ok(None)`: the source has
    /// ended (end of file); a device never ends on its own.
    fn next_frame(&mut self) -> Result<Option<Frame>>;

    /// Blocks until the source delivers audio and returns how long after it
    /// was opened that happened. A file is live at once.
    fn wait_live(&mut self, _timeout: Duration) -> Result<Duration> {
        Ok(Duration::ZERO)
    }
}

/// How much buffering the output may use, chosen by what plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputLatency {
    /// A live talk or a cue: as little as the device keeps without gaps.
    #[default]
    Live,
    /// A stored talk played on request: nobody waits on its latency, and
    /// more buffering keeps it whole on a busy machine.
    Relaxed,
}

/// Where decoded audio goes. The sink sets the pace: the player asks how
/// many frames it wants and writes that many.
pub trait FrameSink: Send {
    /// How many frames the sink can take now without blocking. A device
    /// answers from the free space of its buffer; a file from the wall clock.
    fn frames_wanted(&mut self) -> Result<usize>;
    /// Takes one frame.
    fn write_frame(&mut self, frame: &Frame) -> Result<()>;
    /// How many samples the sink can take now. A device answers in samples,
    /// so the player tops it up in pieces shorter than a frame and keeps
    /// less audio queued ahead of the speaker; the default is whole frames.
    fn samples_wanted(&mut self) -> Result<usize> {
        Ok(self.frames_wanted()?.saturating_mul(FRAME_SAMPLES))
    }
    /// Takes the next `samples` of the stream. The default takes whole
    /// frames only (what the default [`FrameSink::samples_wanted`] asks for).
    fn write_samples(&mut self, samples: &[i16]) -> Result<()> {
        let frame: &Frame = samples
            .try_into()
            .map_err(|_| DeviceError::PartialFrame(samples.len()))?;
        self.write_frame(frame)
    }
    /// Nothing will play for a while: release the device (a file ignores it).
    /// The next `write_frame` opens it again.
    fn suspend(&mut self) -> Result<()> {
        Ok(())
    }
    /// Whether a device stream is open now (always false for a file).
    fn is_open(&self) -> bool {
        false
    }
    /// The buffering wanted from the next time the device opens (an open
    /// stream keeps its own until it closes; a file ignores it).
    fn prefer_latency(&mut self, _latency: OutputLatency) {}
}

/// Cuts a stream of 48 kHz mono samples into 20 ms frames.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<i16>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds samples (f32 in -1..1, clamped) and returns the complete frames.
    pub fn push_f32(&mut self, samples: &[f32]) -> Vec<Frame> {
        self.pending.extend(samples.iter().map(|&s| f32_to_i16(s)));
        self.take_frames()
    }

    /// Adds 16-bit samples and returns the complete frames.
    pub fn push_i16(&mut self, samples: &[i16]) -> Vec<Frame> {
        self.pending.extend_from_slice(samples);
        self.take_frames()
    }

    /// Samples waiting for the next frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn take_frames(&mut self) -> Vec<Frame> {
        let whole = self.pending.len() / FRAME_SAMPLES * FRAME_SAMPLES;
        let frames = self.pending[..whole]
            .chunks_exact(FRAME_SAMPLES)
            .map(|chunk| {
                let mut frame = [0i16; FRAME_SAMPLES];
                frame.copy_from_slice(chunk);
                frame
            })
            .collect();
        self.pending.drain(..whole);
        frames
    }
}

/// Converts a float sample to 16 bits, clamping out-of-range values.
pub fn f32_to_i16(sample: f32) -> i16 {
    // `as` saturates, NaN becomes 0.
    (sample * 32767.0).round() as i16
}

/// Converts a 16-bit sample to a float in -1..1.
pub fn i16_to_f32(sample: i16) -> f32 {
    f32::from(sample) / 32768.0
}

/// A WAV file (48 kHz mono 16-bit) as a talk's voice. With `realtime`, each
/// frame is handed out no earlier than its place in the file (start + n x
/// 20 ms), as a microphone would; otherwise as fast as asked.
#[derive(Debug)]
pub struct WavSource {
    samples: Vec<i16>,
    next: usize,
    realtime: bool,
    started: Option<Instant>,
}

impl WavSource {
    /// Reads the whole file.
    pub fn open(path: impl AsRef<Path>, realtime: bool) -> Result<Self> {
        Ok(Self {
            samples: wav::read_wav_mono_48k(path)?,
            next: 0,
            realtime,
            started: None,
        })
    }

    /// 48 kHz mono samples already in memory (an echo of a received talk).
    pub fn from_samples(samples: Vec<i16>, realtime: bool) -> Self {
        Self {
            samples,
            next: 0,
            realtime,
            started: None,
        }
    }

    /// Length of the file in frames (the last one zero-padded).
    pub fn frame_count(&self) -> usize {
        self.samples.len().div_ceil(FRAME_SAMPLES)
    }
}

impl FrameSource for WavSource {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        if self.next >= self.samples.len() {
            return Ok(None);
        }
        let index = self.next / FRAME_SAMPLES;
        if self.realtime {
            let started = *self.started.get_or_insert_with(Instant::now);
            // Frame n is complete at start + (n + 1) x 20 ms.
            let due = started + Duration::from_millis(FRAME_MS * (index as u64 + 1));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let end = (self.next + FRAME_SAMPLES).min(self.samples.len());
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..end - self.next].copy_from_slice(&self.samples[self.next..end]);
        self.next = end;
        Ok(Some(frame))
    }
}

/// Collects frames and writes them as a WAV file on [`WavSink::finish`].
/// Paced by the wall clock (one frame per 20 ms since the first call), like
/// a device.
#[derive(Debug)]
pub struct WavSink {
    path: PathBuf,
    samples: Vec<i16>,
    started: Option<Instant>,
    written: u64,
}

impl WavSink {
    /// A sink that will write `path`.
    pub fn create(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            samples: Vec::new(),
            started: None,
            written: 0,
        }
    }

    /// Samples collected so far.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Writes the file.
    pub fn finish(&self) -> Result<()> {
        Ok(wav::write_wav_mono_48k(&self.path, &self.samples)?)
    }
}

impl FrameSink for WavSink {
    fn frames_wanted(&mut self) -> Result<usize> {
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = started.elapsed().as_millis() as u64 / FRAME_MS + 1;
        Ok(due.saturating_sub(self.written) as usize)
    }

    fn write_frame(&mut self, frame: &Frame) -> Result<()> {
        self.started.get_or_insert_with(Instant::now);
        self.samples.extend_from_slice(frame);
        self.written += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_cuts_whole_frames_and_keeps_the_rest() {
        let mut framer = Framer::new();
        assert!(framer.push_i16(&[1; 500]).is_empty());
        let frames = framer.push_i16(&[2; 1500]);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0][499], 1);
        assert_eq!(frames[0][500], 2);
        assert_eq!(framer.pending(), 2000 - 2 * FRAME_SAMPLES);
    }

    #[test]
    fn float_conversion_clamps() {
        assert_eq!(f32_to_i16(2.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert!((i16_to_f32(16384) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn wav_source_pads_the_last_frame_and_ends() {
        let dir = std::env::temp_dir().join(format!("walkie-frames-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.wav");
        let samples: Vec<i16> = (0..2000).map(|i| (i % 100) as i16).collect();
        wav::write_wav_mono_48k(&path, &samples).unwrap();
        let mut source = WavSource::open(&path, false).unwrap();
        assert_eq!(source.frame_count(), 3);
        let mut got = Vec::new();
        while let Some(frame) = source.next_frame().unwrap() {
            got.extend_from_slice(&frame);
        }
        assert_eq!(got.len(), 3 * FRAME_SAMPLES);
        assert_eq!(&got[..2000], &samples[..]);
        assert!(got[2000..].iter().all(|&s| s == 0));
    }

    #[test]
    fn wav_sink_round_trips() {
        let dir = std::env::temp_dir().join(format!("walkie-frames-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.wav");
        let mut sink = WavSink::create(&path);
        assert_eq!(sink.frames_wanted().unwrap(), 1);
        sink.write_frame(&[7; FRAME_SAMPLES]).unwrap();
        sink.finish().unwrap();
        assert_eq!(
            wav::read_wav_mono_48k(&path).unwrap(),
            vec![7; FRAME_SAMPLES]
        );
    }
}
