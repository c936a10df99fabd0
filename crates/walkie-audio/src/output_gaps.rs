//! Gaps the audio server filled with silence because the output callback
//! came too late (a busy machine): the device's clock runs on while the
//! samples it pulled from the player stop, and everything after plays that
//! much later. The player's ring never saw an underrun, so only the clock
//! shows it. Owns the comparison of samples pulled with the wall clock, with
//! room for the device's period and for its clock's drift.

/// A callback later than one period by more than this counts as a gap.
pub const GAP_MS: f64 = 10.0;
/// Drift allowed between the device's clock and the system's, in ms per
/// second: sound cards drift by tens of parts per million; this allows 2000.
const DRIFT_MS_PER_S: f64 = 2.0;

/// Watches one open output stream.
#[derive(Debug, Clone)]
pub struct GapDetector {
    rate: f64,
    period_ms: f64,
    /// Wall clock (ms) and samples pulled at the first pull seen.
    start: Option<(f64, u64)>,
    last_pulled: u64,
    last_ms: f64,
    /// The least lag of the device behind the wall clock (ms) seen, raised
    /// by the allowed drift as time passes.
    baseline_ms: f64,
    gaps: u64,
    gap_ms: f64,
}

impl GapDetector {
    /// A detector for a device pulling `rate` samples a second in periods
    /// of `period_ms`.
    pub fn new(rate: u32, period_ms: f64) -> Self {
        Self {
            rate: f64::from(rate.max(1)),
            period_ms: period_ms.max(0.0),
            start: None,
            last_pulled: 0,
            last_ms: 0.0,
            baseline_ms: 0.0,
            gaps: 0,
            gap_ms: 0.0,
        }
    }

    /// Looks at the device's count of samples pulled (`pulled`) at wall
    /// clock `now_ms`; returns the length of a gap found now (ms). Judged
    /// only when the count moved (a callback ran since the last look).
    pub fn check(&mut self, now_ms: f64, pulled: u64) -> Option<f64> {
        if pulled == 0 || pulled == self.last_pulled {
            return None;
        }
        self.last_pulled = pulled;
        let (t0, p0) = *self.start.get_or_insert((now_ms, pulled));
        let lag = (now_ms - t0) - pulled.saturating_sub(p0) as f64 * 1000.0 / self.rate;
        let elapsed = (now_ms - self.last_ms).max(0.0);
        self.last_ms = now_ms;
        self.baseline_ms = (self.baseline_ms + DRIFT_MS_PER_S * elapsed / 1000.0).min(lag);
        let excess = lag - self.baseline_ms - self.period_ms;
        if excess <= GAP_MS {
            return None;
        }
        self.gaps += 1;
        self.gap_ms += excess;
        // The later audio plays `excess` later from now on: the new normal.
        self.baseline_ms = lag;
        Some(excess)
    }

    /// Gaps found so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Their total length (ms), each counted from one period late.
    pub fn gap_ms(&self) -> f64 {
        self.gap_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    /// A device pulling 5 ms periods, looked at every 5 ms some ms after
    /// each callback, with a callback `late_ms` late at `late_at` (ms).
    fn run(seconds: f64, late_at: Option<(f64, f64)>, ppm: f64) -> GapDetector {
        let mut d = GapDetector::new(RATE, 5.0);
        let mut pulled = 480u64; // the server's first request: two periods
        let mut next_callback = 5.0;
        let mut t = 0.0;
        let mut delayed = false;
        d.check(t, pulled);
        let period = 5.0 * (1.0 + ppm / 1e6);
        while t < seconds * 1000.0 {
            t += 0.5;
            if let Some((at, late)) = late_at {
                if !delayed && next_callback >= at {
                    // This callback and every one after it come `late` later.
                    delayed = true;
                    next_callback += late;
                }
            }
            if t >= next_callback {
                pulled += 240;
                next_callback += period;
            }
            if t % 5.0 == 3.0 {
                d.check(t, pulled);
            }
        }
        d
    }

    #[test]
    fn a_steady_device_has_no_gaps() {
        let d = run(10.0, None, 0.0);
        assert_eq!(d.gaps(), 0, "{d:?}");
    }

    #[test]
    fn a_drifting_device_clock_is_not_a_gap() {
        // A card 500 ppm slow: 30 ms behind after a minute.
        let d = run(60.0, None, 500.0);
        assert_eq!(d.gaps(), 0, "{d:?}");
    }

    #[test]
    fn a_callback_40_ms_late_is_one_gap_of_about_its_length() {
        let d = run(5.0, Some((1_000.0, 40.0)), 0.0);
        assert_eq!(d.gaps(), 1, "{d:?}");
        assert!((30.0..=45.0).contains(&d.gap_ms()), "{d:?}");
    }

    #[test]
    fn a_callback_late_within_a_period_is_not_a_gap() {
        let d = run(5.0, Some((1_000.0, 8.0)), 0.0);
        assert_eq!(d.gaps(), 0, "{d:?}");
    }

    #[test]
    fn nothing_pulled_yet_is_not_judged() {
        let mut d = GapDetector::new(RATE, 5.0);
        assert_eq!(d.check(0.0, 0), None);
        assert_eq!(d.check(500.0, 0), None);
        assert_eq!(d.gaps(), 0);
    }
}
