//! Device audio to Walkie's format: interleaved samples at any rate and
//! channel count in, 48 kHz mono out. Channels are averaged; the rate is
//! converted by rubato's band-limited FFT resampler (never by dropping or
//! repeating samples). 48 kHz input passes through untouched.

use rubato::{FftFixedIn, Resampler};

use crate::{
    codec::SAMPLE_RATE,
    frames::{DeviceError, Result},
};

/// Input chunk the FFT resampler works on: 10 ms, so conversion adds little
/// delay (its `output_delay` is reported by [`ToMono48k::delay_samples`]).
const CHUNK_MS: usize = 10;

/// Converts interleaved device samples to 48 kHz mono.
pub struct ToMono48k {
    channels: usize,
    rate: u32,
    resampler: Option<FftFixedIn<f32>>,
    /// Mono input waiting for a whole resampler chunk.
    pending: Vec<f32>,
}

impl std::fmt::Debug for ToMono48k {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToMono48k")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl ToMono48k {
    /// A converter for `rate` Hz with `channels` interleaved channels.
    pub fn new(rate: u32, channels: u16) -> Result<Self> {
        let fail = |reason: String| DeviceError::Resampler {
            rate,
            channels,
            reason,
        };
        if channels == 0 {
            return Err(fail("no channels".into()));
        }
        if !(4_000..=768_000).contains(&rate) {
            return Err(fail("sample rate outside 4 kHz..768 kHz".into()));
        }
        let resampler = if rate == SAMPLE_RATE {
            None
        } else {
            let chunk = (rate as usize * CHUNK_MS / 1000).max(1);
            Some(
                FftFixedIn::<f32>::new(rate as usize, SAMPLE_RATE as usize, chunk, 1, 1)
                    .map_err(|e| fail(e.to_string()))?,
            )
        };
        Ok(Self {
            channels: usize::from(channels),
            rate,
            resampler,
            pending: Vec::new(),
        })
    }

    /// The device rate this converter was built for.
    pub fn input_rate(&self) -> u32 {
        self.rate
    }

    /// Delay the conversion adds, in 48 kHz samples.
    pub fn delay_samples(&self) -> usize {
        self.resampler.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Converts a block of interleaved samples, appending 48 kHz mono output
    /// to `out`. A trailing partial frame (fewer samples than channels) is
    /// ignored; devices deliver whole frames.
    pub fn process(&mut self, interleaved: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let channels = self.channels;
        let mono = interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32);
        let Some(resampler) = self.resampler.as_mut() else {
            out.extend(mono);
            return Ok(());
        };
        self.pending.extend(mono);
        loop {
            let need = resampler.input_frames_next();
            if self.pending.len() < need {
                return Ok(());
            }
            let input = [&self.pending[..need]];
            let output = resampler
                .process(&input, None)
                .map_err(|e| DeviceError::Resampler {
                    rate: self.rate,
                    channels: channels as u16,
                    reason: e.to_string(),
                })?;
            if let Some(channel) = output.first() {
                out.extend_from_slice(channel);
            }
            self.pending.drain(..need);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, channels: u16, freq: f32, secs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .flat_map(|i| {
                let v = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5;
                std::iter::repeat_n(v, usize::from(channels))
            })
            .collect()
    }

    /// Frequency estimate from zero crossings.
    fn frequency(samples: &[f32], rate: u32) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        crossings as f32 * rate as f32 / samples.len() as f32
    }

    #[test]
    fn passes_48k_mono_through() {
        let mut c = ToMono48k::new(48_000, 1).unwrap();
        let input = sine(48_000, 1, 440.0, 0.1);
        let mut out = Vec::new();
        c.process(&input, &mut out).unwrap();
        assert_eq!(out, input);
        assert_eq!(c.delay_samples(), 0);
    }

    #[test]
    fn converts_44k1_stereo_keeping_pitch_and_length() {
        let mut c = ToMono48k::new(44_100, 2).unwrap();
        let input = sine(44_100, 2, 1000.0, 1.0);
        let mut out = Vec::new();
        // Device callbacks come in odd sizes.
        for block in input.chunks(2 * 441 + 6) {
            c.process(block, &mut out).unwrap();
        }
        let expected = 48_000;
        assert!(
            out.len().abs_diff(expected) <= 48_000 * 20 / 1000,
            "got {} samples for 1 s",
            out.len()
        );
        let steady = &out[c.delay_samples() + 4800..];
        let f = frequency(steady, 48_000);
        assert!((f - 1000.0).abs() < 5.0, "pitch {f} Hz");
        let peak = steady.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!((peak - 0.5).abs() < 0.02, "amplitude {peak}");
    }

    #[test]
    fn downmixes_channels_by_average() {
        let mut c = ToMono48k::new(48_000, 3).unwrap();
        let mut out = Vec::new();
        c.process(&[0.3, 0.6, 0.0, 0.9, 0.0, 0.0, 0.5], &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!((out[0] - 0.3).abs() < 1e-6 && (out[1] - 0.3).abs() < 1e-6);
    }

    #[test]
    fn refuses_absurd_formats() {
        assert!(ToMono48k::new(48_000, 0).is_err());
        assert!(ToMono48k::new(10, 1).is_err());
        assert!(ToMono48k::new(8_000, 1).is_ok());
        assert!(ToMono48k::new(192_000, 8).is_ok());
    }
}
