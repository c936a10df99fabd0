//! The system-wide push-to-talk shortcut (X11 through global-hotkey; see
//! docs for Wayland): held down, it talks into the selected group; released,
//! the talk ends after the release tail. Where the shortcut cannot be
//! registered (taken by another program, or a Wayland session without X11)
//! the app says so once, in the log and the panel, and keeps running.

use tauri::{AppHandle, Manager};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, ShortcutState};

use crate::{radio::Radio, status::SharedStatus};

/// Registers `shortcut` (e.g. `ctrl+alt+Space`) for hold-to-talk.
pub fn register(app: &AppHandle, shortcut: &str) {
    let result = app
        .global_shortcut()
        .on_shortcut(shortcut, |app, _shortcut, event| {
            let radio = app.state::<Radio>();
            match event.state {
                ShortcutState::Pressed => radio.press(app),
                ShortcutState::Released => radio.release(app),
            }
        });
    let status = app.state::<SharedStatus>();
    match result {
        Ok(()) => {
            tracing::info!(shortcut, "push-to-talk shortcut registered");
            status.update(app, |s| {
                s.hotkey = Some(shortcut.to_owned());
                s.hotkey_error = None;
            });
        }
        Err(e) => {
            let why = if std::env::var_os("WAYLAND_DISPLAY").is_some()
                && std::env::var_os("DISPLAY").is_none()
            {
                "global shortcuts need X11 (this is a Wayland session without XWayland); \
                 use the panel's talk button"
                    .to_owned()
            } else {
                format!(
                    "{shortcut} could not be registered ({e}); it may be taken by another program"
                )
            };
            tracing::warn!(shortcut, reason = %why, "no push-to-talk shortcut");
            status.update(app, |s| {
                s.hotkey = None;
                s.hotkey_error = Some(why);
            });
        }
    }
}
