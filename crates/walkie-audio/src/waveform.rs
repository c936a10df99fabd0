//! The voice-message waveform: about a hundred loudness values from 0 to
//! 1024, as Element draws them (`org.matrix.msc1767.audio.waveform`).

/// Number of points Element and other clients expect in a waveform.
pub const DEFAULT_POINTS: usize = 100;
/// Largest value of a waveform point.
pub const MAX_VALUE: u16 = 1024;

/// RMS below which a recording counts as silence (about -40 dBFS): the
/// scale never stretches codec noise or hiss to full height.
pub const SILENCE_RMS: f64 = 0.01;

/// Summarises mono PCM samples (any rate, full scale ±1.0) as `points`
/// loudness values: the RMS of each equal slice, scaled so the loudest slice
/// is [`MAX_VALUE`] (or, for a recording quieter than [`SILENCE_RMS`], on
/// that fixed scale). Silence gives zeros; fewer samples than points gives
/// one point per sample. Non-finite samples count as silence.
pub fn waveform(samples: &[f32], points: usize) -> Vec<u16> {
    if samples.is_empty() || points == 0 {
        return Vec::new();
    }
    let points = points.min(samples.len());
    let rms: Vec<f64> = (0..points)
        .map(|i| {
            let start = i * samples.len() / points;
            let end = (i + 1) * samples.len() / points;
            let slice = &samples[start..end];
            let sum: f64 = slice
                .iter()
                .map(|&s| {
                    if s.is_finite() {
                        f64::from(s) * f64::from(s)
                    } else {
                        0.0
                    }
                })
                .sum();
            (sum / slice.len() as f64).sqrt()
        })
        .collect();
    let peak = rms.iter().copied().fold(SILENCE_RMS, f64::max);
    rms.iter()
        .map(|r| ((r / peak) * f64::from(MAX_VALUE)).round() as u16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudest_slice_is_max_and_quiet_slice_scales() {
        let mut pcm = vec![0.5_f32; 1000];
        pcm[500..].iter_mut().for_each(|s| *s = 0.25);
        let w = waveform(&pcm, 2);
        assert_eq!(w, vec![1024, 512]);
    }

    #[test]
    fn silence_empty_and_short_inputs() {
        assert_eq!(waveform(&[0.0; 480], 100), vec![0; 100]);
        assert!(waveform(&[], 100).is_empty());
        assert_eq!(waveform(&[0.1, -0.2, 0.4], 100).len(), 3);
    }

    #[test]
    fn near_silence_stays_near_the_bottom() {
        let hiss: Vec<f32> = (0..4800)
            .map(|i| if i % 2 == 0 { 1e-4 } else { -1e-4 })
            .collect();
        assert!(waveform(&hiss, 10).iter().all(|&v| v <= 11));
    }

    #[test]
    fn non_finite_samples_do_not_poison_the_result() {
        // The NaN counts as silence: the first slice has half the energy.
        let pcm = [f32::NAN, 0.5, 0.5, 0.5];
        assert_eq!(waveform(&pcm, 2), vec![724, 1024]);
        assert_eq!(waveform(&[f32::INFINITY, 0.0], 2), vec![0, 0]);
    }

    #[test]
    fn every_point_within_range_for_noise() {
        let pcm: Vec<f32> = (0..48_000)
            .map(|i| ((i * 7919 % 2000) as f32 / 1000.0) - 1.0)
            .collect();
        let w = waveform(&pcm, DEFAULT_POINTS);
        assert_eq!(w.len(), DEFAULT_POINTS);
        assert!(w.iter().all(|&v| v <= MAX_VALUE));
        assert_eq!(w.iter().copied().max(), Some(MAX_VALUE));
    }
}
