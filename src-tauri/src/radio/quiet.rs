//! Quiet hours for the radio: do not disturb (every group muted for a
//! while or until turned off, a timer that only ends the latest setting)
//! and the desktop notification for each talk held meanwhile, naming who
//! talked where.

use std::time::Duration;

use tauri::{AppHandle, Manager};

use super::{lock, Radio};
use crate::status::SharedStatus;

impl Radio {
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

    /// A talk was held (not played) while do not disturb is on: a desktop
    /// notification says who talked where, once per talk.
    pub(super) fn notify_missed(&self, app: &AppHandle, session: &str, group: &str) {
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
}
