//! Scheduling: arrival order, priority without preemption, mute and hold,
//! volume, stalls, play now and skip.

use super::*;

#[test]
fn overlapping_talks_while_user_talks_play_one_at_a_time_in_arrival_order() {
    let mut q = queue();
    q.set_user_talking(true);
    let talks = [
        ("!a:x", "sa", 1u8, 90u64),
        ("!b:x", "sb", 2, 60),
        ("!c:x", "sc", 3, 120),
    ];
    let mut now = 1_000;
    for (k, (g, s, _, _)) in talks.iter().enumerate() {
        q.talk_started(meta(g, s), now + k as u64 * 10).unwrap();
    }
    // Interleaved arrival, two frames per message per talk every 40 ms.
    let longest = talks.iter().map(|t| t.3).max().unwrap();
    let mut i = 0;
    while i < longest {
        now += 40;
        for (g, s, n, len) in &talks {
            if i < *len {
                push_range(&mut q, g, s, *n, i, (i + 2).min(*len), now);
            }
        }
        q.check_invariants();
        assert_eq!(
            q.tick(now),
            Tick::Idle,
            "nothing plays while the user talks"
        );
        i += 2;
    }
    for (_, s, _, _) in &talks {
        q.talk_ended(s, now).unwrap();
    }
    let ev = events(&mut q);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, QueueEvent::Queued { .. }))
            .count(),
        3
    );
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, QueueEvent::Persist { .. }))
            .count(),
        3
    );
    let listed: Vec<_> = q.unplayed().into_iter().map(|t| t.meta.session).collect();
    assert_eq!(listed, ["sa", "sb", "sc"]);

    q.set_user_talking(false);
    let played = play_until_idle(&mut q, &mut now, 1_000);
    assert_eq!(played.sessions_in_order(), ["sa", "sb", "sc"]);
    assert_eq!(played.waits, 0);
    for (_, s, n, len) in &talks {
        assert_eq!(played.frames_of(s), (0..*len).collect::<Vec<_>>(), "{s}");
        assert_eq!(played.concealed(s), 0);
        assert!(played
            .out
            .iter()
            .filter(|(x, _)| x == s)
            .all(|(_, p)| id_of(p.as_ref().unwrap()).0 == *n));
    }
    let ev = events(&mut q);
    let order: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            QueueEvent::Started { session, live, .. } => {
                assert!(!live);
                Some(format!("start {session}"))
            }
            QueueEvent::Finished { session } => Some(format!("end {session}")),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        ["start sa", "end sa", "start sb", "end sb", "start sc", "end sc"]
    );
    assert!(q.unplayed().is_empty());
    assert_eq!(q.stats().stored_frames, 0);
    assert_eq!(q.stats().stored_bytes, 0);
    assert_eq!(q.stats().frames_played, 270);
}

#[test]
fn priority_reorders_the_queue_but_never_preempts() {
    let mut q = queue();
    let high = GroupSettings {
        priority: 5,
        ..GroupSettings::default()
    };
    q.set_group("!hi:x", high).unwrap();
    q.set_group("!hi2:x", high).unwrap();
    let mut now = 0;
    // A low-priority talk plays live; higher ones arrive during it.
    q.talk_started(meta("!lo:x", "live"), now).unwrap();
    q.talk_started(meta("!lo:x", "low"), now + 1).unwrap();
    q.talk_started(meta("!hi:x", "high1"), now + 2).unwrap();
    q.talk_started(meta("!hi2:x", "high2"), now + 3).unwrap();
    for (s, g, n) in [
        ("live", "!lo:x", 0u8),
        ("low", "!lo:x", 1),
        ("high1", "!hi:x", 2),
        ("high2", "!hi2:x", 3),
    ] {
        push_range(&mut q, g, s, n, 0, 10, now);
        q.talk_ended(s, now).unwrap();
    }
    let played = play_until_idle(&mut q, &mut now, 500);
    assert_eq!(
        played.sessions_in_order(),
        ["live", "high1", "high2", "low"]
    );
    for s in ["live", "low", "high1", "high2"] {
        assert_eq!(played.frames_of(s), (0..10).collect::<Vec<_>>());
    }
}

