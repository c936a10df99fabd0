//! Deterministic signals for the unit tests and the audio benchmark: a
//! speech-like stand-in and (tests only) a small PRNG.

use crate::codec::SAMPLE_RATE;

/// A speech-like stand-in at 48 kHz: a gliding fundamental (110–190 Hz) with
/// harmonics up to ~3.4 kHz shaped by two moving formant bumps, amplitude
/// modulated at syllable rate (~4 Hz) with short pauses. Peak about −6 dBFS.
pub fn speech_like(seconds: f64) -> Vec<i16> {
    let rate = f64::from(SAMPLE_RATE);
    let n = (seconds * rate).round() as usize;
    let mut phase = 0.0f64;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / rate;
        let f0 = 150.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
        phase += 2.0 * std::f64::consts::PI * f0 / rate;
        let f1 = 600.0 + 250.0 * (2.0 * std::f64::consts::PI * 1.3 * t).sin();
        let f2 = 1700.0 + 500.0 * (2.0 * std::f64::consts::PI * 0.9 * t).cos();
        let mut s = 0.0;
        let mut k = 1.0;
        while k * f0 < 3400.0 {
            let f = k * f0;
            let w = 1.0 / k
                + 1.2 * (-((f - f1) / 200.0).powi(2)).exp()
                + 0.6 * (-((f - f2) / 300.0).powi(2)).exp();
            s += w * (k * phase).sin();
            k += 1.0;
        }
        // Syllables: a raised sine at 4 Hz, gated to leave short pauses.
        let syllable = (2.0 * std::f64::consts::PI * 4.0 * t).sin();
        let envelope = if syllable > -0.6 {
            (syllable + 0.6) / 1.6
        } else {
            0.0
        };
        out.push((s * envelope * 4000.0).clamp(-32768.0, 32767.0) as i16);
    }
    out
}

/// xorshift64*: deterministic pseudo-random numbers for tests.
#[cfg(test)]
pub(crate) struct Rng(u64);

#[cfg(test)]
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}
