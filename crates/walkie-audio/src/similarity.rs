//! Signal similarity for tests and measurements: the normalised
//! cross-correlation of two signals after finding the lag that aligns them
//! (e.g. decoded Opus audio against its source, which lags by the codec's
//! 312-sample lookahead plus any jitter-buffer delay).
//!
//! # Method
//!
//! For a lag `L` the score is the cosine similarity of the overlapping parts,
//! `Σ a[i]·b[i+L] / sqrt(Σ a[i]² · Σ b[i+L]²)`, so `L > 0` means `b` lags
//! behind `a`. No mean is removed (audio is zero-mean); only lags whose
//! overlap covers at least half of the shorter signal count, so a lucky
//! match of two short tails cannot win. The best score is the maximum, so a
//! polarity-inverted copy scores −1 and is not found.
//!
//! Searching every lag at full rate costs `n · (2·max_lag + 1)` products:
//! 11.5 G for 5 s at 48 kHz and ±0.5 s. Small searches (≤ 20 M products) do
//! exactly that. Larger ones go coarse to fine, FFT-free:
//! 1. envelopes at 1 kHz (mean of |x| over 48-sample blocks, mean removed)
//!    are correlated over the whole lag range; the three best separated
//!    peaks are kept as candidates;
//! 2. around each candidate, the signals decimated to 8 kHz (mean of
//!    6-sample blocks) are searched ±12 samples (±1.5 ms);
//! 3. around the best 8 kHz lag, the full-rate signals are searched ±8
//!    samples and the best full-rate score is returned.
//!
//! For 5 s at 48 kHz and ±0.5 s that is about 15 M products. The coarse
//! stages can miss the true lag only for signals without a usable envelope
//! (steady tones); such a signal is periodic, so a neighbouring period
//! aligns it as well.

/// Products above which the full-rate brute-force search is replaced by the
/// coarse-to-fine search.
const BRUTE_FORCE_LIMIT: u128 = 20_000_000;
/// 48 kHz to 1 kHz for envelopes.
const ENVELOPE_FACTOR: usize = 48;
/// 48 kHz to 8 kHz for the middle stage.
const MID_FACTOR: usize = 6;
/// Envelope peaks refined further.
const CANDIDATES: usize = 3;
/// Half-width of the 8 kHz search around an envelope candidate, in 8 kHz
/// samples (one envelope block is 8 of them).
const MID_WINDOW: isize = 12;
/// Half-width of the full-rate search around the 8 kHz lag, in samples.
const FINE_WINDOW: isize = 8;

/// Best normalised cross-correlation of `a` and `b` over lags within
/// `±max_lag_samples`, and the lag that gives it: `(correlation, lag)` with
/// `b[i + lag] ≈ a[i]`. Returns `(0.0, 0)` when no lag leaves enough
/// overlap (e.g. an empty input) and a score of 0 for silent overlaps. See
/// the module documentation for the method.
pub fn normalised_cross_correlation<T: Copy + Into<f32>>(
    a: &[T],
    b: &[T],
    max_lag_samples: usize,
) -> (f64, isize) {
    let a: Vec<f32> = a.iter().map(|&x| x.into()).collect();
    let b: Vec<f32> = b.iter().map(|&x| x.into()).collect();
    let max_lag = isize::try_from(max_lag_samples).unwrap_or(isize::MAX);
    let full = Scorer::new(a, b);
    let Some((min_lag, max_lag)) = full.lag_range(max_lag) else {
        return (0.0, 0);
    };
    let lags = (max_lag - min_lag).unsigned_abs() as u128 + 1;
    if lags * full.a.len().min(full.b.len()) as u128 <= BRUTE_FORCE_LIMIT {
        return full.best_in(min_lag, max_lag).unwrap_or((0.0, 0));
    }

    // Stage 1: envelopes at 1 kHz over the whole lag range.
    let env = Scorer::new(
        centred(envelope(&full.a, ENVELOPE_FACTOR)),
        centred(envelope(&full.b, ENVELOPE_FACTOR)),
    );
    let env_min = -ceil_div(-min_lag, ENVELOPE_FACTOR as isize);
    let env_max = ceil_div(max_lag, ENVELOPE_FACTOR as isize);
    let mut scored: Vec<(f64, isize)> = (env_min..=env_max)
        .filter_map(|lag| env.score(lag).map(|s| (s, lag)))
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.abs().cmp(&y.1.abs())));
    let mut candidates: Vec<isize> = Vec::with_capacity(CANDIDATES);
    for &(_, lag) in &scored {
        if candidates.len() == CANDIDATES {
            break;
        }
        if candidates.iter().all(|&c| (c - lag).abs() > 2) {
            candidates.push(lag);
        }
    }

    // Stage 2: 8 kHz around each candidate.
    let mid = Scorer::new(decimate(&full.a, MID_FACTOR), decimate(&full.b, MID_FACTOR));
    let ratio = (ENVELOPE_FACTOR / MID_FACTOR) as isize;
    let mid_min = -ceil_div(-min_lag, MID_FACTOR as isize);
    let mid_max = ceil_div(max_lag, MID_FACTOR as isize);
    let mut best_mid: Option<(f64, isize)> = None;
    for c in candidates {
        let centre = c * ratio;
        let lo = (centre - MID_WINDOW).max(mid_min);
        let hi = (centre + MID_WINDOW).min(mid_max);
        if let Some(found) = mid.best_in(lo, hi) {
            if best_mid
                .is_none_or(|b| found.0 > b.0 || (found.0 == b.0 && found.1.abs() < b.1.abs()))
            {
                best_mid = Some(found);
            }
        }
    }
    let centre = best_mid.map_or(0, |(_, lag)| lag * MID_FACTOR as isize);

    // Stage 3: full rate around the 8 kHz lag.
    let lo = (centre - FINE_WINDOW).max(min_lag);
    let hi = (centre + FINE_WINDOW).min(max_lag);
    full.best_in(lo, hi).unwrap_or((0.0, 0))
}

