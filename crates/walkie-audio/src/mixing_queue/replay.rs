//! Playout of the current talk of the [mixing queue](super), one 20 ms
//! tick at a time: live through its jitter buffer, or replayed from stored
//! packets by the replay cursor (wait for a missing frame, conceal it after
//! [`REPLAY_GRACE_MS`], jump holes longer than [`MAX_REPLAY_GAP_FRAMES`]).
//!
//! Owns the switch of a live talk to replay (on pause or hold) without
//! losing a frame.

use std::collections::BTreeMap;

use super::{
    MixingQueue, Mode, Playout, QueueEvent, Slot, Talk, Totals, MAX_REPLAY_GAP_FRAMES,
    REPLAY_GRACE_MS,
};

impl MixingQueue {
    /// A live current talk continues from stored packets where the jitter
    /// buffer stopped.
    pub(super) fn switch_to_replay(&mut self, session: &str) {
        let Some(talk) = self.talks.get_mut(session) else {
            return;
        };
        let Some(Mode::Live { jb, started }) = &talk.mode else {
            return;
        };
        let started = *started;
        let next = started.then(|| jb.position());
        let target = jb.stats().target_delay_ms;
        let sender = talk.meta.sender.clone();
        let ended = talk.ended;
        talk.mode = Some(Mode::Replay { next, gap_run: 0 });
        if started {
            self.remember_hint(&sender, target);
        }
        if ended {
            self.emit(QueueEvent::Persist {
                session: session.to_owned(),
            });
        }
    }
}

/// One tick of the current talk.
pub(super) fn pop_talk(talk: &mut Talk, now_ms: u64, totals: &mut Totals) -> Playout {
    let Talk {
        frames,
        bytes,
        ended,
        mode,
        ..
    } = talk;
    let mode = mode.get_or_insert(Mode::Replay {
        next: None,
        gap_run: 0,
    });
    match mode {
        Mode::Live { jb, started } => {
            let out = jb.pop(now_ms);
            if matches!(out, Playout::Frame(_) | Playout::Conceal { .. }) {
                *started = true;
            }
            if *started {
                // Drop the copies of what the buffer has passed.
                let position = jb.position();
                while let Some(entry) = frames.first_entry() {
                    if *entry.key() >= position {
                        break;
                    }
                    totals.remove(bytes, &entry.remove());
                }
            }
            out
        }
        Mode::Replay { next, gap_run } => {
            replay_pop(frames, bytes, next, gap_run, *ended, now_ms, totals)
        }
    }
}

/// The replay cursor: see the module doc.
fn replay_pop(
    frames: &mut BTreeMap<u64, Slot>,
    bytes: &mut u64,
    next: &mut Option<u64>,
    gap_run: &mut u32,
    ended: bool,
    now_ms: u64,
    totals: &mut Totals,
) -> Playout {
    loop {
        let Some(entry) = frames.first_entry() else {
            return if ended {
                Playout::Finished
            } else {
                Playout::Wait
            };
        };
        let first = *entry.key();
        let cursor = *next.get_or_insert(first);
        if first < cursor {
            // Already passed (push refuses these): drop it.
            totals.remove(bytes, &entry.remove());
            continue;
        }
        let give_up = first == cursor
            || ended
            || now_ms.saturating_sub(entry.get().stored_ms) >= REPLAY_GRACE_MS;
        if !give_up {
            return Playout::Wait;
        }
        if first == cursor || *gap_run >= MAX_REPLAY_GAP_FRAMES {
            let slot = entry.remove();
            totals.remove(bytes, &slot);
            *next = Some(first.saturating_add(1));
            *gap_run = 0;
            return Playout::Frame(slot.packet);
        }
        *gap_run += 1;
        *next = Some(cursor.saturating_add(1));
        let fec = frames
            .get(&cursor.saturating_add(1))
            .map(|s| s.packet.clone());
        return Playout::Conceal { next: fec };
    }
}