#[test]
fn muted_group_talk_is_held_listed_and_plays_on_play_now() {
    let mut q = queue();
    q.set_group(
        "!m:x",
        GroupSettings {
            muted: true,
            volume: 0.7,
            priority: 0,
        },
    )
    .unwrap();
    let mut now = 0;
    q.talk_started(meta("!m:x", "muted"), now).unwrap();
    push_range(&mut q, "!m:x", "muted", 4, 0, 25, now);
    q.talk_ended("muted", now).unwrap();
    assert!(matches!(events(&mut q)[0], QueueEvent::Held { .. }));
    for _ in 0..50 {
        now += FRAME_MS;
        assert_eq!(q.tick(now), Tick::Idle);
    }
    let unplayed = q.unplayed();
    assert_eq!(unplayed.len(), 1);
    assert_eq!(unplayed[0].meta.session, "muted");
    assert_eq!(unplayed[0].state, TalkState::Held);
    assert_eq!(unplayed[0].frames, 25);
    assert_eq!(unplayed[0].duration_ms, 500);
    assert!(unplayed[0].complete);

    // Another talk of an unmuted group still plays live meanwhile.
    q.talk_started(meta("!o:x", "other"), now).unwrap();
    push_range(&mut q, "!o:x", "other", 5, 0, 5, now);
    q.talk_ended("other", now).unwrap();
    let played = play_until_idle(&mut q, &mut now, 100);
    assert_eq!(played.sessions_in_order(), ["other"]);

    // Unmuting does not auto-play what was held; play_now does.
    q.set_group("!m:x", GroupSettings::default()).unwrap();
    assert_eq!(q.tick(now + 20), Tick::Idle);
    assert_eq!(
        q.play_now("nope"),
        Err(QueueError::NotWaiting("nope".into()))
    );
    q.play_now("muted").unwrap();
    let played = play_until_idle(&mut q, &mut now, 100);
    assert_eq!(played.frames_of("muted"), (0..25).collect::<Vec<_>>());
    assert!(q.unplayed().is_empty());
}

#[test]
fn muting_the_playing_group_holds_the_rest_of_its_talk() {
    let mut q = queue();
    let mut now = 0;
    q.talk_started(meta("!g:x", "t"), now).unwrap();
    push_range(&mut q, "!g:x", "t", 1, 0, 50, now);
    q.talk_ended("t", now).unwrap();
    let mut first = Vec::new();
    while first.len() < 20 {
        now += FRAME_MS;
        if let Tick::Play {
            playout: Playout::Frame(p),
            ..
        } = q.tick(now)
        {
            first.push(id_of(&p).1);
        }
    }
    q.set_group(
        "!g:x",
        GroupSettings {
            muted: true,
            ..GroupSettings::default()
        },
    )
    .unwrap();
    assert_eq!(q.tick(now + 20), Tick::Idle);
    assert!(events(&mut q)
        .iter()
        .any(|e| matches!(e, QueueEvent::Persist { .. })));
    let held = q.unplayed();
    assert_eq!(held[0].state, TalkState::Held);
    q.play_now("t").unwrap();
    let played = play_until_idle(&mut q, &mut now, 200);
    first.extend(played.frames_of("t"));
    assert_eq!(first, (0..50).collect::<Vec<_>>());
}

#[test]
fn volume_is_carried_with_every_frame_and_checked() {
    let mut q = queue();
    q.set_group(
        "!v:x",
        GroupSettings {
            volume: 0.25,
            ..GroupSettings::default()
        },
    )
    .unwrap();
    let mut now = 0;
    q.set_user_talking(true);
    q.talk_started(meta("!v:x", "v"), now).unwrap();
    push_range(&mut q, "!v:x", "v", 1, 0, 10, now);
    q.talk_ended("v", now).unwrap();
    q.set_user_talking(false);
    let played = play_until_idle(&mut q, &mut now, 100);
    assert_eq!(played.gains, vec![0.25; 10]);
    for bad in [-0.1, 2.01, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            q.set_group(
                "!v:x",
                GroupSettings {
                    volume: bad,
                    ..GroupSettings::default()
                }
            ),
            Err(QueueError::InvalidVolume(_))
        ));
    }
    assert_eq!(q.group("!v:x").volume, 0.25);
    // A change applies at the next tick.
    q.talk_started(meta("!v:x", "w"), now).unwrap();
    push_range(&mut q, "!v:x", "w", 2, 0, 10, now);
    q.talk_ended("w", now).unwrap();
    let mut gains = Vec::new();
    for k in 0..40 {
        if k == 5 {
            let loud = GroupSettings {
                volume: 2.0,
                ..GroupSettings::default()
            };
            q.set_group("!v:x", loud).unwrap();
        }
        now += FRAME_MS;
        if let Tick::Play {
            playout: Playout::Frame(_),
            gain,
            ..
        } = q.tick(now)
        {
            gains.push(gain);
        }
    }
    assert_eq!(gains.len(), 10);
    assert!(gains.contains(&0.25) && gains.ends_with(&[2.0]));
}

