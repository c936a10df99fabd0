//! The user's playback choices for the radio: each group's volume, mute and
//! priority, each person's volume, and the release tail. Saved in the
//! settings, handed to the station (which applies them with "mute all")
//! at sign-in and on every change; the release tail applies from the next
//! release.

use std::time::Duration;

use tauri::{AppHandle, Manager};

use super::Radio;
use crate::{
    config::{AppConfig, MAX_RELEASE_TAIL_MS},
    settings::{GroupPlayback, Settings},
};

/// Checks a volume from the panel (0.0..=2.0).
fn check_volume(volume: f32) -> Result<(), String> {
    if (0.0..=walkie_audio::mixing_queue::MAX_VOLUME).contains(&volume) {
        Ok(())
    } else {
        Err(format!("volume {volume} is outside 0 to 200 %"))
    }
}

impl Radio {
    /// Hands the saved group and person settings to the station (at
    /// sign-in, before any talk is heard).
    pub(super) fn apply_saved_mixing(&self, app: &AppHandle) {
        let Some(station) = self.station() else {
            return;
        };
        let saved = Settings::load(&app.state::<AppConfig>().data_dir);
        for (group, playback) in &saved.groups {
            if check_volume(playback.volume).is_ok() {
                station.set_group(group, (*playback).into());
            } else {
                tracing::warn!(%group, volume = playback.volume, "saved group volume out of range; ignored");
            }
        }
        for (person, &volume) in &saved.people {
            if check_volume(volume).is_ok() {
                station.set_sender_volume(person, volume);
            } else {
                tracing::warn!(%person, volume, "saved volume out of range; ignored");
            }
        }
    }

    /// Changes a group's volume, mute or priority (`change` edits the saved
    /// ones, so a change to one never undoes another); saved, and applied
    /// at once.
    pub fn set_group_playback(
        &self,
        app: &AppHandle,
        room: &str,
        change: impl FnOnce(&mut GroupPlayback),
    ) -> Result<(), String> {
        let station = self.station().ok_or("Not signed in")?;
        let data_dir = &app.state::<AppConfig>().data_dir;
        let mut playback = Settings::load(data_dir)
            .groups
            .get(room)
            .copied()
            .unwrap_or_default();
        change(&mut playback);
        check_volume(playback.volume)?;
        station.set_group(room, playback.into());
        Settings::update(data_dir, |s| {
            s.groups.insert(room.to_owned(), playback);
        });
        tracing::info!(
            room,
            volume = playback.volume,
            muted = playback.muted,
            priority = playback.priority,
            "group playback set"
        );
        Ok(())
    }

    /// One person's volume in every group (1.0: as sent); saved.
    pub fn set_person_volume(
        &self,
        app: &AppHandle,
        user: &str,
        volume: f32,
    ) -> Result<(), String> {
        check_volume(volume)?;
        let station = self.station().ok_or("Not signed in")?;
        station.set_sender_volume(user, volume);
        Settings::update(&app.state::<AppConfig>().data_dir, |s| {
            if volume == 1.0 {
                s.people.remove(user);
            } else {
                s.people.insert(user.to_owned(), volume);
            }
        });
        tracing::info!(user, volume, "person volume set");
        Ok(())
    }

    /// How long a talk goes on after the key is released; saved.
    pub fn set_release_tail(&self, app: &AppHandle, tail_ms: u64) -> Result<(), String> {
        if tail_ms > MAX_RELEASE_TAIL_MS {
            return Err(format!("give 0 to {MAX_RELEASE_TAIL_MS} ms"));
        }
        *self.release_tail.lock().unwrap_or_else(|p| p.into_inner()) =
            Duration::from_millis(tail_ms);
        Settings::update(&app.state::<AppConfig>().data_dir, |s| {
            s.release_tail_ms = Some(tail_ms)
        });
        app.state::<crate::status::SharedStatus>()
            .update(app, |s| s.release_tail_ms = tail_ms);
        tracing::info!(tail_ms, "release tail set");
        Ok(())
    }

    /// The release tail now.
    pub fn release_tail(&self) -> Duration {
        *self.release_tail.lock().unwrap_or_else(|p| p.into_inner())
    }
}
