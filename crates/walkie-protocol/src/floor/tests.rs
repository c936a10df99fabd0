//! Unit tests of the floor rules, one (or a few) per rule.

use super::*;
use crate::{ChunkHeader, DeviceId, RoomId, SessionId, UserId, ValidatedChunk};

const T0: u64 = 1_700_000_000_000;
const CFG: FloorConfig = FloorConfig {
    lease_ms: 3_000,
    max_talk_ms: 60_000,
};

fn room() -> RoomId {
    RoomId::parse("!walkie:a.org").unwrap()
}
fn user(s: &str) -> UserId {
    UserId::parse(&format!("@{s}:a.org")).unwrap()
}
fn dev(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}
fn sid(s: &str) -> SessionId {
    SessionId::parse(&format!("{s:-<16}")).unwrap()
}

fn counter(prefix: &'static str) -> SessionIdSource {
    let mut n = 0u32;
    Box::new(move || {
        n += 1;
        SessionId::parse(&format!("{prefix}-session-{n:06}")).unwrap()
    })
}

/// A floor for `@me:a.org` / `ME`.
fn me() -> Floor {
    Floor::new(room(), user("me"), dev("ME"), CFG, counter("me"))
}

#[allow(clippy::too_many_arguments)]
fn chunk_in(
    room: &RoomId,
    who: &str,
    session: &str,
    seq: u32,
    start: u64,
    ts: u64,
    end: bool,
) -> ValidatedChunk {
    let h = ChunkHeader {
        session_id: sid(session),
        seq,
        start_ts: start,
        ts,
        end,
    };
    let content = h.to_content(room, &[vec![1, 2, 3]]).unwrap();
    ValidatedChunk::parse(&content, &user(who), &dev(&who.to_uppercase())).unwrap()
}

fn chunk(who: &str, session: &str, seq: u32, start: u64, ts: u64, end: bool) -> ValidatedChunk {
    chunk_in(&room(), who, session, seq, start, ts, end)
}

fn claim(who: &str, session: &str, start: u64) -> Claim {
    Claim {
        start_ts: start,
        user_id: user(who),
        device_id: dev(&who.to_uppercase()),
        session_id: sid(session),
    }
}

fn events(f: &mut Floor) -> Vec<FloorEvent> {
    std::iter::from_fn(|| f.poll_event()).collect()
}
fn transmits(f: &mut Floor) -> Vec<ChunkHeader> {
    std::iter::from_fn(|| f.poll_transmit()).collect()
}

#[test]
fn press_on_free_floor_claims_before_audio() {
    let mut f = me();
    f.press(T0);
    let ev = events(&mut f);
    assert_eq!(ev.len(), 1);
    let FloorEvent::StartTransmitting {
        session_id,
        start_ts,
    } = &ev[0]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(*start_ts, T0);
    let tx = transmits(&mut f);
    assert_eq!(tx.len(), 1);
    assert_eq!(
        (tx[0].seq, tx[0].start_ts, tx[0].ts, tx[0].end),
        (0, T0, T0, false)
    );
    assert_eq!(&tx[0].session_id, session_id);
    assert!(f.holder_is_local());
    assert_eq!(f.transmitting().map(|c| c.start_ts), Some(T0));
    // the claim header makes a valid frameless message
    assert!(tx[0].to_content(&room(), &[]).is_ok());
    // pressing again is a no-op
    f.press(T0 + 5);
    assert!(events(&mut f).is_empty());
    assert!(transmits(&mut f).is_empty());
}

