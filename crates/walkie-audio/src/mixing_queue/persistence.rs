//! Persistence hooks of the [mixing queue](super): what the app writes to
//! and restores from [`crate::queue_store`].
//!
//! Owns the snapshot of a talk ([`StoredTalk`]), the mapping of events to
//! store actions ([`PersistAction`]: Save on `Persist`, Delete when a talk
//! leaves the queue) and [`MixingQueue::restore`], which puts saved talks
//! back, held, under the bounds.

use std::collections::BTreeMap;

use super::{
    MixingQueue, PersistAction, QueueError, QueueEvent, Slot, State, StoredTalk, Talk,
    MAX_PACKET_BYTES,
};

impl MixingQueue {
    /// A snapshot of a talk for the store: its meta, arrival order and the
    /// frames not yet played.
    pub fn stored_talk(&self, session: &str) -> Option<StoredTalk> {
        let talk = self.talks.get(session)?;
        Some(StoredTalk {
            meta: talk.meta.clone(),
            order: talk.order,
            frames: talk
                .frames
                .iter()
                .map(|(&i, s)| (i, s.packet.clone()))
                .collect(),
        })
    }

    /// What the store should do for `event`: `Save` for `Persist` (None if
    /// the talk is already gone), `Delete` for a talk that left the queue.
    pub fn persist_action(&self, event: &QueueEvent) -> Option<PersistAction> {
        if let Some(session) = event.removed_talk() {
            return Some(PersistAction::Delete {
                session: session.to_owned(),
            });
        }
        match event {
            QueueEvent::Persist { session } => self.stored_talk(session).map(PersistAction::Save),
            _ => None,
        }
    }

    /// Puts saved talks back (call at start, before live talks arrive):
    /// held, complete, in their saved arrival order, under the bounds (the
    /// overflow rule applies). Returns the talks refused, with why.
    pub fn restore(
        &mut self,
        mut talks: Vec<StoredTalk>,
        now_ms: u64,
    ) -> Vec<(String, QueueError)> {
        talks.sort_by(|a, b| {
            a.order
                .cmp(&b.order)
                .then_with(|| a.meta.session.cmp(&b.meta.session))
        });
        let mut refused = Vec::new();
        for stored in talks {
            let session = stored.meta.session.clone();
            if let Err(error) = self.restore_one(stored, now_ms) {
                refused.push((session, error));
            }
        }
        refused
    }

    fn restore_one(&mut self, stored: StoredTalk, now_ms: u64) -> Result<(), QueueError> {
        let StoredTalk {
            meta,
            order,
            frames: stored_frames,
        } = stored;
        self.check_new_talk(&meta)?;
        let mut frames = BTreeMap::new();
        let mut bytes = 0u64;
        for (index, packet) in stored_frames {
            let fits = index < self.limits.max_talk_frames
                && (1..=MAX_PACKET_BYTES).contains(&packet.len());
            if !fits || frames.contains_key(&index) {
                self.stats.dropped_frames += 1;
                continue;
            }
            bytes += packet.len() as u64;
            frames.insert(
                index,
                Slot {
                    packet,
                    stored_ms: now_ms,
                },
            );
        }
        self.next_order = self.next_order.max(order.saturating_add(1));
        self.totals.frames += frames.len() as u64;
        self.totals.bytes = self.totals.bytes.saturating_add(bytes);
        let session = meta.session.clone();
        let group = meta.group.clone();
        self.talks.insert(
            session.clone(),
            Talk {
                meta,
                order,
                state: State::Held,
                boost: None,
                frames,
                bytes,
                ended: true,
                cut: false,
                last_activity_ms: now_ms,
                mode: None,
            },
        );
        self.emit(QueueEvent::Held { session, group });
        self.enforce_bounds();
        Ok(())
    }
}
