//! The user's choices that outlive a restart: the push-to-talk shortcut and
//! its mode, the release tail, which cues sound, the group the hotkey talks
//! into, the microphone and speakers, each group's volume, mute and
//! priority, and each person's volume. Kept as
//! `settings.json` in the data directory (nothing secret: the session is in
//! the keyring). Environment variables, when set, win over the file (the
//! run script and tests set them). A missing or unreadable file gives the
//! defaults, with a log line; a write goes to a temporary file first.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use walkie_audio::cues::CueSettings;

use crate::hotkey::HotkeyMode;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    pub hotkey: Option<String>,
    pub hotkey_mode: Option<HotkeyMode>,
    pub cues: Option<CueSettings>,
    pub talk_room: Option<String>,
    /// Capture and output device names (`None`: the system's default).
    pub input_device: Option<String>,
    pub output_device: Option<String>,
    /// How long a talk goes on after the key is released.
    pub release_tail_ms: Option<u64>,
    /// Per walkie group (room id): its playback.
    pub groups: BTreeMap<String, GroupPlayback>,
    /// Per person (user id): their volume, 1.0 as sent.
    pub people: BTreeMap<String, f32>,
}

/// A group's playback as the user set it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GroupPlayback {
    /// 0.0..=2.0, 1.0 as sent.
    pub volume: f32,
    /// Its talks are held for the user instead of played.
    pub muted: bool,
    /// Higher plays first among waiting talks (never cuts one off).
    pub priority: i32,
}

impl Default for GroupPlayback {
    fn default() -> Self {
        let d = walkie_audio::mixing_queue::GroupSettings::default();
        Self {
            volume: d.volume,
            muted: d.muted,
            priority: d.priority,
        }
    }
}

impl From<GroupPlayback> for walkie_audio::mixing_queue::GroupSettings {
    fn from(g: GroupPlayback) -> Self {
        Self {
            muted: g.muted,
            volume: g.volume,
            priority: g.priority,
        }
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("settings.json")
}

impl Settings {
    pub fn load(data_dir: &Path) -> Self {
        match std::fs::read(path(data_dir)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "settings.json is unreadable; using the defaults");
                Self::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read settings.json; using the defaults");
                Self::default()
            }
        }
    }

    /// Applies `change` to the saved settings and writes them.
    pub fn update(data_dir: &Path, change: impl FnOnce(&mut Settings)) {
        let mut settings = Self::load(data_dir);
        change(&mut settings);
        if let Err(e) = settings.save(data_dir) {
            tracing::warn!(error = %e, "settings not saved");
        }
    }

    fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let tmp = data_dir.join("settings.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(tmp, path(data_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_files_give_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()), Settings::default());
        Settings::update(dir.path(), |s| {
            s.hotkey = Some("ctrl+alt+KeyT".into());
            s.hotkey_mode = Some(HotkeyMode::Toggle);
        });
        let loaded = Settings::load(dir.path());
        assert_eq!(loaded.hotkey.as_deref(), Some("ctrl+alt+KeyT"));
        assert_eq!(loaded.hotkey_mode, Some(HotkeyMode::Toggle));
        Settings::update(dir.path(), |s| {
            s.groups.insert(
                "!g:x".into(),
                GroupPlayback {
                    volume: 0.5,
                    muted: true,
                    priority: 1,
                },
            );
            s.people.insert("@bob:x".into(), 1.5);
            s.release_tail_ms = Some(600);
        });
        let loaded = Settings::load(dir.path());
        assert_eq!(loaded.groups["!g:x"].volume, 0.5);
        assert_eq!(loaded.people["@bob:x"], 1.5);
        assert_eq!(loaded.release_tail_ms, Some(600));
        // An older file without the newer keys still loads.
        std::fs::write(
            dir.path().join("settings.json"),
            br#"{"hotkey":"ctrl+KeyX"}"#,
        )
        .unwrap();
        assert_eq!(Settings::load(dir.path()).groups.len(), 0);
        std::fs::write(dir.path().join("settings.json"), b"{not json").unwrap();
        assert_eq!(Settings::load(dir.path()), Settings::default());
    }
}
