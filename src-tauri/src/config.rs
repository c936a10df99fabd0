//! Start-up configuration of the app, from the environment.
//!
//! `WALKIE_HOMESERVER` (URL or server name), `WALKIE_USER` and
//! `WALKIE_PASSWORD` sign in at start; `WALKIE_DATA_DIR` overrides where the
//! account's local store lives (default: `$XDG_DATA_HOME/walkie`).
//! `WALKIE_HOTKEY` is the push-to-talk shortcut (default `ctrl+alt+Space`,
//! rarely bound elsewhere), `WALKIE_HOTKEY_MODE` `hold` (default) or
//! `toggle`, `WALKIE_RELEASE_TAIL_MS` how long a talk goes on
//! after the key is released (default 250 ms, so the last syllable is not
//! cut), `WALKIE_TALK_ROOM` the group the hotkey talks into at start. Each
//! of these, when unset, comes from the saved settings (`settings.rs`).

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct Credentials {
    pub homeserver: String,
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub data_dir: PathBuf,
    /// `None`: nothing to sign in with; the panel says so.
    pub credentials: Option<Credentials>,
    pub hotkey: String,
    pub hotkey_mode: crate::hotkey::HotkeyMode,
    pub release_tail: Duration,
    pub talk_room: Option<String>,
    pub cues: walkie_audio::cues::CueSettings,
}

/// Default push-to-talk shortcut.
pub const DEFAULT_HOTKEY: &str = "ctrl+alt+Space";
/// Default release tail.
pub const DEFAULT_RELEASE_TAIL_MS: u64 = 250;
/// Longest release tail the user may set.
pub const MAX_RELEASE_TAIL_MS: u64 = 2_000;

impl AppConfig {
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let data_dir = match var("WALKIE_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => match var("XDG_DATA_HOME") {
                Some(d) => PathBuf::from(d).join("walkie"),
                None => {
                    PathBuf::from(var("HOME").context("neither XDG_DATA_HOME nor HOME is set")?)
                        .join(".local/share/walkie")
                }
            },
        };
        // The user's saved choices; the environment wins over them.
        let saved = crate::settings::Settings::load(&data_dir);
        let credentials = match (
            var("WALKIE_HOMESERVER"),
            var("WALKIE_USER"),
            var("WALKIE_PASSWORD"),
        ) {
            (Some(homeserver), Some(user), Some(password)) => Some(Credentials {
                homeserver,
                user,
                password,
            }),
            (None, None, None) => None,
            _ => bail!("set all of WALKIE_HOMESERVER, WALKIE_USER and WALKIE_PASSWORD, or none"),
        };
        let release_tail_ms = match var("WALKIE_RELEASE_TAIL_MS") {
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|&ms| ms <= MAX_RELEASE_TAIL_MS)
                .with_context(|| format!("WALKIE_RELEASE_TAIL_MS={v}: give 0 to 2000 ms"))?,
            None => saved
                .release_tail_ms
                .filter(|&ms| ms <= MAX_RELEASE_TAIL_MS)
                .unwrap_or(DEFAULT_RELEASE_TAIL_MS),
        };
        Ok(Self {
            data_dir,
            credentials,
            hotkey: var("WALKIE_HOTKEY")
                .or(saved.hotkey)
                .unwrap_or_else(|| DEFAULT_HOTKEY.to_owned()),
            hotkey_mode: match var("WALKIE_HOTKEY_MODE") {
                Some(m) => crate::hotkey::HotkeyMode::parse(&m)
                    .with_context(|| format!("WALKIE_HOTKEY_MODE={m}: give hold or toggle"))?,
                None => saved.hotkey_mode.unwrap_or_default(),
            },
            cues: saved.cues.unwrap_or_default(),
            release_tail: Duration::from_millis(release_tail_ms),
            talk_room: var("WALKIE_TALK_ROOM").or(saved.talk_room),
        })
    }
}
