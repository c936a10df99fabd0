//! Rate limit for "dropped walkie message" reports. Owns the decision of
//! whether a dropped message is reported now (a log line and an
//! [`EngineEvent::Dropped`](super::EngineEvent::Dropped)) or only counted:
//! at most one report per sender and kind of drop per [`INTERVAL_MS`], the
//! next one saying how many were left out. Memory is bounded by
//! [`MAX_KEYS`]: a flood from many made-up senders evicts the quietest.

use std::collections::HashMap;

/// At most one report per (sender, kind) in this long.
pub const INTERVAL_MS: u64 = 60_000;
/// (sender, kind) pairs remembered at most.
pub const MAX_KEYS: usize = 1_024;

#[derive(Debug, Clone, Copy)]
struct Entry {
    reported_at: u64,
    suppressed: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct DropLog {
    entries: HashMap<(String, &'static str), Entry>,
}

impl DropLog {
    /// A drop of `kind` from `sender` at `now_ms`. `Some(n)`: report it,
    /// `n` drops like it having gone unreported since the last report;
    /// `None`: count it only.
    pub fn note(&mut self, sender: &str, kind: &'static str, now_ms: u64) -> Option<u64> {
        if let Some(e) = self.entries.get_mut(&(sender.to_owned(), kind)) {
            if now_ms.saturating_sub(e.reported_at) < INTERVAL_MS {
                e.suppressed += 1;
                return None;
            }
            let left_out = e.suppressed;
            *e = Entry {
                reported_at: now_ms,
                suppressed: 0,
            };
            return Some(left_out);
        }
        if self.entries.len() >= MAX_KEYS {
            self.entries
                .retain(|_, e| now_ms.saturating_sub(e.reported_at) < INTERVAL_MS);
        }
        if self.entries.len() >= MAX_KEYS {
            // Still full of senders reported within the interval: the
            // oldest report goes (its count with it).
            if let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.reported_at)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            (sender.to_owned(), kind),
            Entry {
                reported_at: now_ms,
                suppressed: 0,
            },
        );
        Some(0)
    }

    /// Pairs remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_sender_and_kind_per_interval_with_the_count() {
        let mut log = DropLog::default();
        assert_eq!(log.note("@m:x", "invalid", 0), Some(0));
        for t in 1..2000 {
            assert_eq!(log.note("@m:x", "invalid", t), None);
        }
        // another kind, another sender: reported
        assert_eq!(log.note("@m:x", "oversize", 10), Some(0));
        assert_eq!(log.note("@n:x", "invalid", 10), Some(0));
        assert_eq!(log.note("@m:x", "invalid", INTERVAL_MS), Some(1999));
        assert_eq!(log.note("@m:x", "invalid", INTERVAL_MS + 1), None);
    }

    #[test]
    fn memory_is_bounded_whatever_the_senders() {
        let mut log = DropLog::default();
        for i in 0..10 * MAX_KEYS as u64 {
            log.note(&format!("@u{i}:x"), "invalid", i);
            assert!(log.len() <= MAX_KEYS);
        }
    }
}
