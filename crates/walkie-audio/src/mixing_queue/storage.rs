//! Bounded storage of the [mixing queue](super): received frames are
//! stored per talk under [`QueueLimits`](super::QueueLimits), and the
//! overflow rule evicts whole talks to make room.
//!
//! Owns [`MixingQueue::push`] (validating and storing a message's packets,
//! feeding a live talk's jitter buffer), the totals of stored frames and
//! bytes, eviction (the oldest waiting talk of the lowest priority), the
//! removal of talks and the memory of talks that are over.

use super::{
    arrival_order, MixingQueue, Mode, PushSummary, QueueError, QueueEvent, Slot, State, Talk,
    MAX_PACKETS_PER_PUSH, MAX_PACKET_BYTES, REMEMBERED_OVER_TALKS,
};
use crate::jitter::{PushOutcome, FRAME_MS};

/// Frames and packet bytes stored over all talks.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) frames: u64,
    pub(super) bytes: u64,
}

impl Totals {
    /// Accounts for `slot` leaving a talk that held `talk_bytes`.
    pub(super) fn remove(&mut self, talk_bytes: &mut u64, slot: &Slot) {
        let len = slot.packet.len() as u64;
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
        *talk_bytes = talk_bytes.saturating_sub(len);
    }
}

/// What [`MixingQueue::make_room`] did to fit one more frame.
enum RoomForFrame {
    /// The frame fits (after evicting other talks, if needed).
    Made,
    /// The talk the frame is for was the victim.
    EvictedOwnTalk,
    /// Nothing left to evict (only possible with a bug in the limits check).
    NoVictim,
}

