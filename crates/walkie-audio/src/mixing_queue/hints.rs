//! Jitter hints of the [mixing queue](super): the jitter-buffer target
//! delay each sender's last live talk settled on, so their next live talk
//! starts there ([`FIRST_TALK_TARGET_MS`] for a sender heard for the first
//! time). Bounded to the last [`REMEMBERED_HINTS`] senders.

use super::{MixingQueue, FIRST_TALK_TARGET_MS};

/// Senders whose last live target delay is remembered as a jitter hint.
pub(super) const REMEMBERED_HINTS: usize = 256;

impl MixingQueue {
    pub(super) fn hint_for(&self, sender: &str) -> u64 {
        self.hints
            .iter()
            .rev()
            .find(|(s, _)| s == sender)
            .map_or(FIRST_TALK_TARGET_MS, |&(_, h)| h)
    }

    pub(super) fn remember_hint(&mut self, sender: &str, target_ms: u64) {
        self.hints.retain(|(s, _)| s != sender);
        if self.hints.len() >= REMEMBERED_HINTS {
            self.hints.pop_front();
        }
        self.hints.push_back((sender.to_owned(), target_ms));
    }
}
