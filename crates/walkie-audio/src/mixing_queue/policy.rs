//! Scheduling policy of the [mixing queue](super): which talk plays and when.
//!
//! Owns the decisions: a starting talk plays live, is queued or is held; the
//! 20 ms tick picks the next queued talk (`play_now` requests first, then
//! group priority, then arrival) and never preempts the current one; the
//! user talking pauses and resumes; muting holds a group's talks; skip;
//! talks that stall are taken as ended.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::replay::pop_talk;
use super::{
    arrival_order, check_id, GroupSettings, JitterBuffer, MixingQueue, Mode, Playout, QueueError,
    QueueEvent, State, Talk, TalkMeta, Tick, MAX_VOLUME, STALL_TIMEOUT_MS,
};

impl MixingQueue {
    /// Sets a group's mute, volume and priority (unknown groups have
    /// [`GroupSettings::default`]). Muting holds the group's queued talks and
    /// the rest of its current talk; a new priority applies to the next
    /// choice; a new volume to the next tick.
    pub fn set_group(&mut self, group: &str, settings: GroupSettings) -> Result<(), QueueError> {
        check_id("group", group)?;
        if !(0.0..=MAX_VOLUME).contains(&settings.volume) {
            return Err(QueueError::InvalidVolume(settings.volume));
        }
        let was_muted = self.settings(group).muted;
        self.groups.insert(group.to_owned(), settings);
        if settings.muted && !was_muted {
            self.hold_group(group);
        }
        Ok(())
    }

    /// Sets one talker's volume (a user id; 1.0 is as sent), multiplied
    /// with their group's from the next tick on.
    pub fn set_sender_volume(&mut self, sender: &str, volume: f32) -> Result<(), QueueError> {
        check_id("sender", sender)?;
        if !(0.0..=MAX_VOLUME).contains(&volume) {
            return Err(QueueError::InvalidVolume(volume));
        }
        if volume == 1.0 {
            self.senders.remove(sender);
        } else if self.senders.len() < super::MAX_SENDER_VOLUMES
            || self.senders.contains_key(sender)
        {
            self.senders.insert(sender.to_owned(), volume);
        } else {
            return Err(QueueError::TooManySenderVolumes);
        }
        Ok(())
    }

    /// The user pressed (true) or released (false) their own talk button.
    /// While true nothing plays: the current talk pauses and resumes after.
    pub fn set_user_talking(&mut self, talking: bool) {
        if talking == self.user_talking {
            return;
        }
        self.user_talking = talking;
        let Some(session) = self.current.clone() else {
            return;
        };
        if talking {
            self.switch_to_replay(&session);
            self.emit(QueueEvent::Paused { session });
        } else {
            self.emit(QueueEvent::Resumed { session });
        }
    }

    /// A remote talk started (its first message was accepted). It plays live
    /// at once when nothing else plays or waits, else it is queued or held.
    pub fn talk_started(&mut self, meta: TalkMeta, now_ms: u64) -> Result<(), QueueError> {
        self.check_new_talk(&meta)?;
        self.end_switched_away(&meta);
        let muted = self.settings(&meta.group).muted;
        let live = !muted
            && self.current.is_none()
            && !self.user_talking
            && !self.talks.values().any(|t| t.state == State::Queued);
        let order = self.next_order;
        self.next_order = self.next_order.saturating_add(1);
        let session = meta.session.clone();
        let group = meta.group.clone();
        let (state, mode) = if live {
            let jb = JitterBuffer::with_target_hint(self.hint_for(&meta.sender));
            let mode = Mode::Live {
                jb: Box::new(jb),
                started: false,
            };
            (State::Current, Some(mode))
        } else if muted {
            (State::Held, None)
        } else {
            (State::Queued, None)
        };
        self.talks.insert(
            session.clone(),
            Talk {
                meta,
                order,
                state,
                boost: None,
                frames: BTreeMap::new(),
                bytes: 0,
                ended: false,
                cut: false,
                last_activity_ms: now_ms,
                mode,
            },
        );
        match state {
            State::Current => {
                self.current = Some(session.clone());
                self.emit(QueueEvent::Started {
                    session,
                    group,
                    live: true,
                });
            }
            State::Held => self.emit(QueueEvent::Held { session, group }),
            State::Queued => self.emit(QueueEvent::Queued { session, group }),
        }
        self.enforce_bounds();
        Ok(())
    }

