//! Unit tests of the room machine's admission rules, one (or a few) per
//! rule, with time passed in.

use super::*;
use std::collections::BTreeSet;

use crate::{ChunkHeader, Consent, ConsentChange};

const T0: u64 = 1_700_000_000_000;

fn room() -> RoomId {
    RoomId::parse("!walkie:a.org").unwrap()
}
fn user(s: &str) -> UserId {
    UserId::parse(&format!("@{s}:a.org")).unwrap()
}
fn dev(s: &str) -> DeviceId {
    DeviceId::parse(&s.to_uppercase()).unwrap()
}
fn sid(s: &str) -> SessionId {
    SessionId::parse(&format!("{s:-<16}")).unwrap()
}

fn counter() -> SessionIdSource {
    let mut n = 0u32;
    Box::new(move || {
        n += 1;
        SessionId::parse(&format!("me-session-{n:06}")).unwrap()
    })
}

/// `who` (a user whose device id is its name in capitals) consents from
/// `from` until `until` (`None`: until revoked), talking if `talk`.
fn grant(set: &mut ConsentSet, who: &str, talk: bool, until: Option<u64>) {
    let consent = Consent {
        receive: true,
        talk,
        expires_ts: until,
    };
    let change = set.insert(user(who), dev(who), consent, T0);
    assert!(
        matches!(change, ConsentChange::Granted { .. }),
        "{change:?}"
    );
}

fn group() -> WalkieGroup {
    WalkieGroup {
        max_talk_ms: 5_000,
        ..WalkieGroup::default()
    }
}

/// Everyone the tests name, all joined.
fn everyone() -> BTreeSet<UserId> {
    ["me", "bob", "carol", "dave", "eve"]
        .into_iter()
        .map(user)
        .collect()
}

fn members(names: &[&str]) -> BTreeSet<UserId> {
    names.iter().map(|n| user(n)).collect()
}

/// `me` in a walkie group with `consents`, everyone joined.
fn machine_with(consents: ConsentSet) -> RoomMachine {
    RoomMachine::new(
        room(),
        user("me"),
        dev("me"),
        Some(group()),
        consents,
        everyone(),
        counter(),
    )
}

/// `me` in a walkie group where `me`, `bob` and `carol` consent to talk.
fn machine() -> RoomMachine {
    let mut consents = ConsentSet::new();
    for who in ["me", "bob", "carol"] {
        grant(&mut consents, who, true, None);
    }
    machine_with(consents)
}

fn chunk(who: &str, session: &str, seq: u32, start: u64, ts: u64) -> ValidatedChunk {
    let header = ChunkHeader {
        session_id: sid(session),
        seq,
        start_ts: start,
        ts,
        end: false,
    };
    let content = header.to_content(&room(), &[vec![1, 2, 3]]).unwrap();
    ValidatedChunk::parse(&content, &user(who), &dev(who)).unwrap()
}

fn events(m: &mut RoomMachine) -> Vec<RoomEvent> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn transmits(m: &mut RoomMachine, now: u64) -> Vec<Transmit> {
    std::iter::from_fn(|| m.poll_transmit(now)).collect()
}

#[test]
fn a_room_without_a_group_marker_drops_audio_and_refuses_presses() {
    let mut m = machine();
    let consents = m.consents().clone();
    m.handle_state(None, consents, everyone(), T0);
    assert!(!m.is_group());
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0),
        Err(Dropped::NotAGroup)
    );
    assert_eq!(m.press(T0), Err(PressError::NotAGroup));
    assert!(transmits(&mut m, T0).is_empty());
}

#[test]
fn a_marker_that_goes_away_mid_talk_ends_our_talk() {
    let mut m = machine();
    let session = m.press(T0).unwrap();
    let consents = m.consents().clone();
    m.handle_state(None, consents, everyone(), T0 + 100);
    let sent = transmits(&mut m, T0 + 100);
    assert!(sent.last().is_some_and(|t| t.header.end), "{sent:?}");
    assert_eq!(
        m.send_audio(&session, vec![vec![1]], T0 + 120, T0 + 120),
        Err(TalkStopped::Other(StopReason::Released))
    );
}

#[test]
fn audio_is_admitted_only_while_this_device_consents_to_receive() {
    let mut consents = ConsentSet::new();
    grant(&mut consents, "me", false, Some(T0 + 1_000));
    grant(&mut consents, "bob", true, None);
    let mut m = machine_with(consents);
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0 + 10),
        Ok(())
    );
    // One millisecond after our consent expired: dropped.
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 1, T0, T0 + 1_000), T0 + 1_000),
        Err(Dropped::NotReceiving)
    );
}

