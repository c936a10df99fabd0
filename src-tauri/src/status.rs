//! What the app shows: the account state, shared by the tray tooltip, the
//! panel (through the `status` command and `status` events) and the log line
//! that tells scripts and tests the app is ready.

use std::sync::Mutex;

use serde::Serialize;
use tauri::{AppHandle, Emitter};
use walkie_core::trust::OwnDeviceState;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    #[default]
    SignedOut,
    SigningIn,
    Online,
    Offline,
    Failed,
}

/// What the walkie is doing, as the tray icon shows it.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RadioState {
    #[default]
    Idle,
    /// The user holds the hotkey and the floor.
    Talking,
    /// Someone else's talk is playing.
    Receiving,
    /// The user pressed while someone else holds the floor.
    Busy,
    /// All groups muted: talks are held, nothing plays.
    Muted,
    /// Not signed in or no connection.
    Offline,
}

impl RadioState {
    pub fn label(self) -> &'static str {
        match self {
            RadioState::Idle => "idle",
            RadioState::Talking => "talking",
            RadioState::Receiving => "receiving",
            RadioState::Busy => "floor busy",
            RadioState::Muted => "muted",
            RadioState::Offline => "offline",
        }
    }
}

/// A walkie group as the tray menu and the panel list it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GroupEntry {
    pub room_id: String,
    pub name: String,
}

/// The recovery key of the cross-signing identity this sign-in created,
/// shown once in the panel until the user says they saved it. Serialised
/// for the panel only; debug output never shows it, nothing stores it.
#[derive(Clone, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct RecoveryKey(pub String);

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryKey(hidden)")
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub radio: RadioState,
    /// Who is talking (receiving) or holds the floor (busy).
    pub talker: Option<String>,
    pub groups: Vec<GroupEntry>,
    /// The group the hotkey talks into.
    pub talk_room: Option<String>,
    pub muted: bool,
    /// Do not disturb is on (all groups muted), until `dnd_until` (ms since
    /// the epoch) or until turned off (`None`).
    pub dnd: bool,
    pub dnd_until: Option<u64>,
    /// Bumped whenever the mixing queue changed (talk queued, held, played,
    /// skipped, evicted): the panel then re-reads the unplayed talks.
    pub queue_version: u64,
    /// Walkie starts with the desktop session.
    pub autostart: bool,
    /// Which cues sound.
    pub cues: walkie_audio::cues::CueSettings,
    /// How long a talk goes on after the key is released.
    pub release_tail_ms: u64,
    /// The push-to-talk shortcut, or why there is none.
    pub hotkey: Option<String>,
    pub hotkey_error: Option<String>,
    pub hotkey_mode: crate::hotkey::HotkeyMode,
    /// The shortcut is the desktop portal's (Wayland): the desktop owns
    /// its keys.
    pub hotkey_via_portal: bool,
    pub account: AccountState,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub homeserver: Option<String>,
    pub joined_rooms: usize,
    pub error: Option<String>,
    /// This device's standing in its account (`None`: not known yet).
    pub device_state: Option<OwnDeviceState>,
    /// Shown once after the sign-in that created the account's identity.
    pub recovery_key: Option<RecoveryKey>,
    /// Users whose identity changed and who are not talked to until the
    /// user accepts it.
    pub identity_changed: Vec<String>,
    #[serde(skip)]
    pub panel_loaded: bool,
    #[serde(skip)]
    pub ready_announced: bool,
}

impl Status {
    /// The tray tooltip: state, talk room, who is talking.
    pub fn summary(&self) -> String {
        match (&self.account, &self.user_id) {
            (AccountState::Online, Some(_)) => {
                let state = if self.dnd && self.radio == RadioState::Muted {
                    "do not disturb"
                } else {
                    self.radio.label()
                };
                let mut line = format!("Walkie — {state}");
                if let Some(talker) = &self.talker {
                    if matches!(self.radio, RadioState::Receiving | RadioState::Busy) {
                        line.push_str(&format!(": {talker}"));
                    }
                }
                let room = self
                    .talk_room
                    .as_ref()
                    .map(|r| {
                        self.groups
                            .iter()
                            .find(|g| &g.room_id == r)
                            .map_or(r.as_str(), |g| g.name.as_str())
                    })
                    .unwrap_or("no walkie group");
                line.push_str(&format!("\nTalk room: {room}"));
                line
            }
            (AccountState::SigningIn, _) => "Walkie — signing in…".into(),
            (AccountState::Offline, _) => "Walkie — offline".into(),
            (AccountState::Failed, _) => "Walkie — sign-in failed".into(),
            _ => "Walkie — signed out".into(),
        }
    }

    /// After a change of account or mute: idle, muted or offline (talking,
    /// receiving and busy are set by what happens).
    pub fn refresh_radio(&mut self) {
        if matches!(
            self.radio,
            RadioState::Talking | RadioState::Receiving | RadioState::Busy
        ) {
            return;
        }
        self.radio = if self.account != AccountState::Online {
            RadioState::Offline
        } else if self.muted {
            RadioState::Muted
        } else {
            RadioState::Idle
        };
    }

    /// Ready: the panel is loaded and the account is settled (online, or
    /// there is nothing to sign in with, or sign-in failed).
    fn is_ready(&self) -> bool {
        self.panel_loaded
            && matches!(
                self.account,
                AccountState::Online | AccountState::SignedOut | AccountState::Failed
            )
    }
}

#[derive(Debug, Default)]
pub struct SharedStatus(Mutex<Status>);

impl SharedStatus {
    /// Applies `change`, then tells the panel and the tray, and announces
    /// readiness once.
    pub fn update(&self, app: &AppHandle, change: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut s);
            s.refresh_radio();
            if s.is_ready() && !s.ready_announced {
                s.ready_announced = true;
                tracing::info!(
                    account = ?s.account,
                    user = s.user_id.as_deref().unwrap_or("-"),
                    "walkie-app ready"
                );
            }
            s.clone()
        };
        crate::tray::show_status(app, &snapshot);
        if crate::tray::panel_shown(app) {
            send_to_panel(app, &snapshot);
        }
    }

    /// Brings a panel just shown up to date (it was told nothing while
    /// hidden).
    pub fn send_to_panel(&self, app: &AppHandle) {
        send_to_panel(app, &self.get());
    }

    pub fn get(&self) -> Status {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Tells the panel. Only while it is shown: a hidden panel (the app in the
/// tray, most of its life) would redraw for every talk that nobody sees,
/// and the webview's memory creeps with its redraws.
fn send_to_panel(app: &AppHandle, snapshot: &Status) {
    if let Err(e) = app.emit("status", snapshot) {
        tracing::warn!(error = %e, "could not send the status to the panel");
    }
}

/// The panel asks for the current status when it opens.
#[tauri::command]
pub fn status(state: tauri::State<'_, SharedStatus>) -> Status {
    state.get()
}