/// Two signals with prefix sums of their squares, for O(1) energies.
struct Scorer {
    a: Vec<f32>,
    b: Vec<f32>,
    energy_a: Vec<f64>,
    energy_b: Vec<f64>,
    min_overlap: usize,
}

impl Scorer {
    fn new(a: Vec<f32>, b: Vec<f32>) -> Self {
        let energy_a = prefix_squares(&a);
        let energy_b = prefix_squares(&b);
        let min_overlap = a.len().min(b.len()).div_ceil(2).max(1);
        Self {
            a,
            b,
            energy_a,
            energy_b,
            min_overlap,
        }
    }

    /// Overlap of `a[i]` and `b[i + lag]` as a range of `i`.
    fn overlap(&self, lag: isize) -> Option<(usize, usize)> {
        let start = if lag < 0 { lag.unsigned_abs() } else { 0 };
        let end = if lag >= 0 {
            self.a
                .len()
                .min(self.b.len().checked_sub(lag.unsigned_abs())?)
        } else {
            self.a
                .len()
                .min(self.b.len().checked_add(lag.unsigned_abs())?)
        };
        (end >= start && end - start >= self.min_overlap).then_some((start, end))
    }

    /// The lags within `±max_lag` that leave enough overlap, as
    /// `(lowest, highest)`: each way on its own, so a short signal is found
    /// anywhere in a long one. `None` when even lag 0 does not.
    fn lag_range(&self, max_lag: isize) -> Option<(isize, isize)> {
        self.overlap(0)?;
        let reach = |len: usize| {
            isize::try_from(len.saturating_sub(self.min_overlap))
                .unwrap_or(isize::MAX)
                .min(max_lag)
        };
        // b[i + lag] for i in 0..a.len(): a positive lag runs into b's end,
        // a negative one into a's.
        let (lo, hi) = (-reach(self.a.len()), reach(self.b.len()));
        debug_assert!(self.overlap(lo).is_some() && self.overlap(hi).is_some());
        Some((lo, hi))
    }

    fn score(&self, lag: isize) -> Option<f64> {
        let (start, end) = self.overlap(lag)?;
        let shift = |i: usize| i.wrapping_add_signed(lag);
        let ea = self.energy_a[end] - self.energy_a[start];
        let eb = self.energy_b[shift(end)] - self.energy_b[shift(start)];
        let denominator = (ea * eb).sqrt();
        if denominator <= f64::EPSILON {
            return Some(0.0);
        }
        Some(dot(&self.a[start..end], &self.b[shift(start)..shift(end)]) / denominator)
    }

    /// The best `(score, lag)` for lags in `lo..=hi`; of equal scores the
    /// lag nearest zero wins.
    fn best_in(&self, lo: isize, hi: isize) -> Option<(f64, isize)> {
        let mut best: Option<(f64, isize)> = None;
        for lag in lo..=hi {
            if let Some(s) = self.score(lag) {
                if best.is_none_or(|b| s > b.0 || (s == b.0 && lag.abs() < b.1.abs())) {
                    best = Some((s, lag));
                }
            }
        }
        best
    }
}

fn prefix_squares(x: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len() + 1);
    let mut sum = 0.0f64;
    out.push(sum);
    for &v in x {
        sum += f64::from(v) * f64::from(v);
        out.push(sum);
    }
    out
}