#[test]
fn audio_headers_count_up_and_keepalive_fills_silence() {
    let mut f = me();
    f.press(T0);
    transmits(&mut f);
    let h1 = f.next_audio_header(T0 + 10, T0 + 110).unwrap();
    let h2 = f.next_audio_header(T0 + 110, T0 + 210).unwrap();
    assert_eq!((h1.seq, h2.seq), (1, 2));
    assert_eq!((h1.ts, h2.ts), (T0 + 10, T0 + 110));
    // ts before the claim is clamped to start_ts
    assert_eq!(f.next_audio_header(T0 - 500, T0 + 220).unwrap().ts, T0);
    // then silence (e.g. capture device still starting): keep-alive
    let ka = T0 + 220 + CFG.keepalive_ms();
    assert_eq!(f.poll_timeout(), Some(ka));
    f.handle_timeout(ka - 1);
    assert!(transmits(&mut f).is_empty());
    f.handle_timeout(ka);
    let tx = transmits(&mut f);
    assert_eq!(tx.len(), 1);
    assert_eq!((tx[0].seq, tx[0].ts, tx[0].end), (4, ka, false));
    assert_eq!(f.poll_timeout(), Some(ka + CFG.keepalive_ms()));
}

#[test]
fn release_sends_end_and_frees() {
    let mut f = me();
    f.press(T0);
    events(&mut f);
    transmits(&mut f);
    f.next_audio_header(T0, T0 + 100);
    f.release(T0 + 150);
    let ev = events(&mut f);
    assert!(matches!(
        &ev[..],
        [
            FloorEvent::StopTransmitting {
                reason: StopReason::Released,
                ..
            },
            FloorEvent::Free
        ]
    ));
    let tx = transmits(&mut f);
    assert_eq!((tx[0].seq, tx[0].ts, tx[0].end), (2, T0 + 150, true));
    assert!(f.holder().is_none());
    assert!(f.next_audio_header(T0 + 160, T0 + 200).is_none());
    assert_eq!(f.poll_timeout(), None);
    // release when idle is a no-op
    f.release(T0 + 300);
    assert!(events(&mut f).is_empty());
}

#[test]
fn remote_claim_renew_and_end() {
    let mut f = me();
    let v = f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0 + 50);
    assert_eq!(v, ChunkVerdict::Play);
    assert_eq!(
        events(&mut f),
        vec![FloorEvent::Holder {
            claim: claim("bob", "b1", T0)
        }]
    );
    assert_eq!(f.poll_timeout(), Some(T0 + 50 + CFG.lease_ms));
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 1, T0, T0 + 100, false), T0 + 2_000),
        ChunkVerdict::Play
    );
    assert_eq!(f.poll_timeout(), Some(T0 + 2_000 + CFG.lease_ms), "renewed");
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 2, T0, T0 + 200, true), T0 + 2_100),
        ChunkVerdict::Play,
        "the final message's frames are still played"
    );
    assert_eq!(
        events(&mut f),
        vec![
            FloorEvent::TalkEnded {
                claim: claim("bob", "b1", T0),
                reason: EndReason::Released
            },
            FloorEvent::Free
        ]
    );
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn silent_holder_loses_floor_after_lease_and_stays_ended() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    events(&mut f);
    let deadline = f.poll_timeout().unwrap();
    assert_eq!(deadline, T0 + CFG.lease_ms);
    f.handle_timeout(deadline - 1);
    assert!(events(&mut f).is_empty());
    f.handle_timeout(deadline);
    assert_eq!(
        events(&mut f),
        vec![
            FloorEvent::TalkEnded {
                claim: claim("bob", "b1", T0),
                reason: EndReason::LeaseExpired
            },
            FloorEvent::Free
        ]
    );
    // a message of the expired session arriving later is never accepted
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 5, T0, T0 + 3_500, false), T0 + 3_600),
        ChunkVerdict::Ignored(Rejection::Ended)
    );
    assert!(f.holder().is_none());
}

#[test]
fn lease_expiry_is_applied_by_any_input_not_only_timeouts() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    events(&mut f);
    // engine was late calling handle_timeout; a press after the lease works
    f.press(T0 + CFG.lease_ms + 10);
    let ev = events(&mut f);
    assert!(matches!(ev[0], FloorEvent::TalkEnded { .. }), "{ev:?}");
    assert!(ev
        .iter()
        .any(|e| matches!(e, FloorEvent::StartTransmitting { .. })));
}