#[test]
fn a_talkers_volume_multiplies_the_groups_and_is_checked() {
    let mut q = queue();
    let group = GroupSettings {
        volume: 0.5,
        ..GroupSettings::default()
    };
    q.set_group("!v:x", group).unwrap();
    // meta(.., "a") is talked by @a:example.org.
    q.set_sender_volume("@a:example.org", 1.5).unwrap();
    for bad in [-0.1, 2.01, f32::NAN] {
        assert_eq!(
            q.set_sender_volume("@a:example.org", bad)
                .map_err(|e| matches!(e, QueueError::InvalidVolume(_))),
            Err(true)
        );
    }
    assert!(q.set_sender_volume("", 1.0).is_err());
    let mut now = 0;
    q.set_user_talking(true);
    for session in ["a", "b"] {
        q.talk_started(meta("!v:x", session), now).unwrap();
        push_range(&mut q, "!v:x", session, 1, 0, 5, now);
        q.talk_ended(session, now).unwrap();
    }
    q.set_user_talking(false);
    let played = play_until_idle(&mut q, &mut now, 100);
    // a at 0.5 × 1.5, b (no volume of its own) at the group's 0.5.
    assert_eq!(played.gains, [vec![0.75; 5], vec![0.5; 5]].concat());
    // Back to 1.0 forgets the entry.
    q.set_sender_volume("@a:example.org", 1.0).unwrap();
    let again = TalkMeta {
        sender: "@a:example.org".into(),
        ..meta("!v:x", "a2")
    };
    q.talk_started(again, now).unwrap();
    push_range(&mut q, "!v:x", "a2", 1, 0, 3, now);
    q.talk_ended("a2", now).unwrap();
    assert_eq!(play_until_idle(&mut q, &mut now, 100).gains, vec![0.5; 3]);
}

#[test]
fn stalled_talk_is_ended_and_does_not_block_the_queue() {
    let mut q = queue();
    let mut now = 0;
    q.talk_started(meta("!g:x", "gone"), now).unwrap();
    push_range(&mut q, "!g:x", "gone", 1, 0, 5, now);
    q.talk_started(meta("!h:x", "next"), now).unwrap();
    push_range(&mut q, "!h:x", "next", 2, 0, 5, now);
    q.talk_ended("next", now).unwrap();
    let played = play_until_idle(&mut q, &mut now, 2_000);
    assert_eq!(played.sessions_in_order(), ["gone", "next"]);
    assert!(now >= STALL_TIMEOUT_MS);
    assert_eq!(played.frames_of("gone"), (0..5).collect::<Vec<_>>());
}

#[test]
fn a_new_talk_in_the_group_ends_the_one_the_floor_switched_away_from() {
    // A collision seen from the loser's side: the loser's talk arrives
    // first and plays live; the winner's claim arrives later, the engine
    // switches to it and sends nothing more of the loser, and no end.
    let mut q = queue();
    let mut now = 1_000;
    q.talk_started(meta("!g:x", "loser"), now).unwrap();
    push_range(&mut q, "!g:x", "loser", 1, 0, 10, now);
    for _ in 0..5 {
        now += 20;
        q.tick(now);
    }
    q.talk_started(meta("!g:x", "winner"), now).unwrap();
    let switched_at = now;
    push_range(&mut q, "!g:x", "winner", 2, 0, 50, now);
    q.talk_ended("winner", now).unwrap();
    let played = play_until_idle(&mut q, &mut now, 2_000);
    assert_eq!(played.sessions_in_order(), ["loser", "winner"]);
    assert_eq!(played.frames_of("winner"), (0..50).collect::<Vec<_>>());
    // The loser's buffered frames play out, then the winner whole: 50
    // frames of 20 ms after at most the loser's jitter buffer, not after a
    // 10 s stall.
    assert!(
        now - switched_at < 2_000,
        "the winner finished {} ms after the switch",
        now - switched_at
    );
    assert!(events(&mut q)
        .iter()
        .any(|e| matches!(e, QueueEvent::Finished { session } if session == "loser")));
}

#[test]
fn skip_and_play_now_order() {
    let mut q = queue();
    q.set_user_talking(true);
    let now = 0;
    for (k, s) in ["a", "b", "c", "d"].iter().enumerate() {
        q.talk_started(meta("!g:x", s), now).unwrap();
        push_range(&mut q, "!g:x", s, k as u8, 0, 3, now);
        q.talk_ended(s, now).unwrap();
    }
    q.skip("b").unwrap();
    assert_eq!(q.skip("b"), Err(QueueError::NotWaiting("b".into())));
    q.play_now("d").unwrap();
    q.play_now("c").unwrap();
    q.set_user_talking(false);
    let mut now = now;
    // The current talk can be skipped too.
    now += FRAME_MS;
    assert!(matches!(q.tick(now), Tick::Play { ref session, .. } if session == "d"));
    q.skip("d").unwrap();
    let played = play_until_idle(&mut q, &mut now, 100);
    assert_eq!(played.sessions_in_order(), ["c", "a"]);
    let skipped: Vec<_> = events(&mut q)
        .into_iter()
        .filter_map(|e| match e {
            QueueEvent::Skipped { session } => Some(session),
            _ => None,
        })
        .collect();
    assert_eq!(skipped, ["b", "d"]);
    assert_eq!(
        q.push("!g:x", "d", 3, 0, vec![pkt(0, 3)], now),
        Err(QueueError::TalkOver("d".into()))
    );
}
