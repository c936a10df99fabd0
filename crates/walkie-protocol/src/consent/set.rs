//! Consent of one room: which devices may receive and which may talk, and
//! until when.
//!
//! This module owns the rules applied to `org.matrix.msc4002.consent` state
//! events (parsed by the parent module): consent is per device; the state key
//! `_@user:server_DEVICE` must name the event's sender; `{}` revokes; an
//! `expires_ts` in the past means absent (no server round trip is needed for
//! expiry); `talk` implies `receive`. Time is passed in (ms since the Unix
//! epoch, local clock). It does no I/O: the engine feeds it state events and
//! asks it who to send audio to ([`ConsentSet::receivers`]) and whether a
//! claim may be honoured ([`ConsentSet::may_talk`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Consent, ConsentContent, ConsentStateKey, DeviceId, ProtocolError, UserId};

/// Why a consent state event was not applied as a grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The state key is not `_@user:server_DEVICE`; nothing changed.
    #[error("not a consent state key: {0}")]
    StateKey(ProtocolError),
    /// The state key names another user than the sender. It grants nothing,
    /// and the device it names counts as not consenting: this event is now
    /// the room's current state for that key, so the genuine one is gone
    /// for every client that syncs the room afresh.
    #[error("state key {state_key:?} names {named}, but {sender} sent it: ignored")]
    ForeignStateKey {
        state_key: String,
        named: UserId,
        sender: UserId,
    },
    /// The content is invalid; the device counts as not consenting.
    #[error("invalid consent from {user} / {device}: {error}")]
    Content {
        user: UserId,
        device: DeviceId,
        error: ProtocolError,
    },
}

/// What an applied consent event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentChange {
    /// The device now consents (until `consent.expires_ts`, if any).
    Granted {
        user: UserId,
        device: DeviceId,
        consent: Consent,
    },
    /// `{}` (or a grant of nothing): the device no longer consents.
    Revoked { user: UserId, device: DeviceId },
    /// A grant whose `expires_ts` is already past: treated as absent.
    AlreadyExpired { user: UserId, device: DeviceId },
}

/// The consents of one room, keyed by (user, device). Only the latest state
/// event per device counts; expired entries behave as absent.
#[derive(Debug, Clone, Default)]
pub struct ConsentSet {
    entries: BTreeMap<(UserId, DeviceId), Consent>,
}