#[test]
fn press_while_busy_is_refused() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    events(&mut f);
    f.press(T0 + 100);
    assert_eq!(
        events(&mut f),
        vec![FloorEvent::Busy {
            holder: claim("bob", "b1", T0)
        }]
    );
    assert!(transmits(&mut f).is_empty());
    assert!(!f.is_transmitting());
    assert!(f.next_audio_header(T0 + 100, T0 + 120).is_none());
}

#[test]
fn local_talker_stops_for_an_earlier_live_claim() {
    let mut f = me();
    f.press(T0 + 10);
    events(&mut f);
    transmits(&mut f);
    // bob pressed 10 ms earlier; his claim arrives a second later
    let v = f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0 + 1_010);
    assert_eq!(v, ChunkVerdict::Play);
    let bob = claim("bob", "b1", T0);
    let ev = events(&mut f);
    assert!(
        matches!(
            &ev[..],
            [
                FloorEvent::StopTransmitting { reason: StopReason::LostTo(w), .. },
                FloorEvent::Busy { holder },
                FloorEvent::Holder { claim: c },
            ] if *w == bob && *holder == bob && *c == bob
        ),
        "{ev:?}"
    );
    let tx = transmits(&mut f);
    assert!(tx.last().unwrap().end, "the loser sends end: true");
    assert_eq!(tx.iter().filter(|h| h.end).count(), 1);
    assert!(!f.is_transmitting());
}

#[test]
fn local_talker_keeps_floor_against_a_later_claim() {
    let mut f = me();
    f.press(T0);
    events(&mut f);
    let v = f.handle_chunk(&chunk("bob", "b1", 0, T0 + 10, T0 + 10, false), T0 + 900);
    assert_eq!(v, ChunkVerdict::Track);
    assert!(events(&mut f).is_empty());
    assert!(f.holder_is_local());
    // if we release while bob (who has not heard us yet) still talks, he
    // does not take over (rule 9): he pressed during our talk, so he lost,
    // and stops when our claim reaches him (with its end, if need be)
    f.release(T0 + 2_000);
    let ev = events(&mut f);
    assert!(
        matches!(
            &ev[..],
            [FloorEvent::StopTransmitting { .. }, FloorEvent::Free]
        ),
        "{ev:?}"
    );
    // bob's side of it
    let mut g = Floor::new(room(), user("bob"), dev("BOB"), CFG, counter("bob"));
    g.press(T0 + 10);
    events(&mut g);
    // only our end reaches bob (our claim, reordered, comes later)
    g.handle_chunk(&chunk("me", "m1", 99, T0, T0 + 2_000, true), T0 + 2_501);
    assert!(!g.is_transmitting(), "the loser kept talking");
    assert!(events(&mut g).iter().any(|e| matches!(
        e,
        FloorEvent::StopTransmitting {
            reason: StopReason::LostTo(_),
            ..
        }
    )));
}

#[test]
fn listener_switches_to_earlier_claim_and_back() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0 + 10, T0 + 10, false), T0 + 50);
    events(&mut f);
    // alice's earlier claim arrives later: switch to her
    f.handle_chunk(&chunk("alice", "a1", 0, T0, T0, false), T0 + 900);
    assert_eq!(
        events(&mut f),
        vec![FloorEvent::Holder {
            claim: claim("alice", "a1", T0)
        }]
    );
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 1, T0 + 10, T0 + 110, false), T0 + 950),
        ChunkVerdict::Track,
        "the loser's audio is not played"
    );
    assert_eq!(
        f.handle_chunk(&chunk("alice", "a1", 1, T0, T0 + 100, false), T0 + 960),
        ChunkVerdict::Play
    );
    // alice ends while bob (not yet aware) still talks: bob holds
    f.handle_chunk(&chunk("alice", "a1", 2, T0, T0 + 200, true), T0 + 1_000);
    assert_eq!(
        events(&mut f),
        vec![
            FloorEvent::TalkEnded {
                claim: claim("alice", "a1", T0),
                reason: EndReason::Released
            },
            FloorEvent::Holder {
                claim: claim("bob", "b1", T0 + 10)
            }
        ]
    );
}

