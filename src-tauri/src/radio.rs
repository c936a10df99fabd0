//! The walkie behind the tray: the engine, the player, which group the
//! hotkey talks into, and the one talk in progress. Press starts a talk
//! (microphone opened at once, floor claimed in parallel, permit or busy
//! cue), release ends it after a short tail so the last syllable is not cut.
//! Received talks go to the player. No protocol logic here: that is
//! walkie-core's; this only wires it to the app's inputs and outputs.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tauri::{AppHandle, Manager};
use tokio::sync::{mpsc, oneshot};
use walkie_audio::{
    mixing_queue::{GroupSettings, QueueEvent, TalkMeta},
    output::DeviceSink,
    player::{Player, PlayerConfig, PlayerEvent},
    queue_store::QueueStore,
};
use walkie_core::{
    live_talk::{self, Input, TalkOptions},
    Engine, EngineError, EngineEvent,
};

use crate::status::{GroupEntry, RadioState, SharedStatus};

/// The talk in progress: dropping `release` (or sending on it) ends it.
struct ActiveTalk {
    release: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    engine: Option<Engine>,
    player: Option<Arc<Player>>,
    talk_room: Option<String>,
    active: Option<ActiveTalk>,
    /// Start time of each remote talk being received, per session.
    start_ts: std::collections::HashMap<String, u64>,
    /// Who talks in each session heard (for notifications).
    talkers: std::collections::HashMap<String, String>,
    muted: bool,
    /// The microphone (`None`: the system's default).
    input_device: Option<String>,
    /// Bumped by every do-not-disturb change, so an old timer does not
    /// end a newer one.
    dnd_generation: u64,
}

