//! Consent of one room: which devices may receive and which may talk, and
//! until when.
//!
//! This module owns the rules applied to grants once they are trusted:
//! consent is per device; the latest grant of a device replaces the earlier
//! one; an `expires_ts` in the past means absent (no server round trip is
//! needed for expiry); `talk` counts only with `receive`. Time is passed in
//! (ms since the Unix epoch, local clock). It neither parses nor verifies
//! (the parent module owns the wire shape; the engine checks each grant's
//! signature and its device's cross-signing, then [`ConsentSet::insert`]s
//! it) and does no I/O: the engine asks it who to send audio to
//! ([`ConsentSet::receivers`]) and whether a claim may be honoured
//! ([`ConsentSet::may_talk`]).

use std::collections::BTreeMap;

use crate::{Consent, DeviceId, UserId};

/// What [`ConsentSet::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentChange {
    /// The device now consents (until `consent.expires_ts`, if any).
    Granted {
        user: UserId,
        device: DeviceId,
        consent: Consent,
    },
    /// The grant is not in force at the time given (its `expires_ts` is
    /// past, or it grants nothing): not stored, and the device's earlier
    /// grant is gone.
    AlreadyExpired { user: UserId, device: DeviceId },
}

/// The consents of one room, keyed by (user, device). Only the latest grant
/// per device counts; expired entries behave as absent.
#[derive(Debug, Clone, Default)]
pub struct ConsentSet {
    entries: BTreeMap<(UserId, DeviceId), Consent>,
}

