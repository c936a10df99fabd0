//! A seeded network simulator for the jitter buffer's tests and the audio
//! benchmark: turns a talk's 20 ms frames into arrival times through a model
//! of delay, jitter (uniform or exponential), isolated loss, reordering,
//! duplication, and Synapse's one-transaction-in-flight federation bursts.
//! Deterministic for a seed; no I/O.

use std::collections::BTreeSet;

use crate::jitter::{JitterBuffer, JitterStats, Playout, FRAME_MS};

/// xorshift64* PRNG, seeded, for the network simulator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Uniform in [0, n) (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn up_to(&mut self, max: u64) -> u64 {
        self.next_u64() % (max + 1)
    }
}

/// The talker's clock runs this far ahead of the receiver's.
pub const SENDER_CLOCK_OFFSET: u64 = 5_000_000;
/// Receiver time of the talk's first frame.
pub const TALK_START: u64 = 10_000;

/// Per-frame extra delay.
#[derive(Clone, Copy, Debug)]
pub enum JitterModel {
    Uniform(u64),
    Exponential(u64),
}

/// One simulated talk over one link.
#[derive(Clone, Copy, Debug)]
pub struct Net {
    pub frames: u64,
    pub base_ms: u64,
    pub jitter: JitterModel,
    pub loss: f64,
    pub reorder: f64,
    pub duplicate: f64,
    /// (burst period, one-way delay): one transaction in flight.
    pub bursty: Option<(u64, u64)>,
    /// Target hint carried over from a previous talk.
    pub hint_ms: u64,
}

impl Net {
    /// 1500 frames (30 s), 30 ms base delay, the given jitter, no loss.
    pub fn plain(jitter: JitterModel) -> Self {
        Net {
            frames: 1500,
            base_ms: 30,
            jitter,
            loss: 0.0,
            reorder: 0.0,
            duplicate: 0.0,
            bursty: None,
            hint_ms: 0,
        }
    }
}

/// A frame reaching the receiver.
pub struct Arrival {
    pub at: u64,
    pub seq: u64,
}

/// Arrivals in receiver-clock ms, sorted by time; and the set of lost seqs.
/// Arrivals in receiver-clock ms, sorted by time, and the set of lost seqs.
pub fn simulate_network(net: &Net, rng: &mut Rng) -> (Vec<Arrival>, BTreeSet<u64>) {
    let mut out = Vec::new();
    let mut lost = BTreeSet::new();
    // Transaction model: next departure time, when the in-flight one returns.
    let mut next_departure = TALK_START + rng.up_to(net.bursty.map_or(0, |b| b.0));
    for seq in 0..net.frames {
        let sent = TALK_START + seq * FRAME_MS;
        let isolated = !lost.contains(&seq.wrapping_sub(1));
        if seq > 0 && seq + 1 < net.frames && isolated && rng.chance(net.loss) {
            lost.insert(seq);
            continue;
        }
        let jitter = match net.jitter {
            JitterModel::Uniform(max) => rng.up_to(max),
            JitterModel::Exponential(mean) => {
                (-(1.0 - rng.unit()).ln() * mean as f64).round() as u64
            }
        };
        let mut at = match net.bursty {
            None => sent + net.base_ms + jitter,
            Some((period, one_way)) => {
                while next_departure < sent {
                    next_departure += period;
                }
                next_departure + one_way + jitter
            }
        };
        if rng.chance(net.reorder) {
            at += 20 + rng.up_to(40);
        }
        out.push(Arrival { at, seq });
        if rng.chance(net.duplicate) {
            out.push(Arrival {
                at: at + rng.up_to(100),
                seq,
            });
        }
    }
    out.sort_by_key(|a| a.at);
    (out, lost)
}