    /// The talk ended (its last message, or the floor ended it): no more
    /// audio will come. A talk not playing live then emits `Persist`.
    pub fn talk_ended(&mut self, session: &str, now_ms: u64) -> Result<(), QueueError> {
        let talk = self.waiting_or_current(session)?;
        talk.last_activity_ms = talk.last_activity_ms.max(now_ms);
        self.mark_ended(session);
        Ok(())
    }

    /// Output for the current 20 ms tick. Call once per tick.
    pub fn tick(&mut self, now_ms: u64) -> Tick {
        self.end_stalled(now_ms);
        if self.user_talking {
            return Tick::Idle;
        }
        // Each pass returns, or removes a talk / clears `current`: it ends.
        loop {
            let session = match self.current.clone() {
                Some(session) => session,
                None => match self.start_next() {
                    Some(session) => session,
                    None => return Tick::Idle,
                },
            };
            let Some(talk) = self.talks.get_mut(&session) else {
                self.current = None;
                continue;
            };
            let playout = pop_talk(talk, now_ms, &mut self.totals);
            let group = talk.meta.group.clone();
            match playout {
                Playout::Finished => self.finish_current(false),
                playout => {
                    match playout {
                        Playout::Frame(_) => self.stats.frames_played += 1,
                        Playout::Conceal { .. } => self.stats.frames_concealed += 1,
                        _ => {}
                    }
                    let sender = self.senders.get(&talk.meta.sender).copied().unwrap_or(1.0);
                    let gain = self.settings(&group).volume * sender;
                    return Tick::Play {
                        session,
                        group,
                        playout,
                        gain,
                    };
                }
            }
        }
    }

    /// The user's "play": a queued or held talk plays next, before any other
    /// waiting talk (requests in the order made). It never cuts the current
    /// talk; it starts at the next tick when nothing plays and the user is
    /// not talking.
    pub fn play_now(&mut self, session: &str) -> Result<(), QueueError> {
        let boost = self.next_boost;
        let talk = self
            .talks
            .get_mut(session)
            .filter(|t| t.state != State::Current)
            .ok_or_else(|| QueueError::NotWaiting(session.to_owned()))?;
        talk.state = State::Queued;
        talk.boost = Some(boost);
        let group = talk.meta.group.clone();
        self.next_boost = self.next_boost.saturating_add(1);
        self.emit(QueueEvent::Queued {
            session: session.to_owned(),
            group,
        });
        Ok(())
    }

    /// The user's "skip": drops a queued, held or the current talk.
    pub fn skip(&mut self, session: &str) -> Result<(), QueueError> {
        if self.current.as_deref() == Some(session) {
            self.finish_current(true);
            return Ok(());
        }
        if !self.talks.contains_key(session) {
            return Err(QueueError::NotWaiting(session.to_owned()));
        }
        self.remove_talk(session);
        self.emit(QueueEvent::Skipped {
            session: session.to_owned(),
        });
        Ok(())
    }

    fn mark_ended(&mut self, session: &str) {
        let Some(talk) = self.talks.get_mut(session) else {
            return;
        };
        if talk.ended {
            return;
        }
        talk.ended = true;
        if let Some(Mode::Live { jb, .. }) = talk.mode.as_mut() {
            jb.end();
        } else {
            self.emit(QueueEvent::Persist {
                session: session.to_owned(),
            });
        }
    }

