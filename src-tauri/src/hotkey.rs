//! The system-wide push-to-talk shortcut: in a Wayland session through the
//! desktop portal's GlobalShortcuts (`portal_hotkey`) when the desktop
//! offers it, else X11 through global-hotkey. Two modes: **hold** (talk while held; the talk
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
    tracing::debug!(?state, "push-to-talk key");
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
        "global shortcuts need X11 or a desktop portal that offers them (this \
         Wayland session has neither); use the panel's talk button"
            .to_owned()
    } else {
        format!("{shortcut} cannot be used ({error}); it may be taken by another program")
    }
}

/// Registers `shortcut` (e.g. `ctrl+alt+Space`) at start: through the
/// desktop portal in a Wayland session that offers it, else X11.
pub fn register(app: &AppHandle, shortcut: &str, mode: HotkeyMode) {
    app.state::<SharedStatus>()
        .update(app, |s| s.hotkey_mode = mode);
    if !crate::portal_hotkey::is_wayland_session() {
        register_x11(app, shortcut, mode);
        return;
    }
    let app = app.clone();
    let shortcut = shortcut.to_owned();
    tauri::async_runtime::spawn(async move {
        let edges = app.clone();
        let bound = crate::portal_hotkey::bind(&shortcut, move |edge| {
            let state = match edge {
                crate::portal_hotkey::Edge::Pressed => ShortcutState::Pressed,
                crate::portal_hotkey::Edge::Released => ShortcutState::Released,
            };
            on_event(&edges, state);
        })
        .await;
        match bound {
            Ok(trigger) => {
                tracing::info!(shortcut = %trigger, ?mode, via = "portal", "push-to-talk shortcut registered");
                app.state::<SharedStatus>().update(&app, |s| {
                    s.hotkey = Some(trigger);
                    s.hotkey_error = None;
                    s.hotkey_via_portal = true;
                });
            }
            Err(e) => {
                tracing::info!(error = %e, "no global shortcuts from the desktop portal; trying X11");
                register_x11(&app, &shortcut, mode);
            }
        }
    });
}

/// Registers `shortcut` with X11 (global-hotkey).
fn register_x11(app: &AppHandle, shortcut: &str, mode: HotkeyMode) {
    let status = app.state::<SharedStatus>();
    let result = app
        .global_shortcut()
        .on_shortcut(shortcut, |app, _shortcut, event| on_event(app, event.state));
    match result {
        Ok(()) => {
            tracing::info!(
                shortcut,
                ?mode,
                via = "x11",
                "push-to-talk shortcut registered"
            );
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
    let now = status.get();
    if now.hotkey_via_portal {
        // The desktop owns the keys; the mode is ours.
        status.update(app, |s| s.hotkey_mode = mode);
        let data_dir = &app.state::<crate::config::AppConfig>().data_dir;
        crate::settings::Settings::update(data_dir, |s| s.hotkey_mode = Some(mode));
        if now.hotkey.as_deref() != Some(shortcut) {
            return Err(
                "The desktop assigns this shortcut (Wayland): change its keys in the \
                        system settings' keyboard shortcuts. The mode was saved."
                    .into(),
            );
        }
        return Ok(());
    }
    let old = now.hotkey;
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
    tracing::info!(
        shortcut,
        ?mode,
        via = "x11",
        "push-to-talk shortcut registered"
    );
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
