//! Persist actions and restore.

use super::*;

#[test]
fn persist_actions_and_restore_keep_order() {
    let mut q = queue();
    q.set_user_talking(true);
    for (k, s) in ["x", "y", "z"].iter().enumerate() {
        q.talk_started(meta("!g:x", s), 0).unwrap();
        push_range(&mut q, "!g:x", s, k as u8, 0, 4, 0);
        q.talk_ended(s, 0).unwrap();
    }
    let saved: Vec<StoredTalk> = events(&mut q)
        .iter()
        .filter_map(|e| match q.persist_action(e) {
            Some(PersistAction::Save(t)) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(saved.len(), 3);
    assert_eq!(saved[1].frames.len(), 4);

    // Restore into a fresh queue, in shuffled order: back in order, held.
    let mut q2 = queue();
    let mut shuffled = saved.clone();
    shuffled.reverse();
    assert!(q2.restore(shuffled, 0).is_empty());
    let listed: Vec<_> = q2
        .unplayed()
        .iter()
        .map(|t| t.meta.session.clone())
        .collect();
    assert_eq!(listed, ["x", "y", "z"]);
    assert!(q2.unplayed().iter().all(|t| t.state == TalkState::Held));
    // Restoring again is refused (already there); new talks come after.
    let refused = q2.restore(saved, 0);
    assert_eq!(refused.len(), 3);
    q2.set_user_talking(true);
    q2.talk_started(meta("!g:x", "new"), 0).unwrap();
    assert_eq!(q2.unplayed().last().unwrap().meta.session, "new");
    assert!(q2.unplayed().last().unwrap().order > 2);
    let ev = events(&mut q2);
    assert_eq!(
        q2.persist_action(&QueueEvent::Finished {
            session: "x".into()
        }),
        Some(PersistAction::Delete {
            session: "x".into()
        })
    );
    assert!(ev.iter().all(|e| q2.persist_action(e).is_none()));
}
