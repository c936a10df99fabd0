//! The short generated tones that tell the user what the walkie does: talk
//! permitted (capture is live, speak now), busy (someone else holds the
//! floor), end of talk (the "roger beep" after a received talk). Each tone
//! is a few sine segments with raised-cosine ramps so it never clicks, and
//! each can be switched off ([`CueSettings`]).

use serde::{Deserialize, Serialize};

use crate::codec::SAMPLE_RATE;

/// Which cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cue {
    /// Rising two-tone chirp: capture is live, the floor is yours.
    TalkPermit,
    /// Three low beeps: someone else holds the floor.
    Busy,
    /// Falling two-tone: a received talk ended.
    TalkEnd,
}

/// Which cues sound. All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CueSettings {
    pub talk_permit: bool,
    pub busy: bool,
    pub talk_end: bool,
}

impl Default for CueSettings {
    fn default() -> Self {
        Self {
            talk_permit: true,
            busy: true,
            talk_end: true,
        }
    }
}

impl CueSettings {
    /// Whether `cue` is switched on.
    pub fn enabled(&self, cue: Cue) -> bool {
        match cue {
            Cue::TalkPermit => self.talk_permit,
            Cue::Busy => self.busy,
            Cue::TalkEnd => self.talk_end,
        }
    }
}

/// Peak level of every cue (-12 dBFS): audible over speech, never harsh.
const LEVEL: f32 = 0.25;
/// Fade-in and fade-out of every segment.
const RAMP_MS: u32 = 5;

/// One segment: frequency (0 = silence) and length.
type Segment = (f32, u32);

fn segments(cue: Cue) -> &'static [Segment] {
    match cue {
        Cue::TalkPermit => &[(880.0, 50), (1320.0, 70)],
        Cue::Busy => &[(440.0, 70), (0.0, 50), (440.0, 70), (0.0, 50), (440.0, 70)],
        Cue::TalkEnd => &[(1200.0, 50), (800.0, 70)],
    }
}

/// The cue's samples, 48 kHz mono, -1..1.
pub fn samples(cue: Cue) -> Vec<f32> {
    let mut out = Vec::new();
    for &(freq, ms) in segments(cue) {
        let n = (SAMPLE_RATE * ms / 1000) as usize;
        let ramp = (SAMPLE_RATE * RAMP_MS / 1000) as usize;
        for i in 0..n {
            if freq == 0.0 {
                out.push(0.0);
                continue;
            }
            let t = i as f32 / SAMPLE_RATE as f32;
            let edge = i.min(n - 1 - i);
            let gain = if edge < ramp {
                0.5 - 0.5 * (std::f32::consts::PI * edge as f32 / ramp as f32).cos()
            } else {
                1.0
            };
            out.push((2.0 * std::f32::consts::PI * freq * t).sin() * LEVEL * gain);
        }
    }
    out
}

/// Length of the cue in milliseconds.
pub fn duration_ms(cue: Cue) -> u32 {
    segments(cue).iter().map(|&(_, ms)| ms).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cues_are_short_bounded_and_start_and_end_silent() {
        for cue in [Cue::TalkPermit, Cue::Busy, Cue::TalkEnd] {
            let s = samples(cue);
            assert_eq!(s.len(), (duration_ms(cue) * 48) as usize);
            assert!(duration_ms(cue) <= 400, "{cue:?} too long");
            assert!(s.iter().all(|v| v.abs() <= LEVEL + 1e-6));
            assert!(
                s[0].abs() < 1e-3 && s[s.len() - 1].abs() < 0.01,
                "{cue:?} clicks"
            );
            // No jump between neighbouring samples larger than a 1.4 kHz
            // sine at LEVEL can make (a click would be a jump).
            let max_step = s
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(0f32, f32::max);
            assert!(max_step < 0.05, "{cue:?} step {max_step}");
        }
    }

    #[test]
    fn settings_switch_cues_off() {
        let s = CueSettings {
            busy: false,
            ..CueSettings::default()
        };
        assert!(s.enabled(Cue::TalkPermit));
        assert!(!s.enabled(Cue::Busy));
    }
}
