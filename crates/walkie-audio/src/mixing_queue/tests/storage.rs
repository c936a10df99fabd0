//! Bounds: limits checked, the overflow rule by frames and by bytes.

use super::*;

#[test]
fn limits_are_checked() {
    let ok = small_limits();
    assert!(MixingQueue::new(ok).is_ok());
    for bad in [
        QueueLimits { max_talks: 0, ..ok },
        QueueLimits {
            max_talk_frames: 0,
            ..ok
        },
        QueueLimits {
            max_total_frames: 99,
            ..ok
        },
        QueueLimits {
            max_total_bytes: 1000,
            ..ok
        },
    ] {
        assert!(matches!(
            MixingQueue::new(bad),
            Err(QueueError::InvalidLimits(_))
        ));
    }
}

#[test]
fn overflow_evicts_the_oldest_talk_of_the_lowest_priority_whole() {
    let mut q = MixingQueue::new(small_limits()).unwrap();
    let prio = |p| GroupSettings {
        priority: p,
        ..GroupSettings::default()
    };
    // Each talk in its own group (a group's floor has one talk at a time:
    // a new talk in a group ends the one before), two priorities.
    for g in ["!hi:x", "!hi2:x"] {
        q.set_group(g, prio(3)).unwrap();
    }
    for g in ["!lo:x", "!lo1:x", "!lo2:x"] {
        q.set_group(g, prio(-1)).unwrap();
    }
    let now = 0;
    // The live talk is never evicted, whatever its priority.
    q.talk_started(meta("!lo:x", "live"), now).unwrap();
    q.talk_started(meta("!hi:x", "h1"), now).unwrap();
    q.talk_started(meta("!lo1:x", "l1"), now).unwrap();
    q.talk_started(meta("!lo2:x", "l2"), now).unwrap();
    events(&mut q);
    // A fourth waiting talk: l1 (oldest of the lowest priority) goes.
    q.talk_started(meta("!hi2:x", "h2"), now).unwrap();
    assert_eq!(
        events(&mut q),
        [
            QueueEvent::Queued {
                session: "h2".into(),
                group: "!hi2:x".into()
            },
            QueueEvent::Overflowed {
                session: "l1".into(),
                group: "!lo1:x".into()
            }
        ]
    );
    assert_eq!(
        q.push("!lo1:x", "l1", 0, 0, vec![pkt(0, 0)], now),
        Err(QueueError::TalkOver("l1".into()))
    );
    let waiting: Vec<_> = q.unplayed().into_iter().map(|t| t.meta.session).collect();
    assert_eq!(waiting, ["h1", "l2", "h2"]);

    // Frames: 250 total. The live talk takes 100, h1 90, h2 50: the
    // next frames of l2 do not fit, and l2 itself is the victim.
    push_range(&mut q, "!lo:x", "live", 0, 0, 100, now);
    push_range(&mut q, "!hi:x", "h1", 1, 0, 90, now);
    push_range(&mut q, "!hi2:x", "h2", 2, 0, 50, now);
    q.check_invariants();
    let s = q
        .push(
            "!lo2:x",
            "l2",
            0,
            0,
            (0..20).map(|k| pkt(3, k)).collect(),
            now,
        )
        .unwrap();
    assert_eq!((s.stored, s.dropped), (10, 10));
    assert_eq!(
        events(&mut q),
        [QueueEvent::Overflowed {
            session: "l2".into(),
            group: "!lo2:x".into()
        }]
    );
    // Now the oldest high one goes for new frames of the live talk? No:
    // the live talk is full at 100 frames (its max) and cut instead.
    let s = q
        .push("!lo:x", "live", 100, 0, vec![pkt(0, 100)], now)
        .unwrap();
    assert_eq!(s.dropped, 1);
    assert_eq!(
        events(&mut q),
        [QueueEvent::Cut {
            session: "live".into()
        }]
    );
    // A new talk's frames evict h1 (oldest among equal priorities).
    q.talk_started(meta("!hi:x", "h3"), now).unwrap();
    push_range(&mut q, "!hi:x", "h3", 4, 0, 20, now);
    let ev = events(&mut q);
    assert!(ev.contains(&QueueEvent::Overflowed {
        session: "h1".into(),
        group: "!hi:x".into()
    }));
    assert!(q.stats().evicted_talks >= 3);
    q.check_invariants();
    // The live talk still plays whole.
    q.talk_ended("live", now).unwrap();
    let mut now = now;
    let played = play_until_idle(&mut q, &mut now, 1_000);
    assert_eq!(played.frames_of("live"), (0..100).collect::<Vec<_>>());
    assert_eq!(played.sessions_in_order()[0], "live");
}

#[test]
fn bytes_bound_evicts_too() {
    let limits = QueueLimits {
        max_talks: 10,
        max_talk_frames: 10,
        max_total_frames: 1_000,
        max_total_bytes: 10 * MAX_PACKET_BYTES as u64,
    };
    let mut q = MixingQueue::new(limits).unwrap();
    q.set_user_talking(true);
    q.talk_started(meta("!g:x", "a"), 0).unwrap();
    q.talk_started(meta("!g:x", "b"), 0).unwrap();
    let big = |n| vec![vec![n; MAX_PACKET_BYTES]; 6];
    assert_eq!(q.push("!g:x", "a", 0, 0, big(1), 0).unwrap().stored, 6);
    assert_eq!(q.push("!g:x", "b", 0, 0, big(2), 0).unwrap().stored, 6);
    assert!(events(&mut q).contains(&QueueEvent::Overflowed {
        session: "a".into(),
        group: "!g:x".into()
    }));
    assert_eq!(q.stats().stored_bytes, 6 * MAX_PACKET_BYTES as u64);
    q.check_invariants();
}