impl ConsentSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one `org.matrix.msc4002.consent` state event (from the room
    /// state at start-up, or from the timeline, in order). `sender` is the
    /// event's sender as the homeserver reported it.
    pub fn apply(
        &mut self,
        state_key: &str,
        sender: &UserId,
        content: &Value,
        now: u64,
    ) -> Result<ConsentChange, ConsentError> {
        let key = ConsentStateKey::parse(state_key).map_err(ConsentError::StateKey)?;
        let (user, device) = (key.user_id, key.device_id);
        if &user != sender {
            self.entries.remove(&(user.clone(), device));
            return Err(ConsentError::ForeignStateKey {
                state_key: state_key.to_owned(),
                named: user,
                sender: sender.clone(),
            });
        }
        let parsed = ConsentContent::parse(content);
        self.entries.remove(&(user.clone(), device.clone()));
        match parsed {
            Err(error) => Err(ConsentError::Content {
                user,
                device,
                error,
            }),
            Ok(ConsentContent::Revoked) => Ok(ConsentChange::Revoked { user, device }),
            Ok(ConsentContent::Granted(consent)) if !consent.is_active(now) => {
                Ok(ConsentChange::AlreadyExpired { user, device })
            }
            Ok(ConsentContent::Granted(consent)) => {
                self.entries.insert((user.clone(), device.clone()), consent);
                Ok(ConsentChange::Granted {
                    user,
                    device,
                    consent,
                })
            }
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
    use serde_json::json;

    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }
    fn d(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }
    const ALICE: &str = "@alice:a.org";
    const KEY_A1: &str = "_@alice:a.org_A1";

    fn grant(set: &mut ConsentSet, key: &str, sender: &str, content: Value, now: u64) {
        set.apply(key, &u(sender), &content, now).unwrap();
    }

    #[test]
    fn grant_then_query() {
        let mut s = ConsentSet::new();
        let ch = s
            .apply(
                KEY_A1,
                &u(ALICE),
                &json!({"receive": true, "talk": true}),
                0,
            )
            .unwrap();
        assert!(matches!(ch, ConsentChange::Granted { .. }));
        assert!(s.may_talk(&u(ALICE), &d("A1"), 10));
        assert!(s.may_receive(&u(ALICE), &d("A1"), 10));
        assert!(!s.may_talk(&u(ALICE), &d("A2"), 10), "per device");
        assert_eq!(s.receivers(10), vec![(u(ALICE), d("A1"))]);
        assert_eq!(s.next_expiry(10), None, "permanent");
    }

    #[test]
    fn receive_only_may_not_talk() {
        let mut s = ConsentSet::new();
        grant(&mut s, KEY_A1, ALICE, json!({"receive": true}), 0);
        assert!(!s.may_talk(&u(ALICE), &d("A1"), 1));
        assert!(s.may_receive(&u(ALICE), &d("A1"), 1));
    }

    #[test]
    fn talk_without_receive_is_refused_and_clears() {
        let mut s = ConsentSet::new();
        grant(&mut s, KEY_A1, ALICE, json!({"receive": true}), 0);
        let e = s
            .apply(KEY_A1, &u(ALICE), &json!({"talk": true}), 1)
            .unwrap_err();
        assert!(matches!(
            e,
            ConsentError::Content {
                error: ProtocolError::TalkWithoutReceive,
                ..
            }
        ));
        assert!(s.receivers(2).is_empty());
    }

    #[test]
    fn expiry_is_absence() {
        let mut s = ConsentSet::new();
        grant(
            &mut s,
            KEY_A1,
            ALICE,
            json!({"receive": true, "talk": true, "expires_ts": 100}),
            0,
        );
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
        let ch = s
            .apply(
                KEY_A1,
                &u(ALICE),
                &json!({"receive": true, "expires_ts": 5}),
                10,
            )
            .unwrap();
        assert!(matches!(ch, ConsentChange::AlreadyExpired { .. }));
        assert!(s.is_empty());
    }

    #[test]
    fn empty_content_revokes() {
        let mut s = ConsentSet::new();
        grant(
            &mut s,
            KEY_A1,
            ALICE,
            json!({"receive": true, "talk": true}),
            0,
        );
        let ch = s.apply(KEY_A1, &u(ALICE), &json!({}), 1).unwrap();
        assert_eq!(
            ch,
            ConsentChange::Revoked {
                user: u(ALICE),
                device: d("A1")
            }
        );
        assert!(!s.may_receive(&u(ALICE), &d("A1"), 2));
    }

    #[test]
    fn latest_event_wins() {
        let mut s = ConsentSet::new();
        grant(
            &mut s,
            KEY_A1,
            ALICE,
            json!({"receive": true, "talk": true}),
            0,
        );
        grant(
            &mut s,
            KEY_A1,
            ALICE,
            json!({"receive": true, "expires_ts": 50}),
            1,
        );
        assert!(!s.may_talk(&u(ALICE), &d("A1"), 2));
        assert_eq!(s.next_expiry(2), Some(50));
    }

    #[test]
    fn foreign_state_key_grants_nothing_and_clears() {
        let mut s = ConsentSet::new();
        grant(&mut s, KEY_A1, ALICE, json!({"receive": true}), 0);
        let e = s
            .apply(
                KEY_A1,
                &u("@mallory:m.org"),
                &json!({"receive": true, "talk": true}),
                1,
            )
            .unwrap_err();
        assert!(matches!(e, ConsentError::ForeignStateKey { .. }));
        assert!(e.to_string().contains("@mallory:m.org"));
        assert!(!s.may_receive(&u(ALICE), &d("A1"), 2));
        assert!(!s.may_talk(&u("@mallory:m.org"), &d("A1"), 2));
        assert!(s.is_empty());
    }

    #[test]
    fn bad_state_key_changes_nothing() {
        let mut s = ConsentSet::new();
        grant(&mut s, KEY_A1, ALICE, json!({"receive": true}), 0);
        for key in ["", "@alice:a.org_A1", "_@alice:a.org", "junk"] {
            let e = s
                .apply(key, &u(ALICE), &json!({"receive": true}), 1)
                .unwrap_err();
            assert!(matches!(e, ConsentError::StateKey(_)), "{key}");
        }
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn malformed_content_clears() {
        let mut s = ConsentSet::new();
        grant(&mut s, KEY_A1, ALICE, json!({"receive": true}), 0);
        let e = s
            .apply(KEY_A1, &u(ALICE), &json!({"receive": "please"}), 1)
            .unwrap_err();
        assert!(matches!(e, ConsentError::Content { .. }));
        assert!(s.is_empty());
    }

    #[test]
    fn receivers_and_next_expiry_across_devices() {
        let mut s = ConsentSet::new();
        grant(
            &mut s,
            KEY_A1,
            ALICE,
            json!({"receive": true, "expires_ts": 300}),
            0,
        );
        grant(
            &mut s,
            "_@alice:a.org_A2",
            ALICE,
            json!({"receive": true, "talk": true, "expires_ts": 200}),
            0,
        );
        grant(
            &mut s,
            "_@bob:b.org_B1",
            "@bob:b.org",
            json!({"receive": true}),
            0,
        );
        grant(
            &mut s,
            "_@carol:c.org_C1",
            "@carol:c.org",
            json!({"receive": true, "expires_ts": 100}),
            0,
        );
        assert_eq!(s.receivers(0).len(), 4);
        assert_eq!(s.next_expiry(0), Some(100));
        assert_eq!(s.next_expiry(100), Some(200));
        assert_eq!(s.next_expiry(250), Some(300));
        assert_eq!(s.next_expiry(300), None);
        assert_eq!(
            s.receivers(250),
            vec![(u(ALICE), d("A1")), (u("@bob:b.org"), d("B1"))]
        );
    }

    #[test]
    fn explicit_revoke_and_remove_user() {
        let mut s = ConsentSet::new();
        grant(&mut s, KEY_A1, ALICE, json!({"receive": true}), 0);
        grant(
            &mut s,
            "_@alice:a.org_A2",
            ALICE,
            json!({"receive": true}),
            0,
        );
        grant(
            &mut s,
            "_@bob:b.org_B1",
            "@bob:b.org",
            json!({"receive": true}),
            0,
        );
        assert!(s.revoke(&u(ALICE), &d("A1")));
        assert!(!s.revoke(&u(ALICE), &d("A1")));
        assert_eq!(s.remove_user(&u(ALICE)), 1);
        assert_eq!(s.receivers(0), vec![(u("@bob:b.org"), d("B1"))]);
    }
}