impl MixingQueue {
    /// Packets of a talk: `packets[i]` is frame `first_frame + i` of the talk
    /// (20 ms each), captured at `sender_ts_ms + i * 20` on the talker's
    /// clock. The whole message is refused (typed error, nothing changed)
    /// for an unknown or over talk, another group, too many packets or a bad
    /// packet size; single frames are dropped or ignored as counted in the
    /// summary.
    pub fn push(
        &mut self,
        group: &str,
        session: &str,
        first_frame: u64,
        sender_ts_ms: u64,
        packets: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<PushSummary, QueueError> {
        if packets.len() > MAX_PACKETS_PER_PUSH {
            return Err(QueueError::TooManyPackets {
                count: packets.len(),
                max: MAX_PACKETS_PER_PUSH,
            });
        }
        let talk = self.waiting_or_current(session)?;
        if talk.meta.group != group {
            return Err(QueueError::GroupMismatch {
                session: session.to_owned(),
                expected: talk.meta.group.clone(),
                got: group.to_owned(),
            });
        }
        if let Some((index, p)) = packets
            .iter()
            .enumerate()
            .find(|(_, p)| p.is_empty() || p.len() > MAX_PACKET_BYTES)
        {
            return Err(QueueError::BadPacket {
                index,
                len: p.len(),
                max: MAX_PACKET_BYTES,
            });
        }
        talk.last_activity_ms = talk.last_activity_ms.max(now_ms);
        if let Some(Mode::Live { jb, .. }) = talk.mode.as_mut() {
            jb.note_message_frames(first_frame, packets.len() as u64);
        }

        let count = packets.len();
        let mut summary = PushSummary::default();
        for (i, packet) in packets.into_iter().enumerate() {
            let Some(talk) = self.talks.get_mut(session) else {
                summary.dropped += count - i;
                break;
            };
            let offset = i as u64;
            let index = match first_frame.checked_add(offset) {
                Some(index) if index < self.limits.max_talk_frames => index,
                _ => {
                    summary.dropped += 1;
                    if !talk.cut {
                        talk.cut = true;
                        let session = session.to_owned();
                        self.emit(QueueEvent::Cut { session });
                    }
                    continue;
                }
            };
            if talk.frames.contains_key(&index) {
                summary.duplicates += 1;
                continue;
            }
            match talk.mode.as_mut() {
                Some(Mode::Replay {
                    next: Some(next), ..
                }) if index < *next => {
                    summary.dropped += 1;
                    continue;
                }
                Some(Mode::Live { jb, .. }) => {
                    let ts = sender_ts_ms.saturating_add(offset.saturating_mul(FRAME_MS));
                    match jb.push(index, ts, packet.clone(), now_ms) {
                        Ok(PushOutcome::Buffered) => {}
                        Ok(PushOutcome::Duplicate) => {
                            summary.duplicates += 1;
                            continue;
                        }
                        Ok(PushOutcome::Late) | Err(_) => {
                            summary.dropped += 1;
                            continue;
                        }
                    }
                }
                _ => {}
            }
            let len = packet.len() as u64;
            match self.make_room(session, len) {
                RoomForFrame::Made => {}
                RoomForFrame::EvictedOwnTalk => {
                    summary.dropped += count - i;
                    break;
                }
                RoomForFrame::NoVictim => {
                    summary.dropped += 1;
                    continue;
                }
            }
            let Some(talk) = self.talks.get_mut(session) else {
                summary.dropped += count - i;
                break;
            };
            talk.frames.insert(
                index,
                Slot {
                    packet,
                    stored_ms: now_ms,
                },
            );
            talk.bytes = talk.bytes.saturating_add(len);
            self.totals.frames += 1;
            self.totals.bytes = self.totals.bytes.saturating_add(len);
            summary.stored += 1;
        }
        self.stats.duplicates += summary.duplicates as u64;
        self.stats.dropped_frames += summary.dropped as u64;
        Ok(summary)
    }

    /// Removes a talk and its stored audio, and remembers it as over.
    pub(super) fn remove_talk(&mut self, session: &str) -> Option<Talk> {
        let talk = self.talks.remove(session)?;
        self.totals.frames = self.totals.frames.saturating_sub(talk.frames.len() as u64);
        self.totals.bytes = self.totals.bytes.saturating_sub(talk.bytes);
        if self.current.as_deref() == Some(session) {
            self.current = None;
        }
        self.remember_over(session);
        Some(talk)
    }

    fn remember_over(&mut self, session: &str) {
        if !self.over_set.insert(session.to_owned()) {
            return;
        }
        self.over.push_back(session.to_owned());
        while self.over.len() > REMEMBERED_OVER_TALKS {
            if let Some(old) = self.over.pop_front() {
                self.over_set.remove(&old);
            }
        }
    }

    /// The oldest waiting talk of the lowest priority.
    fn eviction_victim(&self) -> Option<String> {
        let priority = |t: &Talk| self.settings(&t.meta.group).priority;
        self.talks
            .values()
            .filter(|t| t.state != State::Current)
            .min_by(|a, b| {
                priority(a)
                    .cmp(&priority(b))
                    .then_with(|| arrival_order(a, b))
            })
            .map(|t| t.meta.session.clone())
    }

    fn evict(&mut self, session: &str) {
        if let Some(talk) = self.remove_talk(session) {
            self.stats.evicted_talks += 1;
            self.emit(QueueEvent::Overflowed {
                session: talk.meta.session,
                group: talk.meta.group,
            });
        }
    }

    pub(super) fn waiting_count(&self) -> usize {
        self.talks
            .len()
            .saturating_sub(usize::from(self.current.is_some()))
    }

    fn over_bounds(&self) -> bool {
        self.waiting_count() > self.limits.max_talks
            || self.totals.frames > self.limits.max_total_frames
            || self.totals.bytes > self.limits.max_total_bytes
    }

    pub(super) fn enforce_bounds(&mut self) {
        while self.over_bounds() {
            let Some(victim) = self.eviction_victim() else {
                return;
            };
            self.evict(&victim);
        }
    }

    /// Evicts until one more frame of `bytes` fits.
    fn make_room(&mut self, session: &str, bytes: u64) -> RoomForFrame {
        loop {
            let fits = self.totals.frames < self.limits.max_total_frames
                && self.totals.bytes.saturating_add(bytes) <= self.limits.max_total_bytes;
            if fits {
                return RoomForFrame::Made;
            }
            let Some(victim) = self.eviction_victim() else {
                return RoomForFrame::NoVictim;
            };
            self.evict(&victim);
            if victim == session {
                return RoomForFrame::EvictedOwnTalk;
            }
        }
    }
}