#[test]
fn ties_break_on_user_then_device_then_session() {
    let a = claim("alice", "zzz", T0);
    let b = claim("bob", "aaa", T0);
    assert!(a < b, "user id decides equal start_ts");
    let mut c2 = a.clone();
    c2.device_id = dev("ALICE2");
    assert!(a < c2, "then device id");
    let mut c3 = a.clone();
    c3.session_id = sid("zzzz");
    assert!(a < c3, "then session id");
    assert!(claim("zed", "x", T0 - 1) < a, "start_ts first");

    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    f.handle_chunk(&chunk("alice", "a1", 0, T0, T0, false), T0 + 1);
    assert_eq!(f.holder(), Some(&claim("alice", "a1", T0)));
}

#[test]
fn an_already_ended_earlier_claim_does_not_stop_the_local_talker() {
    let mut f = me();
    f.press(T0 + 10);
    events(&mut f);
    // bob's short talk (claim and end) reaches us only after it ended;
    // reordered: the end arrives first
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 3, T0, T0 + 60, true), T0 + 1_000),
        ChunkVerdict::Track
    );
    assert!(f.is_transmitting());
    assert!(events(&mut f).is_empty());
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0 + 1_001),
        ChunkVerdict::Ignored(Rejection::Ended)
    );
    assert!(f.is_transmitting());
}

#[test]
fn freshness_bounds() {
    let mut f = me();
    let now = T0 + 20_000;
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 0, now + 1_001, now + 1_001, false), now),
        ChunkVerdict::Ignored(Rejection::FromFuture {
            ts: now + 1_001,
            now
        })
    );
    let too_old = now - MAX_AGE_MS - 1;
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b2", 0, too_old, too_old, false), now),
        ChunkVerdict::Ignored(Rejection::Stale { ts: too_old, now })
    );
    // within the bounds: honoured, even though late (5.2 s: the first
    // burst of a talk across a 1 s federation link)
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b3", 0, now - 5_200, now - 5_200, false), now),
        ChunkVerdict::Play
    );
    assert_eq!(
        f.handle_chunk(
            &chunk("carol", "c1", 0, now + 1_000, now + 1_000, false),
            now
        ),
        ChunkVerdict::Track
    );
    // a stale message of a live session does not renew its lease
    let lease = f.poll_timeout();
    let later = now + MAX_AGE_MS - 5_200 + 1;
    assert_eq!(
        f.handle_chunk(
            &chunk("bob", "b3", 1, now - 5_200, now - 5_200, false),
            later
        ),
        ChunkVerdict::Ignored(Rejection::Stale {
            ts: now - 5_200,
            now: later
        })
    );
    assert_eq!(f.poll_timeout(), lease);
}

#[test]
fn sequence_window_drops_duplicates_accepts_reordering() {
    let mut f = me();
    let c = |seq: u32| chunk("bob", "b1", seq, T0, T0 + u64::from(seq) * 50, false);
    assert_eq!(f.handle_chunk(&c(0), T0), ChunkVerdict::Play);
    assert_eq!(f.handle_chunk(&c(2), T0 + 200), ChunkVerdict::Play);
    assert_eq!(
        f.handle_chunk(&c(1), T0 + 210),
        ChunkVerdict::Play,
        "reordered"
    );
    assert_eq!(
        f.handle_chunk(&c(1), T0 + 220),
        ChunkVerdict::Ignored(Rejection::Duplicate(1))
    );
    assert_eq!(
        f.handle_chunk(&c(0), T0 + 230),
        ChunkVerdict::Ignored(Rejection::Duplicate(0))
    );
    assert_eq!(f.handle_chunk(&c(40), T0 + 2_000), ChunkVerdict::Play);
    assert_eq!(
        f.handle_chunk(&c(3), T0 + 2_010),
        ChunkVerdict::Play,
        "still inside the window"
    );
    assert_eq!(f.handle_chunk(&c(70), T0 + 4_000), ChunkVerdict::Play);
    assert_eq!(
        f.handle_chunk(&c(5), T0 + 4_010),
        ChunkVerdict::Ignored(Rejection::SeqTooOld {
            seq: 5,
            highest: 70
        })
    );
}