#[test]
fn audio_needs_the_senders_talk_consent_at_the_claims_start() {
    let mut consents = ConsentSet::new();
    grant(&mut consents, "me", true, None);
    // bob may talk until T0 + 500; dave may only receive.
    grant(&mut consents, "bob", true, Some(T0 + 500));
    grant(&mut consents, "dave", false, None);
    let mut m = machine_with(consents);
    assert_eq!(
        m.handle_chunk(chunk("dave", "d", 0, T0, T0), T0),
        Err(Dropped::NoTalkConsent)
    );
    // A talk that began with consent runs on after the consent ends…
    assert_eq!(m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0), Ok(()));
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 1, T0, T0 + 600), T0 + 600),
        Ok(())
    );
    // …but a claim that starts after it does not count.
    assert_eq!(
        m.handle_chunk(chunk("bob", "late", 0, T0 + 600, T0 + 600), T0 + 600),
        Err(Dropped::NoTalkConsent)
    );
    // An unknown device never counts.
    assert_eq!(
        m.handle_chunk(chunk("eve", "e", 0, T0, T0), T0),
        Err(Dropped::NoTalkConsent)
    );
}

#[test]
fn the_holders_audio_is_played_with_its_frame_index() {
    let mut m = machine();
    m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0 + 20)
        .unwrap();
    m.handle_chunk(chunk("bob", "b", 1, T0, T0 + 100), T0 + 120)
        .unwrap();
    let evs = events(&mut m);
    assert!(
        matches!(&evs[0], RoomEvent::TalkStarted { claim } if claim.user_id == user("bob")),
        "{evs:?}"
    );
    let indices: Vec<u64> = evs
        .iter()
        .filter_map(|e| match e {
            RoomEvent::Audio { frame_index, .. } => Some(*frame_index),
            _ => None,
        })
        .collect();
    assert_eq!(indices, vec![0, 5]);
}

#[test]
fn a_second_talker_is_tracked_not_played() {
    let mut m = machine();
    m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0 + 20)
        .unwrap();
    events(&mut m);
    m.handle_chunk(chunk("carol", "c", 0, T0 + 50, T0 + 50), T0 + 70)
        .unwrap();
    assert!(
        events(&mut m)
            .iter()
            .all(|e| !matches!(e, RoomEvent::Audio { .. })),
        "carol's audio must not play while bob holds the floor"
    );
}

#[test]
fn a_replayed_message_is_dropped_by_the_floor() {
    let mut m = machine();
    m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0).unwrap();
    assert!(matches!(
        m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0 + 10),
        Err(Dropped::Floor(Rejection::Duplicate(0)))
    ));
}

#[test]
fn pressing_needs_talk_consent_now() {
    let mut consents = ConsentSet::new();
    grant(&mut consents, "me", true, Some(T0 + 1_000));
    let mut m = machine_with(consents);
    let session = m.press(T0 + 999).unwrap();
    m.release(&session, T0 + 999);
    assert_eq!(m.press(T0 + 1_000), Err(PressError::NoConsent));
}

#[test]
fn pressing_while_someone_holds_the_floor_is_busy_and_sends_nothing() {
    let mut m = machine();
    m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0 + 20)
        .unwrap();
    transmits(&mut m, T0);
    match m.press(T0 + 100) {
        Err(PressError::Busy { holder }) => assert_eq!(holder.user_id, user("bob")),
        other => panic!("expected busy, got {other:?}"),
    }
    assert!(transmits(&mut m, T0 + 100).is_empty());
}

#[test]
fn our_messages_go_to_the_devices_that_consent_now_not_to_us() {
    let mut consents = ConsentSet::new();
    grant(&mut consents, "me", true, None);
    grant(&mut consents, "bob", false, None);
    grant(&mut consents, "carol", false, Some(T0 + 500));
    let mut m = machine_with(consents);
    let session = m.press(T0).unwrap();
    let claim = transmits(&mut m, T0);
    assert_eq!(claim.len(), 1);
    assert_eq!(claim[0].header.seq, 0);
    assert_eq!(
        claim[0].to,
        vec![(user("bob"), dev("bob")), (user("carol"), dev("carol"))]
    );
    m.send_audio(&session, vec![vec![7]], T0 + 600, T0 + 600)
        .unwrap();
    let audio = transmits(&mut m, T0 + 600);
    assert_eq!(audio[0].frames, vec![vec![7]]);
    assert_eq!(audio[0].to, vec![(user("bob"), dev("bob"))]);
}

#[test]
fn a_talk_is_capped_at_max_talk_ms() {
    let mut m = machine();
    let session = m.press(T0).unwrap();
    m.send_audio(&session, vec![vec![1]], T0 + 4_900, T0 + 4_900)
        .unwrap();
    m.handle_timeout(T0 + 5_000);
    assert!(events(&mut m).iter().any(|e| matches!(
        e,
        RoomEvent::TransmitStopped {
            reason: StopReason::MaxTalk,
            ..
        }
    )));
    assert_eq!(
        m.send_audio(&session, vec![vec![1]], T0 + 5_000, T0 + 5_010),
        Err(TalkStopped::Other(StopReason::MaxTalk))
    );
    assert!(transmits(&mut m, T0 + 5_010)
        .last()
        .is_some_and(|t| t.header.end));
}

