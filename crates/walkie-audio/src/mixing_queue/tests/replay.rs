//! Playout: live through the jitter buffer, replay of waiting talks,
//! lossless pause, holes in replay.

use super::*;

#[test]
fn live_talk_plays_through_the_jitter_buffer_in_order() {
    let mut q = queue();
    let mut now = 10_000;
    q.talk_started(meta("!g:x", "live"), now).unwrap();
    assert!(matches!(
        events(&mut q)[..],
        [QueueEvent::Started { live: true, .. }]
    ));
    assert_eq!(q.current().unwrap().state, TalkState::Playing);
    // 200 frames sent two per message every 40 ms, arriving with 0-30 ms
    // of jitter (reordering messages) and one duplicate message.
    let mut arrivals: Vec<(u64, u64)> = (0..100u64)
        .map(|m| (now + 50 + m * 40 + (m * 7919) % 31, m * 2))
        .collect();
    arrivals.push((now + 50 + 33 * 40 + 60, 66));
    arrivals.sort();
    let mut next = 0;
    let mut played = Vec::new();
    let mut concealed = 0;
    let mut ended = false;
    for _ in 0..1_000 {
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (at, first) = arrivals[next];
            q.push(
                "!g:x",
                "live",
                first,
                5_000_000 + first * FRAME_MS,
                vec![pkt(1, first), pkt(1, first + 1)],
                at,
            )
            .unwrap();
            next += 1;
        }
        if next == arrivals.len() && !ended {
            q.talk_ended("live", now).unwrap();
            ended = true;
        }
        match q.tick(now) {
            Tick::Idle => break,
            Tick::Play { playout, .. } => match playout {
                Playout::Frame(p) => played.push(id_of(&p).1),
                Playout::Conceal { .. } => concealed += 1,
                _ => {}
            },
        }
        q.check_invariants();
        now += FRAME_MS;
    }
    assert!(played.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(
        played,
        (0..200).collect::<Vec<_>>(),
        "{concealed} concealed"
    );
    assert_eq!(q.stats().duplicates, 2);
    assert_eq!(q.stats().stored_frames, 0);
    assert!(events(&mut q).contains(&QueueEvent::Finished {
        session: "live".into()
    }));
    // No Persist for a talk played live.
    assert!(!events(&mut q)
        .iter()
        .any(|e| matches!(e, QueueEvent::Persist { .. })));
}

#[test]
fn talk_still_receiving_when_dequeued_plays_to_its_end() {
    let mut q = queue();
    let mut now = 0;
    q.set_user_talking(true);
    q.talk_started(meta("!g:x", "t"), now).unwrap();
    // 200 ms arrives while the user talks; the rest arrives while it
    // plays, in bursts of 400 ms every 400 ms (a federation-like link),
    // so the cursor catches up with the live edge and waits at times.
    push_range(&mut q, "!g:x", "t", 1, 0, 10, now);
    q.set_user_talking(false);
    let mut played = Vec::new();
    let mut waits = 0;
    let mut sent = 10;
    for _ in 0..2_000 {
        now += FRAME_MS;
        if now % 400 == 0 && sent < 200 {
            let to = (sent + 20).min(200);
            push_range(&mut q, "!g:x", "t", 1, sent, to, now);
            sent = to;
            if sent >= 200 {
                q.talk_ended("t", now).unwrap();
            }
        }
        match q.tick(now) {
            Tick::Idle => break,
            Tick::Play { playout, .. } => match playout {
                Playout::Frame(p) => played.push(id_of(&p).1),
                Playout::Wait => waits += 1,
                other => panic!("{other:?}"),
            },
        }
    }
    assert_eq!(played, (0..200).collect::<Vec<_>>());
    assert!(waits > 0 && waits < 100, "{waits}");
    let ev = events(&mut q);
    assert!(ev.contains(&QueueEvent::Finished {
        session: "t".into()
    }));
    assert!(ev.contains(&QueueEvent::Persist {
        session: "t".into()
    }));
}

#[test]
fn user_talking_pauses_a_live_talk_and_it_resumes_losslessly() {
    let mut q = queue();
    let mut now = 0;
    q.talk_started(meta("!g:x", "t"), now).unwrap();
    let mut played = Vec::new();
    let mut sent = 0;
    for step in 0..1_000 {
        now += FRAME_MS;
        if now % 40 == 0 && sent < 300 {
            push_range(&mut q, "!g:x", "t", 1, sent, sent + 2, now);
            sent += 2;
            if sent == 300 {
                q.talk_ended("t", now).unwrap();
            }
        }
        if step == 60 {
            q.set_user_talking(true);
            assert_eq!(q.current().unwrap().state, TalkState::Paused);
        }
        if step == 160 {
            q.set_user_talking(false);
        }
        match q.tick(now) {
            Tick::Idle if step > 160 => break,
            Tick::Idle => assert!((60..160).contains(&step), "{step}"),
            Tick::Play { playout, .. } => {
                if let Playout::Frame(p) = playout {
                    played.push(id_of(&p).1)
                }
            }
        }
        q.check_invariants();
    }
    assert_eq!(played, (0..300).collect::<Vec<_>>());
    let ev = events(&mut q);
    assert!(ev.contains(&QueueEvent::Paused {
        session: "t".into()
    }));
    assert!(ev.contains(&QueueEvent::Resumed {
        session: "t".into()
    }));
}

#[test]
fn replay_waits_for_a_hole_then_conceals_and_jumps_long_gaps() {
    let mut q = queue();
    q.set_user_talking(true);
    let mut now = 0;
    q.talk_started(meta("!g:x", "t"), now).unwrap();
    push_range(&mut q, "!g:x", "t", 1, 0, 3, now);
    push_range(&mut q, "!g:x", "t", 1, 4, 6, now + 100);
    q.set_user_talking(false);
    let mut out = Vec::new();
    for _ in 0..5 {
        now += FRAME_MS;
        out.push(q.tick(now));
    }
    let kinds: Vec<_> = out
        .iter()
        .map(|t| match t {
            Tick::Play { playout, .. } => match playout {
                Playout::Frame(p) => format!("f{}", id_of(p).1),
                Playout::Conceal { next } => format!("c{}", next.is_some()),
                Playout::Wait => "w".into(),
                Playout::Finished => "end".into(),
            },
            Tick::Idle => "idle".into(),
        })
        .collect();
    // Frame 3 is missing; frame 4 came at 100 ms: wait until 600 ms.
    assert_eq!(kinds, ["f0", "f1", "f2", "w", "w"]);
    now = 100 + REPLAY_GRACE_MS;
    match q.tick(now) {
        Tick::Play {
            playout: Playout::Conceal { next: Some(p) },
            ..
        } => assert_eq!(id_of(&p).1, 4),
        other => panic!("{other:?}"),
    }
    // A long gap once ended: MAX_REPLAY_GAP_FRAMES concealments, then on.
    push_range(&mut q, "!g:x", "t", 1, 1_000, 1_002, now);
    q.talk_ended("t", now).unwrap();
    let played = {
        let mut frames = Vec::new();
        let mut conceals = 0;
        loop {
            now += FRAME_MS;
            match q.tick(now) {
                Tick::Idle => break,
                Tick::Play { playout, .. } => match playout {
                    Playout::Frame(p) => frames.push(id_of(&p).1),
                    Playout::Conceal { .. } => conceals += 1,
                    other => panic!("{other:?}"),
                },
            }
        }
        assert_eq!(conceals, MAX_REPLAY_GAP_FRAMES as usize);
        frames
    };
    assert_eq!(played, [4, 5, 1_000, 1_001]);
}