#[test]
fn start_ts_may_not_change_within_a_session() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 1, T0 - 500, T0, false), T0 + 10),
        ChunkVerdict::Ignored(Rejection::StartChanged)
    );
}

#[test]
fn ended_sessions_are_remembered_until_the_horizon_then_stale() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    f.handle_chunk(&chunk("bob", "b1", 1, T0, T0 + 100, true), T0 + 100);
    // a replay of the claim is refused as ended ...
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0 + 200),
        ChunkVerdict::Ignored(Rejection::Ended)
    );
    // ... and once forgotten, any message of it is stale anyway
    let after = T0 + f.memory_horizon_ms() + 1;
    let ts = T0 + CFG.max_talk_ms + MAX_TALK_SLACK_MS;
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 9, T0, ts, false), after),
        ChunkVerdict::Ignored(Rejection::Stale { ts, now: after })
    );
}

#[test]
fn remembered_sessions_are_bounded() {
    let mut f = me();
    for i in 0..(MAX_REMEMBERED + 10) as u64 {
        let s = format!("s{i:015}");
        f.handle_chunk(&chunk("bob", &s, 0, T0 + i, T0 + i, true), T0 + i);
    }
    assert!(f.remembered.len() <= MAX_REMEMBERED);
}

#[test]
fn max_talk_caps_local_talk() {
    let cfg = FloorConfig {
        lease_ms: 3_000,
        max_talk_ms: 5_000,
    };
    let mut f = Floor::new(room(), user("me"), dev("ME"), cfg, counter("me"));
    f.press(T0);
    events(&mut f);
    transmits(&mut f);
    let mut now = T0;
    while now < T0 + 4_900 {
        now += 100;
        f.next_audio_header(now - 100, now).unwrap();
    }
    assert_eq!(f.poll_timeout(), Some(T0 + 5_000));
    f.handle_timeout(T0 + 5_000);
    let ev = events(&mut f);
    assert!(matches!(
        &ev[..],
        [
            FloorEvent::StopTransmitting {
                reason: StopReason::MaxTalk,
                ..
            },
            FloorEvent::Free
        ]
    ));
    let tx = transmits(&mut f);
    assert!(tx[0].end && tx[0].ts == T0 + 5_000);
}

#[test]
fn receivers_end_a_talk_over_max_talk() {
    let mut f = me();
    let limit = CFG.max_talk_ms + MAX_TALK_SLACK_MS;
    f.handle_chunk(
        &chunk("bob", "b1", 0, T0, T0 + limit - 100, false),
        T0 + limit - 100,
    );
    events(&mut f);
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b1", 1, T0, T0 + limit, false), T0 + limit),
        ChunkVerdict::Play
    );
    assert_eq!(
        f.handle_chunk(
            &chunk("bob", "b1", 2, T0, T0 + limit + 1, false),
            T0 + limit + 1
        ),
        ChunkVerdict::Ignored(Rejection::OverMaxTalk)
    );
    assert_eq!(
        events(&mut f),
        vec![
            FloorEvent::TalkEnded {
                claim: claim("bob", "b1", T0),
                reason: EndReason::MaxTalk
            },
            FloorEvent::Free
        ]
    );
    // a new session that starts over the limit is refused outright
    assert_eq!(
        f.handle_chunk(
            &chunk("carol", "c1", 5, T0, T0 + limit + 1, false),
            T0 + limit + 1
        ),
        ChunkVerdict::Ignored(Rejection::OverMaxTalk)
    );
}

