//! Tests of the [mixing queue](super), by concern, and the helpers they
//! share: packets that name their talk and frame, a tick loop that records
//! what played, small limits and a seeded generator.

mod hostile;
mod persistence;
mod policy;
mod replay;
mod storage;

use super::hints::REMEMBERED_HINTS;
use super::*;

impl MixingQueue {
    /// Totals match the talks; bounds hold; the current talk is consistent.
    fn check_invariants(&self) {
        let frames: u64 = self.talks.values().map(|t| t.frames.len() as u64).sum();
        let bytes: u64 = self
            .talks
            .values()
            .map(|t| {
                t.frames
                    .values()
                    .map(|s| s.packet.len() as u64)
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(frames, self.totals.frames);
        assert_eq!(bytes, self.totals.bytes);
        for t in self.talks.values() {
            let b: u64 = t.frames.values().map(|s| s.packet.len() as u64).sum();
            assert_eq!(b, t.bytes);
            assert!(t.frames.keys().all(|&i| i < self.limits.max_talk_frames));
            assert_eq!(
                t.state == State::Current,
                self.current.as_ref() == Some(&t.meta.session)
            );
        }
        assert!(self.totals.frames <= self.limits.max_total_frames);
        assert!(self.totals.bytes <= self.limits.max_total_bytes);
        assert!(self.waiting_count() <= self.limits.max_talks);
        assert!(self.events.len() <= MAX_PENDING_EVENTS);
        assert!(self.over.len() <= REMEMBERED_OVER_TALKS);
        assert_eq!(self.over.len(), self.over_set.len());
        assert!(self.hints.len() <= REMEMBERED_HINTS);
    }
}

/// A packet that names its talk and frame.
fn pkt(talk: u8, index: u64) -> Vec<u8> {
    let mut p = vec![talk];
    p.extend_from_slice(&index.to_le_bytes());
    p
}

fn id_of(p: &[u8]) -> (u8, u64) {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[1..9]);
    (p[0], u64::from_le_bytes(b))
}

fn meta(group: &str, session: &str) -> TalkMeta {
    TalkMeta {
        group: group.into(),
        session: session.into(),
        sender: format!("@{session}:example.org"),
        start_ts_ms: 1_767_225_600_000,
    }
}

fn queue() -> MixingQueue {
    MixingQueue::new(QueueLimits::default()).unwrap()
}

fn events(q: &mut MixingQueue) -> Vec<QueueEvent> {
    std::iter::from_fn(|| q.poll_event()).collect()
}

/// Pushes frames `from..to` of talk `n` in messages of two frames.
fn push_range(
    q: &mut MixingQueue,
    group: &str,
    session: &str,
    n: u8,
    from: u64,
    to: u64,
    now: u64,
) {
    let mut i = from;
    while i < to {
        let end = (i + 2).min(to);
        let packets = (i..end).map(|k| pkt(n, k)).collect();
        let s = q
            .push(group, session, i, 5_000_000 + i * FRAME_MS, packets, now)
            .unwrap();
        assert_eq!(s.stored, (end - i) as usize);
        i = end;
    }
}

#[derive(Debug, Default)]
struct Played {
    /// (session, packet or None for a concealment) per non-Wait tick.
    out: Vec<(String, Option<Vec<u8>>)>,
    gains: Vec<f32>,
    waits: usize,
}

impl Played {
    fn sessions_in_order(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (s, _) in &self.out {
            if v.last() != Some(s) {
                v.push(s.clone());
            }
        }
        v
    }
    fn frames_of(&self, session: &str) -> Vec<u64> {
        self.out
            .iter()
            .filter(|(s, _)| s == session)
            .filter_map(|(_, p)| p.as_ref().map(|p| id_of(p).1))
            .collect()
    }
    fn concealed(&self, session: &str) -> usize {
        self.out
            .iter()
            .filter(|(s, p)| s == session && p.is_none())
            .count()
    }
}

/// Ticks every 20 ms from `*now` until the queue is idle.
fn play_until_idle(q: &mut MixingQueue, now: &mut u64, max_ticks: usize) -> Played {
    let mut played = Played::default();
    for _ in 0..max_ticks {
        *now += FRAME_MS;
        match q.tick(*now) {
            Tick::Idle => return played,
            Tick::Play {
                session,
                playout,
                gain,
                ..
            } => {
                played.gains.push(gain);
                match playout {
                    Playout::Frame(p) => played.out.push((session, Some(p))),
                    Playout::Conceal { .. } => played.out.push((session, None)),
                    Playout::Wait => played.waits += 1,
                    Playout::Finished => panic!("Finished is never returned"),
                }
            }
        }
        q.check_invariants();
    }
    panic!("not idle after {max_ticks} ticks");
}

fn small_limits() -> QueueLimits {
    QueueLimits {
        max_talks: 3,
        max_talk_frames: 100,
        max_total_frames: 250,
        max_total_bytes: 100 * MAX_PACKET_BYTES as u64,
    }
}