/// Dot product in f64 with four accumulators (fast enough unoptimised).
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0.0f64; 4];
    let chunks_a = a.chunks_exact(4);
    let chunks_b = b.chunks_exact(4);
    let tail: f64 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for (x, y) in chunks_a.zip(chunks_b) {
        for k in 0..4 {
            acc[k] += f64::from(x[k]) * f64::from(y[k]);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Mean of `|x|` over blocks of `factor` samples (last partial block kept).
fn envelope(x: &[f32], factor: usize) -> Vec<f32> {
    x.chunks(factor)
        .map(|c| c.iter().map(|v| v.abs()).sum::<f32>() / c.len() as f32)
        .collect()
}

/// Mean over blocks of `factor` samples: a crude low-pass and decimation.
fn decimate(x: &[f32], factor: usize) -> Vec<f32> {
    x.chunks(factor)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect()
}

fn centred(mut x: Vec<f32>) -> Vec<f32> {
    if x.is_empty() {
        return x;
    }
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / x.len() as f64;
    for v in &mut x {
        *v -= mean as f32;
    }
    x
}

fn ceil_div(x: isize, d: isize) -> isize {
    (x + d - 1) / d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signal::{speech_like, Rng};

    fn delayed(x: &[i16], lag: isize, len: usize) -> Vec<i16> {
        (0..len as isize)
            .map(|j| {
                let i = j - lag;
                if i >= 0 && (i as usize) < x.len() {
                    x[i as usize]
                } else {
                    0
                }
            })
            .collect()
    }

    #[test]
    fn identical_signals_correlate_fully_at_lag_zero() {
        let a = speech_like(1.0);
        let (corr, lag) = normalised_cross_correlation(&a, &a, 100);
        assert_eq!(lag, 0);
        assert!((corr - 1.0).abs() < 1e-9, "{corr}");
    }

    #[test]
    fn finds_a_short_signal_late_in_a_long_one() {
        // A 1 s talk that starts 3.5 s into a 5 s recording: further in
        // than its own length, which a search symmetric in the lag missed.
        let a = speech_like(1.0);
        let b = delayed(&a, 168_000, 240_000);
        let (corr, found) = normalised_cross_correlation(&a, &b, b.len() - 1);
        assert_eq!(found, 168_000);
        assert!(corr > 0.99, "{corr}");
        let (corr, found) = normalised_cross_correlation(&b, &a, b.len() - 1);
        assert_eq!(found, -168_000);
        assert!(corr > 0.99, "{corr}");
    }

    #[test]
    fn finds_codec_sized_and_large_lags_both_ways() {
        let a = speech_like(5.0);
        for lag in [312isize, 7_001, 23_999, -4_321, -312] {
            let b = delayed(&a, lag, a.len());
            let (corr, found) = normalised_cross_correlation(&a, &b, 24_000);
            assert_eq!(found, lag, "corr {corr}");
            assert!(corr > 0.99, "lag {lag}: corr {corr}");
        }
    }

    #[test]
    fn coarse_to_fine_agrees_with_brute_force_on_noisy_copy() {
        let a = speech_like(0.5);
        let mut rng = Rng::new(7);
        let b: Vec<i16> = delayed(&a, 333, a.len())
            .iter()
            .map(|&s| s.saturating_add(((rng.next_u64() >> 54) as i16) - 512))
            .collect();
        // Brute force (small search) versus the staged search (large one).
        let (c_small, l_small) = normalised_cross_correlation(&a, &b, 400);
        let (c_large, l_large) = normalised_cross_correlation(&a, &b, 12_000);
        assert_eq!(l_small, 333);
        assert_eq!(l_large, 333);
        assert!((c_small - c_large).abs() < 1e-12);
        assert!(c_small > 0.9, "{c_small}");
    }

    #[test]
    fn silence_and_empty_inputs_score_zero() {
        let zeros = vec![0i16; 48_000];
        assert_eq!(
            normalised_cross_correlation(&zeros, &zeros, 24_000),
            (0.0, 0)
        );
        let empty: [i16; 0] = [];
        assert_eq!(normalised_cross_correlation(&empty, &zeros, 10), (0.0, 0));
    }

    #[test]
    fn unrelated_signals_score_low() {
        let mut rng = Rng::new(99);
        let a: Vec<f32> = (0..48_000)
            .map(|_| (rng.next_u64() >> 40) as f32 - 8e6)
            .collect();
        let b: Vec<f32> = (0..48_000)
            .map(|_| (rng.next_u64() >> 40) as f32 - 8e6)
            .collect();
        let (corr, _) = normalised_cross_correlation(&a, &b, 2_000);
        assert!(corr < 0.1, "{corr}");
    }
}