impl ConsentSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `device`'s grant (already verified by the caller), replacing
    /// any earlier one. A grant not in force at `now` is not stored.
    pub fn insert(
        &mut self,
        user: UserId,
        device: DeviceId,
        consent: Consent,
        now: u64,
    ) -> ConsentChange {
        let key = (user, device);
        self.entries.remove(&key);
        let (user, device) = key;
        if !consent.is_active(now) {
            return ConsentChange::AlreadyExpired { user, device };
        }
        self.entries.insert((user.clone(), device.clone()), consent);
        ConsentChange::Granted {
            user,
            device,
            consent,
        }
    }

    /// Forgets a device's consent (e.g. our own revoke, before the state
    /// event comes back). Returns whether there was one.
    pub fn revoke(&mut self, user: &UserId, device: &DeviceId) -> bool {
        self.entries
            .remove(&(user.clone(), device.clone()))
            .is_some()
    }

    /// Forgets all consents of a user (e.g. the user left the room).
    /// Returns how many devices were removed.
    pub fn remove_user(&mut self, user: &UserId) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(u, _), _| u != user);
        before - self.entries.len()
    }

    /// The device's consent if it is in force at `now`.
    pub fn get(&self, user: &UserId, device: &DeviceId, now: u64) -> Option<Consent> {
        self.entries
            .get(&(user.clone(), device.clone()))
            .filter(|c| c.is_active(now))
            .copied()
    }

    /// Whether the device may be sent live audio at `now`.
    pub fn may_receive(&self, user: &UserId, device: &DeviceId, now: u64) -> bool {
        self.get(user, device, now).is_some_and(|c| c.receive)
    }

    /// Whether the device may talk at `at`. For a remote claim, pass the
    /// claim's `start_ts` so every client judges the same instant (see
    /// `protocol-draft.md`: a talk that began with consent runs to its end).
    pub fn may_talk(&self, user: &UserId, device: &DeviceId, at: u64) -> bool {
        self.get(user, device, at)
            .is_some_and(|c| c.talk && c.receive)
    }

    /// The devices to send live audio to at `now`, sorted.
    pub fn receivers(&self, now: u64) -> Vec<(UserId, DeviceId)> {
        self.entries
            .iter()
            .filter(|(_, c)| c.is_active(now) && c.receive)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The next instant after `now` at which an active consent expires,
    /// i.e. when [`receivers`](Self::receivers) or
    /// [`may_talk`](Self::may_talk) change by themselves.
    pub fn next_expiry(&self, now: u64) -> Option<u64> {
        self.entries
            .values()
            .filter(|c| c.is_active(now))
            .filter_map(|c| c.expires_ts)
            .min()
    }

    /// Drops expired entries; returns the devices whose consent lapsed.
    pub fn prune(&mut self, now: u64) -> Vec<(UserId, DeviceId)> {
        let expired: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, c)| !c.is_active(now))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.entries.remove(k);
        }
        expired
    }

    /// Number of stored entries (including expired ones not yet pruned).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn d(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }
    const ALICE: &str = "@alice:a.org";
    const BOB: &str = "@bob:b.org";

    fn c(receive: bool, talk: bool, expires_ts: Option<u64>) -> Consent {
        Consent {
            receive,
            talk,
            expires_ts,
        }
    }

    fn grant(set: &mut ConsentSet, user: &str, device: &str, consent: Consent, now: u64) {
        let ch = set.insert(u(user), d(device), consent, now);
        assert!(matches!(ch, ConsentChange::Granted { .. }), "{ch:?}");
    }

    #[test]
    fn grant_then_query() {
        let mut s = ConsentSet::new();
        let ch = s.insert(u(ALICE), d("A1"), c(true, true, None), 0);
        assert_eq!(
            ch,
            ConsentChange::Granted {
                user: u(ALICE),
                device: d("A1"),
                consent: c(true, true, None)
            }
        );
        assert!(s.may_talk(&u(ALICE), &d("A1"), 10));
        assert!(s.may_receive(&u(ALICE), &d("A1"), 10));
        assert!(!s.may_talk(&u(ALICE), &d("A2"), 10), "per device");
        assert_eq!(s.receivers(10), vec![(u(ALICE), d("A1"))]);
        assert_eq!(s.next_expiry(10), None, "permanent");
        assert_eq!(s.get(&u(ALICE), &d("A1"), 10), Some(c(true, true, None)));
    }

    #[test]
    fn receive_only_may_not_talk() {
        let mut s = ConsentSet::new();
        grant(&mut s, ALICE, "A1", c(true, false, None), 0);
        assert!(!s.may_talk(&u(ALICE), &d("A1"), 1));
        assert!(s.may_receive(&u(ALICE), &d("A1"), 1));
    }

    #[test]
    fn talk_without_receive_grants_neither() {
        // The parser refuses such an entry; a caller that builds one anyway
        // gets neither talk nor receive.
        let mut s = ConsentSet::new();
        s.insert(u(ALICE), d("A1"), c(false, true, None), 0);
        assert!(!s.may_talk(&u(ALICE), &d("A1"), 1));
        assert!(!s.may_receive(&u(ALICE), &d("A1"), 1));
        assert!(s.receivers(1).is_empty());
    }

    #[test]
    fn expiry_is_absence() {
        let mut s = ConsentSet::new();
        grant(&mut s, ALICE, "A1", c(true, true, Some(100)), 0);
        assert!(s.may_talk(&u(ALICE), &d("A1"), 99));
        assert!(!s.may_talk(&u(ALICE), &d("A1"), 100), "expiry is exclusive");
        assert!(s.receivers(100).is_empty());
        assert_eq!(s.get(&u(ALICE), &d("A1"), 100), None);
        assert_eq!(s.prune(100), vec![(u(ALICE), d("A1"))]);
        assert!(s.is_empty());
    }

    #[test]
    fn already_expired_grant_is_absent() {
        let mut s = ConsentSet::new();
        let ch = s.insert(u(ALICE), d("A1"), c(true, false, Some(5)), 10);
        assert_eq!(
            ch,
            ConsentChange::AlreadyExpired {
                user: u(ALICE),
                device: d("A1")
            }
        );
        assert!(s.is_empty());
    }

    #[test]
    fn an_expired_or_empty_grant_replaces_the_earlier_one() {
        let mut s = ConsentSet::new();
        grant(&mut s, ALICE, "A1", c(true, true, None), 0);
        let ch = s.insert(u(ALICE), d("A1"), c(true, true, Some(5)), 10);
        assert!(matches!(ch, ConsentChange::AlreadyExpired { .. }));
        assert!(!s.may_receive(&u(ALICE), &d("A1"), 11));
        assert!(s.is_empty());

        grant(&mut s, ALICE, "A1", c(true, true, None), 20);
        let ch = s.insert(u(ALICE), d("A1"), c(false, false, None), 21);
        assert!(matches!(ch, ConsentChange::AlreadyExpired { .. }));
        assert!(s.is_empty());
    }

    #[test]
    fn latest_grant_wins() {
        let mut s = ConsentSet::new();
        grant(&mut s, ALICE, "A1", c(true, true, None), 0);
        grant(&mut s, ALICE, "A1", c(true, false, Some(50)), 1);
        assert_eq!(s.len(), 1);
        assert!(!s.may_talk(&u(ALICE), &d("A1"), 2));
        assert!(s.may_receive(&u(ALICE), &d("A1"), 2));
        assert_eq!(s.next_expiry(2), Some(50));
    }

    #[test]
    fn receivers_and_next_expiry_across_devices() {
        let mut s = ConsentSet::new();
        grant(&mut s, ALICE, "A1", c(true, false, Some(300)), 0);
        grant(&mut s, ALICE, "A2", c(true, true, Some(200)), 0);
        grant(&mut s, BOB, "B1", c(true, false, None), 0);
        grant(&mut s, "@carol:c.org", "C1", c(true, false, Some(100)), 0);
        assert_eq!(s.receivers(0).len(), 4);
        assert_eq!(s.next_expiry(0), Some(100));
        assert_eq!(s.next_expiry(100), Some(200));
        assert_eq!(s.next_expiry(250), Some(300));
        assert_eq!(s.next_expiry(300), None);
        assert_eq!(
            s.receivers(250),
            vec![(u(ALICE), d("A1")), (u(BOB), d("B1"))]
        );
    }

    #[test]
    fn explicit_revoke_and_remove_user() {
        let mut s = ConsentSet::new();
        grant(&mut s, ALICE, "A1", c(true, false, None), 0);
        grant(&mut s, ALICE, "A2", c(true, false, None), 0);
        grant(&mut s, BOB, "B1", c(true, false, None), 0);
        assert!(s.revoke(&u(ALICE), &d("A1")));
        assert!(!s.revoke(&u(ALICE), &d("A1")));
        assert_eq!(s.remove_user(&u(ALICE)), 1);
        assert_eq!(s.receivers(0), vec![(u(BOB), d("B1"))]);
    }
}
