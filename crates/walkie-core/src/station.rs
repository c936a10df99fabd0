//! The station: both directions of a radio, shared by the app and the CLI.
//! Transmit: [`Station::talk`] runs one push-to-talk (press → release)
//! through `live_talk`, with the player told "the user is talking" for
//! exactly as long as the talk holds the floor — a guard clears it on every
//! exit path (release, error, cap, revoke, lost collision, drop). Receive:
//! [`Station::forward`] hands the engine's talk events to the playback, the
//! frame index taken from the event (the engine knows the claim). Each
//! group's volume, mute and priority and each talker's volume are kept
//! here and handed to the playback; "mute all" holds every group's talks
//! for later on top of the group's own mute.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use walkie_audio::{
    cues::Cue,
    mixing_queue::{GroupSettings, TalkMeta},
    player::Player,
};

use crate::{
    engine::{Engine, EngineEvent},
    live_talk::{self, CaptureLive, Input, LiveTalkError, TalkOptions, TalkOutcome},
};

/// Where received talks and cues are played: the audio player, or a test
/// double in unit tests.
pub trait Playback: Send + Sync {
    fn talk_started(&self, meta: TalkMeta);
    fn frames(&self, group: &str, session: &str, first_frame: u64, ts: u64, frames: Vec<Vec<u8>>);
    fn talk_ended(&self, session: &str);
    /// While set, incoming talks wait (the user is talking).
    fn set_user_talking(&self, talking: bool);
    fn cue(&self, cue: Cue);
    /// Opens the output early (a press: the permit cue must be quick).
    fn open_output(&self);
    fn set_group(&self, group: &str, settings: GroupSettings);
    fn set_sender_volume(&self, sender: &str, volume: f32);
}

impl Playback for Player {
    fn talk_started(&self, meta: TalkMeta) {
        Player::talk_started(self, meta)
    }
    fn frames(&self, group: &str, session: &str, first_frame: u64, ts: u64, frames: Vec<Vec<u8>>) {
        Player::frames(self, group, session, first_frame, ts, frames)
    }
    fn talk_ended(&self, session: &str) {
        Player::talk_ended(self, session)
    }
    fn set_user_talking(&self, talking: bool) {
        Player::set_user_talking(self, talking)
    }
    fn cue(&self, cue: Cue) {
        Player::cue(self, cue)
    }
    fn open_output(&self) {
        Player::open_output(self)
    }
    fn set_group(&self, group: &str, settings: GroupSettings) {
        Player::set_group(self, group, settings)
    }
    fn set_sender_volume(&self, sender: &str, volume: f32) {
        Player::set_sender_volume(self, sender, volume)
    }
}

/// "The user is talking" for as long as this lives.
pub(crate) struct UserTalking<'a>(Option<&'a dyn Playback>);

impl<'a> UserTalking<'a> {
    pub(crate) fn start(playback: Option<&'a dyn Playback>) -> Self {
        if let Some(p) = playback {
            p.set_user_talking(true);
        }
        Self(playback)
    }
}

impl Drop for UserTalking<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            p.set_user_talking(false);
        }
    }
}

/// The user's playback choices: per group, and "mute all".
#[derive(Default)]
struct Mixing {
    groups: HashMap<String, GroupSettings>,
    all_muted: bool,
}

/// Both directions of the radio over one engine.
#[derive(Clone)]
pub struct Station {
    engine: Engine,
    playback: Option<Arc<dyn Playback>>,
    mixing: Arc<Mutex<Mixing>>,
}

impl Station {
    /// A station over `engine`; received talks go to `playback` (none: the
    /// station only transmits, e.g. `walkie talk` without cues).
    pub fn new(engine: Engine, playback: Option<Arc<dyn Playback>>) -> Self {
        Self {
            engine,
            playback,
            mixing: Arc::default(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Talks into `room` from `input` until `release` completes, the
    /// source ends, or the talk stops (see [`live_talk::run`]).
    pub async fn talk(
        &self,
        room: &str,
        input: &Input,
        options: &TalkOptions,
        release: impl Future<Output = ()>,
        on_live: impl FnMut(CaptureLive),
    ) -> Result<TalkOutcome, LiveTalkError> {
        live_talk::run(
            &self.engine,
            room,
            input,
            options,
            self.playback.as_deref(),
            release,
            on_live,
        )
        .await
    }

    /// Hands an engine event to the playback: a remote talk's start, its
    /// audio (at the frame index the engine computed), its end.
    pub fn forward(&self, event: &EngineEvent) {
        let Some(playback) = &self.playback else {
            return;
        };
        match event {
            EngineEvent::TalkStarted {
                room_id,
                user_id,
                session_id,
                start_ts,
                ..
            } => playback.talk_started(TalkMeta {
                group: room_id.clone(),
                session: session_id.clone(),
                sender: user_id.clone(),
                start_ts_ms: *start_ts,
            }),
            EngineEvent::Audio {
                room_id,
                session_id,
                ts,
                frame_index,
                frames,
                ..
            } => playback.frames(room_id, session_id, *frame_index, *ts, frames.clone()),
            EngineEvent::TalkEnded { session_id, .. } => playback.talk_ended(session_id),
            _ => {}
        }
    }

    /// Mutes (or unmutes) every walkie group: their talks are held. A
    /// group muted by itself stays muted.
    pub fn set_muted(&self, muted: bool) {
        self.lock_mixing().all_muted = muted;
        self.apply_groups();
    }

    /// A group's own volume, mute and priority (applied with "mute all").
    pub fn set_group(&self, group: &str, settings: GroupSettings) {
        self.lock_mixing().groups.insert(group.to_owned(), settings);
        self.apply_groups();
    }

    /// One talker's volume (1.0: as sent), in every group.
    pub fn set_sender_volume(&self, sender: &str, volume: f32) {
        if let Some(playback) = &self.playback {
            playback.set_sender_volume(sender, volume);
        }
    }

    /// Hands every walkie group's settings to the playback (call again when
    /// groups appear: a new group under "mute all" is muted too).
    pub fn apply_groups(&self) {
        let Some(playback) = &self.playback else {
            return;
        };
        let mut groups: Vec<String> = self.engine.groups();
        let effective: Vec<(String, GroupSettings)> = {
            let mixing = self.lock_mixing();
            groups.extend(
                mixing
                    .groups
                    .keys()
                    .filter(|g| !groups.contains(g))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            groups
                .into_iter()
                .map(|group| {
                    let mut settings = mixing.groups.get(&group).copied().unwrap_or_default();
                    settings.muted |= mixing.all_muted;
                    (group, settings)
                })
                .collect()
        };
        for (group, settings) in effective {
            playback.set_group(&group, settings);
        }
    }

    fn lock_mixing(&self) -> std::sync::MutexGuard<'_, Mixing> {
        self.mixing.lock().unwrap_or_else(|p| p.into_inner())
    }
}