/// Walkie's measured loopback link (Synapse on 127.0.0.1): the talker sends
/// one to-device message per `frames_per_message` frames, as soon as the last
/// of them is captured; each message takes `base_ms` plus a uniform
/// `0..=jitter_ms`, and one message per second (at a random place in that
/// second) is late by a further `0..=late_ms`. Messages arrive in order (one
/// sync stream), so a late message holds back the ones behind it. `stall`
/// = (ms after the talk's start, duration): nothing arrives in that span, and
/// what would have arrives at its end; `aftershock` is a second one (a
/// shorter stall while the window still holds the first is what makes a
/// buffer stretch: the first only loses frames). `startup` = (excess ms, drain ms
/// per message): message m is late by a further `excess - m * drain` (the
/// talk's first frames queued behind its claim and the queue draining, as
/// measured at a listener: frame 0 +27..50 ms over the steady transit,
/// back to it within ~8 messages).
#[derive(Clone, Copy, Debug)]
pub struct Loopback {
    pub frames: u64,
    pub frames_per_message: u64,
    pub base_ms: u64,
    pub jitter_ms: u64,
    pub late_ms: u64,
    pub stall: Option<(u64, u64)>,
    pub aftershock: Option<(u64, u64)>,
    pub startup: Option<(u64, u64)>,
}

impl Loopback {
    /// The clean loopback of issue 11: 2-frame messages every 40 ms, 10 ms
    /// base delay, 0-8 ms of jitter, one message a second late by <= 25 ms;
    /// `secs` seconds of talk.
    pub fn clean(secs: u64) -> Self {
        Loopback {
            frames: secs * 1000 / FRAME_MS,
            frames_per_message: 2,
            base_ms: 10,
            jitter_ms: 8,
            late_ms: 25,
            stall: None,
            aftershock: None,
            startup: None,
        }
    }

    /// The same link with `frames` frames per message (1: the talker's
    /// default since the sealed fan-out, one message every 20 ms).
    pub fn frames_per_message(self, frames: u64) -> Self {
        Loopback {
            frames_per_message: frames,
            ..self
        }
    }
}

/// Arrivals of a [`Loopback`] talk in receiver-clock ms, sorted by time
/// (frames of one message share their arrival time). Nothing is lost.
pub fn simulate_loopback(link: &Loopback, rng: &mut Rng) -> Vec<Arrival> {
    let per_msg = link.frames_per_message.max(1);
    let msg_ms = per_msg * FRAME_MS;
    let msgs_per_sec = (1000 / msg_ms).max(1);
    let messages = link.frames.div_ceil(per_msg);
    let mut late_msg = u64::MAX;
    let mut last_at = 0;
    let mut out = Vec::new();
    for m in 0..messages {
        if m % msgs_per_sec == 0 {
            late_msg = m + rng.below(msgs_per_sec);
        }
        let first = m * per_msg;
        let last = (first + per_msg).min(link.frames);
        let sent = TALK_START + last * FRAME_MS;
        let mut at = sent + link.base_ms + rng.up_to(link.jitter_ms);
        if m == late_msg {
            at += rng.up_to(link.late_ms);
        }
        if let Some((excess, drain)) = link.startup {
            at += excess.saturating_sub(m.saturating_mul(drain));
        }
        for (from, len) in link.stall.into_iter().chain(link.aftershock) {
            let (from, to) = (TALK_START + from, TALK_START + from + len);
            if (from..to).contains(&at) {
                at = to;
            }
        }
        at = at.max(last_at);
        last_at = at;
        out.extend((first..last).map(|seq| Arrival { at, seq }));
    }
    out
}

/// Plays one simulated talk through a [`JitterBuffer`], popping every 20 ms
/// at a seeded phase, and returns the buffer's statistics (e.g. the mean
/// delay it added). Packets carry their seq as 8 little-endian bytes.
pub fn play_through(net: &Net, seed: u64) -> JitterStats {
    let mut rng = Rng::new(seed);
    let (arrivals, _) = simulate_network(net, &mut rng);
    let end_at = arrivals.iter().map(|a| a.at).max().unwrap_or(0);
    let mut jb = JitterBuffer::with_target_hint(net.hint_ms);
    let mut now = TALK_START + rng.up_to(FRAME_MS - 1);
    let mut next = 0;
    loop {
        while let Some(a) = arrivals.get(next).filter(|a| a.at <= now) {
            let sender_ts = TALK_START + a.seq * FRAME_MS + SENDER_CLOCK_OFFSET;
            // Refusals are counted in the stats; the simulator never makes any.
            let _ = jb.push(a.seq, sender_ts, a.seq.to_le_bytes().to_vec(), a.at);
            next += 1;
        }
        if now >= end_at {
            jb.end();
        }
        if jb.pop(now) == Playout::Finished {
            return jb.stats();
        }
        now += FRAME_MS;
    }
}
