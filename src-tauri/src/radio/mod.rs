//! The walkie behind the tray: maps the core's station (both directions of
//! the radio) onto the app — which group the hotkey talks into, the one
//! talk in progress, mute, tray and panel state; do not disturb and
//! missed-talk notifications are in `quiet`, volumes, per-group mute and
//! priority and the release tail in `mixing`. Press starts a talk through
//! the station, release ends it after a short tail so the last syllable is
//! not cut; engine events go through the station to the player. No
//! protocol or playback logic here: that is walkie-core's and
//! walkie-audio's.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tauri::{AppHandle, Manager};
use tokio::sync::{mpsc, oneshot};
use walkie_audio::{
    mixing_queue::QueueEvent,
    output::DeviceSink,
    player::{Player, PlayerConfig, PlayerEvent},
    queue_store::QueueStore,
};
use walkie_core::{
    live_talk::{self, Input, TalkOptions},
    Engine, EngineError, EngineEvent, Playback, Station,
};

use crate::status::{GroupEntry, RadioState, SharedStatus};

mod mixing;
mod quiet;

/// The talk in progress: dropping `release` (or sending on it) ends it.
struct ActiveTalk {
    release: oneshot::Sender<()>,
}

#[derive(Default)]
struct Inner {
    station: Option<Station>,
    player: Option<Arc<Player>>,
    talk_room: Option<String>,
    active: Option<ActiveTalk>,
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
            inner.station = Some(Station::new(
                engine,
                player.clone().map(|p| p as Arc<dyn Playback>),
            ));
            inner.player = player;
            inner.talk_room = preferred_room;
            if inner.muted {
                // "Mute all" outlives a sign-out and sign-in.
                if let Some(station) = &inner.station {
                    station.set_muted(true);
                }
            }
        }
        self.apply_saved_mixing(app);
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
        inner.station = None;
        inner.player = None;
        inner.talk_room = None;
    }

    pub fn engine(&self) -> Option<Engine> {
        lock(&self.inner)
            .station
            .as_ref()
            .map(|s| s.engine().clone())
    }

    fn station(&self) -> Option<Station> {
        lock(&self.inner).station.clone()
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
        let station = {
            let mut inner = lock(&self.inner);
            inner.muted = muted;
            inner.station.clone()
        };
        if let Some(station) = station {
            station.set_muted(muted);
        }
        app.state::<SharedStatus>().update(app, |s| {
            s.muted = muted;
            s.refresh_radio();
        });
    }

    /// Chooses the microphone for the next talks.
    pub fn set_input_device(&self, device: Option<String>) {
        lock(&self.inner).input_device = device;
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
            .map(|room_id| GroupEntry {
                name: engine.room_name(&room_id),
                room_id,
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
        if let Some(station) = self.station() {
            // Groups that appeared get their settings (muted too under
            // "mute all").
            station.apply_groups();
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

    /// An engine event: received talks through the station to the player,
    /// and the status.
    pub fn on_engine_event(&self, app: &AppHandle, event: EngineEvent) {
        match &event {
            EngineEvent::Ready | EngineEvent::RoomChanged { .. } => self.refresh_groups(app),
            EngineEvent::TalkStarted {
                user_id,
                session_id,
                ..
            } => {
                {
                    // Before the player hears of the talk: a talk held at
                    // once (do not disturb) is notified with its talker.
                    let mut inner = lock(&self.inner);
                    // Bounded: who talked is only needed for notifications.
                    if inner.talkers.len() > 1024 {
                        inner.talkers.clear();
                    }
                    inner.talkers.insert(session_id.clone(), user_id.clone());
                }
                app.state::<SharedStatus>().update(app, |s| {
                    s.talker = Some(user_id.clone());
                    if s.radio == RadioState::Idle {
                        s.radio = RadioState::Receiving;
                    }
                });
            }
            EngineEvent::Audio { .. }
            | EngineEvent::TalkEnded { .. }
            | EngineEvent::FloorFree { .. }
            | EngineEvent::TransmitStopped { .. }
            | EngineEvent::Dropped { .. }
            | EngineEvent::SignedOut
            | EngineEvent::Offline { .. }
            | EngineEvent::Online => {}
        }
        if let Some(station) = self.station() {
            station.forward(&event);
        }
    }

    /// The hotkey (or the panel's talk button) went down.
    pub fn press(&self, app: &AppHandle) {
        // A microphone test must not hold the device a talk needs.
        app.state::<crate::mic_test::MicTest>().stop();
        let (station, room, input_device) = {
            let inner = lock(&self.inner);
            if inner.active.is_some() {
                return; // auto-repeat or a second press while talking
            }
            (
                inner.station.clone(),
                inner.talk_room.clone(),
                inner.input_device.clone(),
            )
        };
        let status = app.state::<SharedStatus>();
        let (Some(station), Some(room)) = (station, room) else {
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
            let outcome = station
                .talk(
                    &room,
                    &Input::Mic(input_device),
                    &TalkOptions::default(),
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
        let tail = self.release_tail();
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
