//! Hostile input refused or ignored, and random operations that keep the
//! bounds and never panic.

use super::*;
use crate::netsim::Rng;

#[test]
fn hostile_input_is_refused_or_ignored() {
    let mut q = MixingQueue::new(small_limits()).unwrap();
    let now = 0;
    assert_eq!(
        q.push("!g:x", "ghost", 0, 0, vec![pkt(0, 0)], now),
        Err(QueueError::UnknownTalk("ghost".into()))
    );
    assert_eq!(
        q.talk_ended("ghost", now),
        Err(QueueError::UnknownTalk("ghost".into()))
    );
    assert!(matches!(
        q.talk_started(meta("!g:x", &"s".repeat(300)), now),
        Err(QueueError::BadId {
            what: "session",
            ..
        })
    ));
    assert!(matches!(
        q.talk_started(meta("", "s"), now),
        Err(QueueError::BadId { what: "group", .. })
    ));
    q.set_user_talking(true);
    q.talk_started(meta("!g:x", "t"), now).unwrap();
    assert_eq!(
        q.talk_started(meta("!g:x", "t"), now),
        Err(QueueError::DuplicateTalk("t".into()))
    );
    assert!(matches!(
        q.push("!other:x", "t", 0, 0, vec![pkt(0, 0)], now),
        Err(QueueError::GroupMismatch { .. })
    ));
    assert!(matches!(
        q.push("!g:x", "t", 0, 0, vec![vec![1]; 51], now),
        Err(QueueError::TooManyPackets { count: 51, max: 50 })
    ));
    assert_eq!(
        q.push("!g:x", "t", 0, 0, vec![vec![1], vec![]], now),
        Err(QueueError::BadPacket {
            index: 1,
            len: 0,
            max: MAX_PACKET_BYTES
        })
    );
    assert!(matches!(
        q.push("!g:x", "t", 0, 0, vec![vec![1; MAX_PACKET_BYTES + 1]], now),
        Err(QueueError::BadPacket { index: 0, .. })
    ));
    assert_eq!(
        q.stats().stored_frames,
        0,
        "refused messages change nothing"
    );
    // Absurd indices and timestamps: dropped, cut once, no overflow.
    let s = q
        .push("!g:x", "t", u64::MAX - 1, u64::MAX, vec![vec![1]; 5], now)
        .unwrap();
    assert_eq!(s.dropped, 5);
    assert_eq!(
        q.push("!g:x", "t", 1 << 40, 0, vec![vec![1]], now)
            .unwrap()
            .dropped,
        1
    );
    let cuts = events(&mut q)
        .into_iter()
        .filter(|e| matches!(e, QueueEvent::Cut { .. }))
        .count();
    assert_eq!(cuts, 1);
    // Duplicates are counted and played once.
    for _ in 0..3 {
        q.push("!g:x", "t", 0, 0, vec![pkt(1, 0), pkt(1, 1)], now)
            .unwrap();
    }
    assert_eq!(q.stats().duplicates, 4);
    q.talk_ended("t", now).unwrap();
    q.set_user_talking(false);
    let mut now = now;
    let played = play_until_idle(&mut q, &mut now, 50);
    assert_eq!(played.frames_of("t"), [0, 1]);
    assert_eq!(
        q.talk_ended("t", now),
        Err(QueueError::TalkOver("t".into()))
    );
    assert_eq!(
        q.talk_started(meta("!g:x", "t"), now),
        Err(QueueError::TalkOver("t".into()))
    );
}

#[test]
fn random_operations_keep_bounds_and_never_panic() {
    let mut rng = Rng::new(0x5eed_1234);
    let mut q = MixingQueue::new(small_limits()).unwrap();
    let groups = ["!a:x", "!b:x", "!c:x"];
    let mut now = 0u64;
    // (session, group), newest last; most operations hit recent talks.
    let mut talks: Vec<(String, &str)> = Vec::new();
    let pick = |rng: &mut Rng, talks: &[(String, &'static str)]| {
        let recent = (talks.len() as u64).min(6);
        let back = if rng.below(10) == 0 {
            rng.below(talks.len() as u64)
        } else {
            rng.below(recent)
        };
        talks[talks.len() - 1 - back as usize].clone()
    };
    for step in 0..60_000u64 {
        now += rng.below(25);
        let g = groups[rng.below(3) as usize];
        let roll = rng.below(100);
        if talks.is_empty() || roll < 2 {
            let s = format!("s{step}");
            let _ = q.talk_started(meta(g, &s), now);
            talks.push((s, g));
            continue;
        }
        let (s, group) = pick(&mut rng, &talks);
        match roll {
            2..=49 => {
                let group = if rng.below(10) == 0 { g } else { group };
                let first = match rng.below(20) {
                    0 => rng.next_u64(),
                    1 => rng.below(200),
                    _ => rng.below(110),
                };
                let n = rng.below(12) as usize;
                let packets = (0..n)
                    .map(|k| {
                        let len = match rng.below(50) {
                            0 => rng.below(MAX_PACKET_BYTES as u64 + 2) as usize,
                            _ => 1 + rng.below(80) as usize,
                        };
                        vec![k as u8; len]
                    })
                    .collect();
                let _ = q.push(group, &s, first, rng.next_u64() % 1_000_000, packets, now);
            }
            50..=52 => {
                let _ = q.talk_ended(&s, now);
            }
            53 => q.set_user_talking(rng.below(3) == 0),
            54 => {
                let settings = GroupSettings {
                    muted: rng.below(4) == 0,
                    volume: rng.below(300) as f32 / 100.0,
                    priority: rng.below(5) as i32 - 2,
                };
                let _ = q.set_group(g, settings);
            }
            55 => {
                let _ = q.play_now(&s);
            }
            56 => {
                let _ = q.skip(&s);
            }
            57..=60 => {
                let _ = q.poll_event();
            }
            _ => {
                let _ = q.tick(now);
            }
        }
        if talks.len() > 2_000 {
            talks.drain(..1_000);
        }
        q.check_invariants();
    }
    let stats = q.stats();
    println!("random ops: {stats:?}");
    assert!(stats.evicted_talks > 0);
    assert!(stats.frames_played > 1_000);
    assert!(stats.duplicates > 0 && stats.dropped_frames > 0);
}
