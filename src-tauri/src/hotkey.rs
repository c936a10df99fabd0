//! The system-wide push-to-talk shortcut (X11 through global-hotkey; see
//! the README for Wayland). Two modes: **hold** (talk while held; the talk
//! ends after the release tail) and **toggle** (press to start, press again
//! to stop). Rebinding from the panel unregisters the old combination only
//! once the new one is registered, so a combination that is taken (by
//! another program's grab) leaves the old one working and says why. Where
//! no shortcut can be registered (a Wayland session without X11) the app
//! says so once, in the log and the panel, and keeps running.

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager};
use tauri_plugin_global_shortcut::{GlobalShortcutExt, ShortcutState};

use crate::{radio::Radio, status::SharedStatus};

/// How the shortcut talks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HotkeyMode {
    #[default]
    Hold,
    Toggle,
}

impl HotkeyMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hold" => Some(Self::Hold),
            "toggle" => Some(Self::Toggle),
            _ => None,
        }
    }
}

fn on_event(app: &AppHandle, state: ShortcutState) {
    let radio = app.state::<Radio>();
    let mode = app.state::<SharedStatus>().get().hotkey_mode;
    match (mode, state) {
        (HotkeyMode::Hold, ShortcutState::Pressed) => radio.press(app),
        (HotkeyMode::Hold, ShortcutState::Released) => radio.release(app),
        (HotkeyMode::Toggle, ShortcutState::Pressed) => {
            if radio.talking() {
                radio.release(app);
            } else {
                radio.press(app);
            }
        }
        (HotkeyMode::Toggle, ShortcutState::Released) => {}
    }
}

/// Why `shortcut` cannot be used, in words for the panel.
fn why_not(shortcut: &str, error: &dyn std::fmt::Display) -> String {
    if let Err(e) = shortcut.parse::<tauri_plugin_global_shortcut::Shortcut>() {
        return format!("{shortcut} is not a shortcut ({e}); write it like ctrl+alt+Space");
    }
    if std::env::var_os("WAYLAND_DISPLAY").is_some() && std::env::var_os("DISPLAY").is_none() {
        "global shortcuts need X11 (this is a Wayland session without XWayland); \
         use the panel's talk button"
            .to_owned()
    } else {
        format!("{shortcut} cannot be used ({error}); it may be taken by another program")
    }
}

/// Registers `shortcut` (e.g. `ctrl+alt+Space`) at start.
pub fn register(app: &AppHandle, shortcut: &str, mode: HotkeyMode) {
    let status = app.state::<SharedStatus>();
    status.update(app, |s| s.hotkey_mode = mode);
    let result = app
        .global_shortcut()
        .on_shortcut(shortcut, |app, _shortcut, event| on_event(app, event.state));
    match result {
        Ok(()) => {
            tracing::info!(shortcut, ?mode, "push-to-talk shortcut registered");
            status.update(app, |s| {
                s.hotkey = Some(shortcut.to_owned());
                s.hotkey_error = None;
            });
        }
        Err(e) => {
            let why = why_not(shortcut, &e);
            tracing::warn!(shortcut, reason = %why, "no push-to-talk shortcut");
            status.update(app, |s| {
                s.hotkey = None;
                s.hotkey_error = Some(why);
            });
        }
    }
}

/// Rebinds to `shortcut` in `mode`. On failure the old shortcut stays and
/// the error says why.
pub fn rebind(app: &AppHandle, shortcut: &str, mode: HotkeyMode) -> Result<(), String> {
    let status = app.state::<SharedStatus>();
    let old = status.get().hotkey;
    let shortcuts = app.global_shortcut();
    if old.as_deref() != Some(shortcut) {
        shortcuts
            .on_shortcut(shortcut, |app, _shortcut, event| on_event(app, event.state))
            .map_err(|e| why_not(shortcut, &e))?;
        if let Some(old) = &old {
            if let Err(e) = shortcuts.unregister(old.as_str()) {
                tracing::warn!(shortcut = %old, error = %e, "old shortcut not released");
            }
        }
    }
    tracing::info!(shortcut, ?mode, "push-to-talk shortcut registered");
    status.update(app, |s| {
        s.hotkey = Some(shortcut.to_owned());
        s.hotkey_error = None;
        s.hotkey_mode = mode;
    });
    let data_dir = &app.state::<crate::config::AppConfig>().data_dir;
    crate::settings::Settings::update(data_dir, |s| {
        s.hotkey = Some(shortcut.to_owned());
        s.hotkey_mode = Some(mode);
    });
    Ok(())
}