#[test]
fn an_earlier_claim_supersedes_our_talk() {
    let mut m = machine();
    let session = m.press(T0 + 10).unwrap();
    // bob pressed 10 ms before us; his claim arrives after ours went out.
    m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0 + 40)
        .unwrap();
    let stopped = m.send_audio(&session, vec![vec![1]], T0 + 40, T0 + 40);
    assert!(
        matches!(&stopped, Err(TalkStopped::LostTo(c)) if c.user_id == user("bob")),
        "{stopped:?}"
    );
    let evs = events(&mut m);
    assert!(
        evs.iter()
            .any(|e| matches!(e, RoomEvent::TalkStarted { claim } if claim.user_id == user("bob"))),
        "the winner is announced for playback: {evs:?}"
    );
}

#[test]
fn revoking_our_consent_stops_our_talk_and_our_receiving() {
    let mut m = machine();
    let session = m.press(T0).unwrap();
    m.revoke_own_consent(T0 + 100);
    assert_eq!(
        m.send_audio(&session, vec![vec![1]], T0 + 100, T0 + 100),
        Err(TalkStopped::Other(StopReason::Revoked))
    );
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 0, T0 + 200, T0 + 200), T0 + 200),
        Err(Dropped::NotReceiving)
    );
}

#[test]
fn new_settings_from_state_apply_to_the_next_talk() {
    let mut m = machine();
    let consents = m.consents().clone();
    let longer = WalkieGroup {
        max_talk_ms: 20_000,
        ..WalkieGroup::default()
    };
    m.handle_state(Some(longer.clone()), consents, everyone(), T0);
    assert_eq!(m.group(), Some(&longer));
    let session = m.press(T0).unwrap();
    m.send_audio(&session, vec![vec![1]], T0 + 10_000, T0 + 10_000)
        .unwrap();
}

#[test]
fn our_consent_gone_from_the_room_state_stops_our_talk() {
    let mut m = machine();
    let session = m.press(T0).unwrap();
    let mut consents = ConsentSet::new();
    grant(&mut consents, "bob", true, None);
    m.handle_state(Some(group()), consents, everyone(), T0 + 100);
    assert_eq!(
        m.send_audio(&session, vec![vec![1]], T0 + 120, T0 + 120),
        Err(TalkStopped::Other(StopReason::Revoked))
    );
}

#[test]
fn a_consent_of_a_user_who_is_not_joined_grants_nothing() {
    let mut m = machine();
    let consents = m.consents().clone();
    // carol consents but is invited, not joined (or was never a member).
    m.handle_state(Some(group()), consents, members(&["me", "bob"]), T0);
    assert_eq!(
        m.handle_chunk(chunk("carol", "c", 0, T0, T0), T0),
        Err(Dropped::NotAMember)
    );
    m.press(T0).unwrap();
    let claim = transmits(&mut m, T0);
    assert_eq!(claim[0].to, vec![(user("bob"), dev("bob"))]);
}

#[test]
fn a_member_who_is_kicked_is_no_longer_sent_to_or_heard_and_their_talk_ends() {
    let mut m = machine();
    m.handle_chunk(chunk("bob", "b", 0, T0, T0), T0).unwrap();
    events(&mut m);
    let consents = m.consents().clone();
    m.handle_state(Some(group()), consents, members(&["me", "carol"]), T0 + 100);
    let evs = events(&mut m);
    assert!(
        evs.iter().any(|e| matches!(
            e,
            RoomEvent::TalkEnded { claim, reason: crate::floor::EndReason::Revoked }
                if claim.user_id == user("bob")
        )),
        "bob's talk must end at once: {evs:?}"
    );
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 1, T0, T0 + 120), T0 + 120),
        Err(Dropped::NotAMember)
    );
    m.press(T0 + 200).unwrap();
    let claim = transmits(&mut m, T0 + 200);
    assert_eq!(claim[0].to, vec![(user("carol"), dev("carol"))]);
}

#[test]
fn while_we_are_not_joined_we_neither_talk_nor_receive() {
    let mut m = machine();
    let session = m.press(T0).unwrap();
    let consents = m.consents().clone();
    m.handle_state(
        Some(group()),
        consents,
        members(&["bob", "carol"]),
        T0 + 100,
    );
    assert_eq!(
        m.send_audio(&session, vec![vec![1]], T0 + 120, T0 + 120),
        Err(TalkStopped::Other(StopReason::Revoked))
    );
    assert_eq!(
        m.handle_chunk(chunk("bob", "b", 0, T0 + 200, T0 + 200), T0 + 200),
        Err(Dropped::NotReceiving)
    );
    assert_eq!(m.press(T0 + 300), Err(PressError::NoConsent));
}