#[test]
fn newer_session_of_same_device_supersedes_older() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    events(&mut f);
    // bob's end of b1 was lost; his next talk b2 arrives
    f.handle_chunk(&chunk("bob", "b2", 0, T0 + 500, T0 + 500, false), T0 + 600);
    assert_eq!(
        events(&mut f),
        vec![
            FloorEvent::TalkEnded {
                claim: claim("bob", "b1", T0),
                reason: EndReason::Superseded
            },
            FloorEvent::Holder {
                claim: claim("bob", "b2", T0 + 500)
            }
        ]
    );
    // an older session of bob seen only now is ignored
    assert_eq!(
        f.handle_chunk(&chunk("bob", "b0", 0, T0 - 100, T0 - 100, false), T0 + 700),
        ChunkVerdict::Ignored(Rejection::Superseded)
    );
    // another device of the same user is independent
    let other = {
        let h = ChunkHeader {
            session_id: sid("bobphone"),
            seq: 0,
            start_ts: T0 - 100,
            ts: T0 - 100,
            end: false,
        };
        let content = h.to_content(&room(), &[]).unwrap();
        ValidatedChunk::parse(&content, &user("bob"), &dev("PHONE")).unwrap()
    };
    assert_eq!(f.handle_chunk(&other, T0 + 710), ChunkVerdict::Play);
}

#[test]
fn own_device_and_other_rooms_are_ignored() {
    let mut f = me();
    assert_eq!(
        f.handle_chunk(&chunk("me", "m1", 0, T0, T0, false), T0),
        ChunkVerdict::Ignored(Rejection::OwnDevice)
    );
    let other = RoomId::parse("!other:a.org").unwrap();
    assert_eq!(
        f.handle_chunk(&chunk_in(&other, "bob", "b1", 0, T0, T0, false), T0),
        ChunkVerdict::Ignored(Rejection::WrongRoom)
    );
    assert!(f.holder().is_none());
}