    /// One talk of a group holds its floor at a time, so a new talk there
    /// means the floor moved on from any talk of the group still receiving:
    /// a collision whose loser reached this listener first. None of that
    /// talk's audio will come any more (the engine plays only the holder's);
    /// it ends now, its buffered audio plays out and the new talk follows,
    /// instead of waiting [`STALL_TIMEOUT_MS`] for a talk that went quiet.
    fn end_switched_away(&mut self, new: &TalkMeta) {
        let switched: Vec<String> = self
            .talks
            .values()
            .filter(|t| t.meta.group == new.group && !t.ended)
            .map(|t| t.meta.session.clone())
            .collect();
        for session in switched {
            tracing::info!(%session, to = %new.session, "the floor moved to another talk; this one ends here");
            self.mark_ended(&session);
        }
    }

    fn end_stalled(&mut self, now_ms: u64) {
        let mut stalled: Vec<(u64, String)> = self
            .talks
            .values()
            .filter(|t| !t.ended && now_ms.saturating_sub(t.last_activity_ms) >= STALL_TIMEOUT_MS)
            .map(|t| (t.order, t.meta.session.clone()))
            .collect();
        stalled.sort();
        for (_, session) in stalled {
            self.mark_ended(&session);
        }
    }

    fn hold_group(&mut self, group: &str) {
        let mut held: Vec<(u64, String)> = Vec::new();
        for talk in self.talks.values_mut() {
            if talk.meta.group == group && talk.state == State::Queued {
                talk.state = State::Held;
                talk.boost = None;
                held.push((talk.order, talk.meta.session.clone()));
            }
        }
        held.sort();
        for (_, session) in held {
            let group = group.to_owned();
            self.emit(QueueEvent::Held { session, group });
        }
        let Some(session) = self.current.clone() else {
            return;
        };
        if self
            .talks
            .get(&session)
            .is_none_or(|t| t.meta.group != group)
        {
            return;
        }
        self.switch_to_replay(&session);
        if let Some(talk) = self.talks.get_mut(&session) {
            talk.state = State::Held;
            // Keeps its replay position; cleared when it is chosen again.
        }
        self.current = None;
        let group = group.to_owned();
        self.emit(QueueEvent::Held { session, group });
        // One more waiting talk: the bound on their number applies.
        self.enforce_bounds();
    }

    fn start_next(&mut self) -> Option<String> {
        let groups = &self.groups;
        let priority = |t: &Talk| groups.get(&t.meta.group).map_or(0, |g| g.priority);
        let session = self
            .talks
            .values()
            .filter(|t| t.state == State::Queued)
            .min_by(|a, b| {
                match (a.boost, b.boost) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => priority(b).cmp(&priority(a)),
                }
                .then_with(|| arrival_order(a, b))
            })
            .map(|t| t.meta.session.clone())?;
        let talk = self.talks.get_mut(&session)?;
        talk.state = State::Current;
        talk.boost = None;
        if !matches!(talk.mode, Some(Mode::Replay { .. })) {
            talk.mode = Some(Mode::Replay {
                next: None,
                gap_run: 0,
            });
        }
        let group = talk.meta.group.clone();
        self.current = Some(session.clone());
        self.emit(QueueEvent::Started {
            session: session.clone(),
            group,
            live: false,
        });
        Some(session)
    }

    fn finish_current(&mut self, skipped: bool) {
        let Some(session) = self.current.take() else {
            return;
        };
        let Some(talk) = self.remove_talk(&session) else {
            return;
        };
        if let Some(Mode::Live { jb, started: true }) = &talk.mode {
            let stats = jb.stats();
            tracing::info!(
                %session,
                played = stats.played,
                concealed = stats.concealed,
                stretched = stats.stretched,
                shrunk = stats.shrink_dropped,
                late = stats.late_dropped,
                target_ms = stats.target_delay_ms,
                mean_added_ms = stats.mean_added_delay_ms(),
                "live talk played"
            );
            self.remember_hint(&talk.meta.sender, stats.target_delay_ms);
        }
        self.emit(if skipped {
            QueueEvent::Skipped { session }
        } else {
            QueueEvent::Finished { session }
        });
    }
}