/// Shared handle, managed by Tauri.
#[derive(Default, Clone)]
pub struct Radio {
    inner: Arc<Mutex<Inner>>,
    release_tail: Arc<Mutex<Duration>>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Radio {
    /// Connects the engine (signed in) and starts the player. Talks not yet
    /// played come back from `store`.
    pub fn attach(
        &self,
        app: &AppHandle,
        engine: Engine,
        store: Option<QueueStore>,
        preferred_room: Option<String>,
        release_tail: Duration,
    ) {
        *self.release_tail.lock().unwrap_or_else(|p| p.into_inner()) = release_tail;
        let (tx, mut rx) = mpsc::unbounded_channel();
        let cues = app.state::<SharedStatus>().get().cues;
        let saved =
            crate::settings::Settings::load(&app.state::<crate::config::AppConfig>().data_dir);
        lock(&self.inner).input_device = saved.input_device;
        let player = match Player::start(
            Box::new(DeviceSink::new(saved.output_device)),
            PlayerConfig {
                cues,
                ..PlayerConfig::default()
            },
            store,
            move |event| {
                let _ = tx.send(event);
            },
        ) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::error!(error = %e, "no audio playback");
                None
            }
        };
        {
            let mut inner = lock(&self.inner);
            inner.engine = Some(engine);
            inner.player = player;
            inner.talk_room = preferred_room;
        }
        let app = app.clone();
        let radio = self.clone();
        tauri::async_runtime::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let PlayerEvent::Queue(QueueEvent::Held { session, group }) = &event {
                    radio.notify_missed(&app, session, group);
                }
                if let PlayerEvent::Queue(queue_event) = &event {
                    let finished = matches!(queue_event, QueueEvent::Finished { .. });
                    app.state::<SharedStatus>().update(&app, |s| {
                        // The panel re-reads the unplayed talks on a change.
                        s.queue_version += 1;
                        if finished && s.radio == RadioState::Receiving {
                            s.radio = RadioState::Idle;
                            s.talker = None;
                        }
                    });
                }
                tracing::debug!(?event, "player");
            }
        });
    }

    /// Signed out: drop the engine and the player (closing any stream).
    pub fn detach(&self) {
        let mut inner = lock(&self.inner);
        if let Some(active) = inner.active.take() {
            let _ = active.release.send(());
        }
        inner.engine = None;
        inner.player = None;
        inner.talk_room = None;
        inner.start_ts.clear();
    }

    pub fn engine(&self) -> Option<Engine> {
        lock(&self.inner).engine.clone()
    }

    /// Chooses the group the hotkey talks into.
    pub fn set_talk_room(&self, app: &AppHandle, room: &str) {
        lock(&self.inner).talk_room = Some(room.to_owned());
        let data_dir = &app.state::<crate::config::AppConfig>().data_dir;
        crate::settings::Settings::update(data_dir, |s| s.talk_room = Some(room.to_owned()));
        tracing::info!(room, "talk room selected");
        app.state::<SharedStatus>()
            .update(app, |s| s.talk_room = Some(room.to_owned()));
    }

    /// Mutes (or unmutes) every group: their talks are held for later.
    pub fn set_muted(&self, app: &AppHandle, muted: bool) {
        let (player, groups) = {
            let mut inner = lock(&self.inner);
            inner.muted = muted;
            let groups = inner
                .engine
                .as_ref()
                .map(Engine::groups)
                .unwrap_or_default();
            (inner.player.clone(), groups)
        };
        if let Some(player) = player {
            for group in groups {
                player.set_group(
                    &group,
                    GroupSettings {
                        muted,
                        ..GroupSettings::default()
                    },
                );
            }
        }
        app.state::<SharedStatus>().update(app, |s| {
            s.muted = muted;
            s.refresh_radio();
        });
    }

    /// Do not disturb: every group muted (their talks held for later) for
    /// `duration`, or until turned off (`None`). `Some(Duration::ZERO)`
    /// turns it off.
    pub fn set_dnd(&self, app: &AppHandle, duration: Option<Duration>) {
        let generation = {
            let mut inner = lock(&self.inner);
            inner.dnd_generation += 1;
            inner.dnd_generation
        };
        let off = duration == Some(Duration::ZERO);
        self.set_muted(app, !off);
        let until = match duration {
            Some(d) if !off => Some(walkie_core::engine::now_ms() + d.as_millis() as u64),
            _ => None,
        };
        app.state::<SharedStatus>().update(app, |s| {
            s.dnd = !off;
            s.dnd_until = until;
        });
        tracing::info!(on = !off, until_ms = until, "do not disturb");
        if let (Some(d), false) = (duration, off) {
            let radio = self.clone();
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                tokio::time::sleep(d).await;
                // Only if nobody changed it since.
                if lock(&radio.inner).dnd_generation == generation {
                    radio.set_dnd(&app, Some(Duration::ZERO));
                }
            });
        }
    }

    /// Chooses the microphone for the next talks.
    pub fn set_input_device(&self, device: Option<String>) {
        lock(&self.inner).input_device = device;
    }

    /// A talk was held (not played) while do not disturb is on: a desktop
    /// notification says who talked where, once per talk.
    fn notify_missed(&self, app: &AppHandle, session: &str, group: &str) {
        let status = app.state::<SharedStatus>().get();
        if !status.dnd {
            return;
        }
        let sender = lock(&self.inner)
            .talkers
            .get(session)
            .cloned()
            .unwrap_or_else(|| "Someone".to_owned());
        let room = status
            .groups
            .iter()
            .find(|g| g.room_id == group)
            .map_or(group, |g| g.name.as_str());
        use tauri_plugin_notification::NotificationExt;
        let shown = app
            .notification()
            .builder()
            .title("Missed talk")
            .body(format!(
                "{sender} in {room} — waiting in Walkie's unplayed talks"
            ))
            .show();
        match shown {
            Ok(()) => tracing::info!(%session, %sender, "missed-talk notification sent"),
            Err(e) => tracing::warn!(error = %e, "missed-talk notification not shown"),
        }
    }

    /// A talk is in progress (pressed and not yet released).
    pub fn talking(&self) -> bool {
        lock(&self.inner).active.is_some()
    }

    /// The player, when signed in.
    pub fn player(&self) -> Option<Arc<Player>> {
        lock(&self.inner).player.clone()
    }

    /// Re-reads the groups from the engine (names from the rooms) and keeps
    /// the talk room valid: the preferred one, else the first group.
    pub fn refresh_groups(&self, app: &AppHandle) {
        let Some(engine) = self.engine() else { return };
        let mut groups: Vec<GroupEntry> = engine
            .groups()
            .into_iter()
            .map(|room_id| {
                let name = walkie_core::matrix_sdk::ruma::RoomId::parse(&room_id)
                    .ok()
                    .and_then(|id| engine.client().get_room(&id))
                    .and_then(|r| r.cached_display_name().map(|n| n.to_string()))
                    .unwrap_or_else(|| room_id.clone());
                GroupEntry { room_id, name }
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name).then(a.room_id.cmp(&b.room_id)));
        let talk_room = {
            let mut inner = lock(&self.inner);
            let valid = inner
                .talk_room
                .as_ref()
                .is_some_and(|r| groups.iter().any(|g| &g.room_id == r));
            if !valid {
                inner.talk_room = groups.first().map(|g| g.room_id.clone());
            }
            inner.talk_room.clone()
        };
        if lock(&self.inner).muted {
            // Groups that appeared while muted are muted too.
            let muted = lock(&self.inner).player.clone();
            if let Some(player) = muted {
                for g in &groups {
                    player.set_group(
                        &g.room_id,
                        GroupSettings {
                            muted: true,
                            ..GroupSettings::default()
                        },
                    );
                }
            }
        }
        tracing::info!(
            groups = groups.len(),
            talk_room = talk_room.as_deref().unwrap_or("-"),
            "walkie groups"
        );
        app.state::<SharedStatus>().update(app, |s| {
            s.groups = groups;
            s.talk_room = talk_room;
        });
    }

    /// An engine event: received talks to the player, and the status.
    pub fn on_engine_event(&self, app: &AppHandle, event: EngineEvent) {
        let player = lock(&self.inner).player.clone();
        let status = app.state::<SharedStatus>();
        match event {
            EngineEvent::Ready | EngineEvent::RoomChanged { .. } => self.refresh_groups(app),
            EngineEvent::TalkStarted {
                room_id,
                user_id,
                session_id,
                start_ts,
                ..
            } => {
                {
                    let mut inner = lock(&self.inner);
                    inner.start_ts.insert(session_id.clone(), start_ts);
                    // Bounded: who talked is only needed for notifications.
                    if inner.talkers.len() > 1024 {
                        inner.talkers.clear();
                    }
                    inner.talkers.insert(session_id.clone(), user_id.clone());
                }
                if let Some(player) = player {
                    player.talk_started(TalkMeta {
                        group: room_id,
                        session: session_id,
                        sender: user_id.clone(),
                        start_ts_ms: start_ts,
                    });
                }
                status.update(app, |s| {
                    s.talker = Some(user_id);
                    if s.radio == RadioState::Idle {
                        s.radio = RadioState::Receiving;
                    }
                });
            }
            EngineEvent::Audio {
                room_id,
                session_id,
                ts,
                frames,
                ..
            } => {
                let start = lock(&self.inner).start_ts.get(&session_id).copied();
                if let Some(player) = player {
                    let first_frame = (ts.saturating_sub(start.unwrap_or(ts)) + 10) / 20;
                    player.frames(&room_id, &session_id, first_frame, ts, frames);
                }
            }
            EngineEvent::TalkEnded { session_id, .. } => {
                lock(&self.inner).start_ts.remove(&session_id);
                if let Some(player) = player {
                    player.talk_ended(&session_id);
                }
            }
            EngineEvent::FloorFree { .. }
            | EngineEvent::TransmitStopped { .. }
            | EngineEvent::Dropped { .. } => {}
        }
    }

    /// The hotkey (or the panel's talk button) went down.
    pub fn press(&self, app: &AppHandle) {
        // A microphone test must not hold the device a talk needs.
        app.state::<crate::mic_test::MicTest>().stop();
        let (engine, player, room, input_device) = {
            let inner = lock(&self.inner);
            if inner.active.is_some() {
                return; // auto-repeat or a second press while talking
            }
            (
                inner.engine.clone(),
                inner.player.clone(),
                inner.talk_room.clone(),
                inner.input_device.clone(),
            )
        };
        let status = app.state::<SharedStatus>();
        let (Some(engine), Some(room)) = (engine, room) else {
            tracing::info!("press ignored: not signed in or no walkie group");
            return;
        };
        let (release, released) = oneshot::channel::<()>();
        lock(&self.inner).active = Some(ActiveTalk { release });
        status.update(app, |s| s.radio = RadioState::Talking);
        tracing::info!(room = %room, "talk pressed");
        let radio = self.clone();
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            let release = async {
                let _ = released.await;
            };
            let outcome = live_talk::run(
                &engine,
                &room,
                &Input::Mic(input_device),
                &TalkOptions::default(),
                player.as_deref(),
                release,
                |live| {
                    tracing::info!(
                        press_to_live_ms = live.press_to_live.as_millis() as u64,
                        "capture live"
                    )
                },
            )
            .await;
            lock(&radio.inner).active = None;
            let status = app.state::<SharedStatus>();
            match outcome {
                Ok(outcome) => {
                    tracing::info!(
                        session = %outcome.summary.session_id,
                        frames = outcome.summary.frames_sent,
                        device_error = outcome.device_error.as_deref().unwrap_or("-"),
                        "talk released"
                    );
                    status.update(&app, |s| {
                        s.radio = RadioState::Idle;
                        s.error = outcome.device_error.map(|e| format!("microphone: {e}"));
                        s.refresh_radio();
                    });
                }
                Err(live_talk::LiveTalkError::Engine(EngineError::FloorBusy { holder })) => {
                    tracing::info!(%holder, "floor busy");
                    status.update(&app, |s| {
                        s.radio = RadioState::Busy;
                        s.talker = Some(holder);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "talk failed");
                    status.update(&app, |s| {
                        s.radio = RadioState::Idle;
                        s.error = Some(e.to_string());
                    });
                }
            }
        });
    }

    /// The hotkey went up: the talk ends after the release tail.
    pub fn release(&self, app: &AppHandle) {
        let tail = *self.release_tail.lock().unwrap_or_else(|p| p.into_inner());
        let radio = self.clone();
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            tokio::time::sleep(tail).await;
            let active = lock(&radio.inner).active.take();
            if let Some(active) = active {
                let _ = active.release.send(());
            }
            app.state::<SharedStatus>().update(&app, |s| {
                if s.radio == RadioState::Busy {
                    s.radio = RadioState::Idle;
                    s.talker = None;
                }
            });
        });
    }
}