#[test]
fn local_start_ts_strictly_increases() {
    let mut f = me();
    f.press(T0);
    f.release(T0);
    f.press(T0); // clock did not advance (or went back)
    let starts: Vec<u64> = events(&mut f)
        .into_iter()
        .filter_map(|e| match e {
            FloorEvent::StartTransmitting { start_ts, .. } => Some(start_ts),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![T0, T0 + 1]);
}

#[test]
fn revoked_talker_loses_the_floor() {
    let mut f = me();
    f.handle_chunk(&chunk("bob", "b1", 0, T0, T0, false), T0);
    events(&mut f);
    f.handle_revoked(&user("bob"), &dev("BOB"), T0 + 10);
    assert_eq!(
        events(&mut f),
        vec![
            FloorEvent::TalkEnded {
                claim: claim("bob", "b1", T0),
                reason: EndReason::Revoked
            },
            FloorEvent::Free
        ]
    );
    f.press(T0 + 20);
    events(&mut f);
    f.handle_revoked(&user("me"), &dev("ME"), T0 + 30);
    assert!(matches!(
        events(&mut f)[0],
        FloorEvent::StopTransmitting {
            reason: StopReason::Revoked,
            ..
        }
    ));
}

#[test]
fn too_many_live_sessions_are_refused() {
    let mut f = me();
    for i in 0..MAX_LIVE_SESSIONS {
        let who = format!("u{i}");
        assert_ne!(
            f.handle_chunk(&chunk(&who, "s", 0, T0, T0, false), T0),
            ChunkVerdict::Ignored(Rejection::TooManySessions)
        );
    }
    assert_eq!(
        f.handle_chunk(&chunk("late", "s", 0, T0, T0, false), T0),
        ChunkVerdict::Ignored(Rejection::TooManySessions)
    );
}

#[test]
fn config_from_group() {
    let g = crate::WalkieGroup::default();
    let c = FloorConfig::from_group(&g);
    assert_eq!(c, FloorConfig::default());
    assert_eq!(c.lease_ms, 3_000);
    assert_eq!(c.keepalive_ms(), 750);
}

// ---------------------------------------------------------- a hostile member

/// Keeps a remote session alive with frameless keep-alives every 500 ms
/// from `from` (exclusive) to `to` (inclusive), starting at `seq`.
fn keep_alive(f: &mut Floor, who: &str, session: &str, start: u64, seq: u32, from: u64, to: u64) {
    let mut seq = seq;
    let mut t = from + 500;
    while t <= to {
        f.handle_chunk(&chunk(who, session, seq, start, t, false), t);
        seq += 1;
        t += 500;
    }
}

#[test]
fn a_back_dated_claim_after_the_window_does_not_cut_the_talker() {
    let mut f = me();
    f.press(T0);
    let mine = f.transmitting().cloned().unwrap();
    events(&mut f);
    // Mallory claims "1 ms before me", past the collision window, with a
    // fresh `ts` and keep-alives.
    let at = T0 + COLLISION_WINDOW_MS + 500;
    let v = f.handle_chunk(&chunk("mallory", "m1", 0, T0 - 1, at, false), at);
    assert_eq!(v, ChunkVerdict::Track);
    keep_alive(&mut f, "mallory", "m1", T0 - 1, 1, at, at + 2_000);
    assert!(events(&mut f).is_empty(), "the talker was disturbed");
    assert_eq!(f.transmitting(), Some(&mine));
    assert_eq!(f.holder(), Some(&mine));
    // Inside the window the same claim is a collision, and it wins (an
    // honest near-simultaneous press looks exactly like it).
    let mut g = me();
    g.press(T0);
    events(&mut g);
    let at = T0 + 300;
    g.handle_chunk(&chunk("mallory", "m1", 0, T0 - 1, at, false), at);
    assert!(!g.is_transmitting());
}

#[test]
fn a_listener_does_not_switch_to_a_late_back_dated_claim() {
    let mut f = me();
    f.handle_chunk(&chunk("alice", "a1", 0, T0, T0, false), T0 + 30);
    keep_alive(
        &mut f,
        "alice",
        "a1",
        T0,
        1,
        T0,
        T0 + COLLISION_WINDOW_MS + 500,
    );
    assert_eq!(
        events(&mut f),
        vec![FloorEvent::Holder {
            claim: claim("alice", "a1", T0)
        }]
    );
    let at = T0 + COLLISION_WINDOW_MS + 600;
    let v = f.handle_chunk(&chunk("mallory", "m1", 0, T0 - 1, at, false), at);
    assert_eq!(v, ChunkVerdict::Track);
    keep_alive(&mut f, "mallory", "m1", T0 - 1, 1, at, at + 2_000);
    assert_eq!(f.holder(), Some(&claim("alice", "a1", T0)));
    assert!(events(&mut f).is_empty());
    // alice's audio is still played
    let v = f.handle_chunk(&chunk("alice", "a1", 50, T0, at + 2_100, false), at + 2_100);
    assert_eq!(v, ChunkVerdict::Play);
    // Once alice is done, mallory's live claim is the holder (as any press
    // after hers would be).
    f.handle_chunk(&chunk("alice", "a1", 51, T0, at + 2_200, true), at + 2_200);
    assert_eq!(f.holder(), Some(&claim("mallory", "m1", T0 - 1)));
}

#[test]
fn a_claim_whose_start_is_stale_never_displaces_a_talker() {
    let mut f = me();
    f.handle_chunk(&chunk("alice", "a1", 0, T0, T0, false), T0 + 30);
    events(&mut f);
    // start_ts 6 s old, ts fresh, first seen only now
    let at = T0 + 1_000;
    let stale = at - MAX_AGE_MS - 1_000;
    f.handle_chunk(&chunk("mallory", "m1", 0, stale, at, false), at);
    assert_eq!(f.holder(), Some(&claim("alice", "a1", T0)));
    // A start_ts from the future is refused outright.
    let v = f.handle_chunk(
        &chunk(
            "mallory",
            "m2",
            0,
            at + MAX_FUTURE_MS + 1,
            at + MAX_FUTURE_MS + 1,
            false,
        ),
        at,
    );
    assert!(
        matches!(v, ChunkVerdict::Ignored(Rejection::FromFuture { .. })),
        "{v:?}"
    );
    // On a free floor a talk joined in its middle is played.
    let mut g = me();
    g.handle_chunk(&chunk("bob", "b1", 300, stale, at, false), at);
    assert_eq!(g.holder(), Some(&claim("bob", "b1", stale)));
}

#[test]
fn chained_sessions_cannot_hold_the_floor_past_max_talk() {
    let cfg = FloorConfig {
        lease_ms: 3_000,
        max_talk_ms: 2_000,
    };
    let mut f = Floor::new(room(), user("me"), dev("ME"), cfg, counter("me"));
    // A new session every second, never ended, each kept alive.
    let mut t = T0;
    let mut capped_at = None;
    for i in 0..10u32 {
        let s = format!("m{i}");
        f.handle_chunk(&chunk("mallory", &s, 0, t, t, false), t);
        keep_alive(&mut f, "mallory", &s, t, 1, t, t + 1_000);
        f.handle_timeout(t + 1_000);
        let evs = events(&mut f);
        if capped_at.is_none()
            && evs.iter().any(|e| {
                matches!(
                    e,
                    FloorEvent::TalkEnded {
                        reason: EndReason::MaxTalk,
                        ..
                    }
                )
            })
        {
            capped_at = Some(t + 1_000);
        }
        t += 1_000;
    }
    let capped_at = capped_at.expect("the hold was never capped");
    assert!(
        capped_at - T0 <= cfg.max_talk_ms + MAX_TALK_SLACK_MS + 1_000,
        "capped after {} ms",
        capped_at - T0
    );
    // The floor was free after the cap; mallory's claims in her cool-down
    // are refused, so anyone else may press.
    let v = f.handle_chunk(
        &chunk("mallory", "z1", 0, capped_at + 10, capped_at + 10, false),
        capped_at + 10,
    );
    assert_eq!(v, ChunkVerdict::Ignored(Rejection::CoolingDown));
    f.press(capped_at + 20);
    assert!(f.is_transmitting());
}

#[test]
fn our_own_chained_talks_cool_down_after_max_talk() {
    let cfg = FloorConfig {
        lease_ms: 3_000,
        max_talk_ms: 2_000,
    };
    let mut f = Floor::new(room(), user("me"), dev("ME"), cfg, counter("me"));
    f.press(T0);
    f.release(T0 + 1_500);
    // pressed again right away: the same hold, capped at T0 + 2 s
    f.press(T0 + 1_600);
    assert!(f.is_transmitting());
    f.handle_timeout(T0 + 2_000);
    assert!(!f.is_transmitting());
    assert!(events(&mut f).iter().any(|e| matches!(
        e,
        FloorEvent::StopTransmitting {
            reason: StopReason::MaxTalk,
            ..
        }
    )));
    // cooling down: presses refused, no claim sent
    transmits(&mut f);
    f.press(T0 + 2_500);
    assert!(!f.is_transmitting());
    assert!(transmits(&mut f).is_empty());
    assert_eq!(
        f.cooling_down(T0 + 2_500),
        Some(T0 + 2_000 + LOCAL_CHAIN_GAP_MS)
    );
    f.press(T0 + 2_000 + LOCAL_CHAIN_GAP_MS);
    assert!(f.is_transmitting());
}
