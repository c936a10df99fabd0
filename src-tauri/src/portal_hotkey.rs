//! Push-to-talk on Wayland, where an app cannot grab keys itself: the
//! desktop portal's GlobalShortcuts interface (through ashpd) binds one
//! shortcut in a portal session, and its `Activated` / `Deactivated`
//! signals are the key's press and release. The desktop (or the user, in
//! its settings) picks the keys; ours is only the preferred trigger,
//! written as the XDG shortcuts specification does (`CTRL+ALT+space`).

use ashpd::desktop::{
    global_shortcuts::{BindShortcutsOptions, GlobalShortcuts, NewShortcut},
    CreateSessionOptions,
};
use futures_util::StreamExt;

/// The shortcut's id in the portal session.
pub const SHORTCUT_ID: &str = "push-to-talk";

/// The key went down or up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Pressed,
    Released,
}

/// Whether this is a Wayland session (where the portal is the way).
pub fn is_wayland_session() -> bool {
    std::env::var("XDG_SESSION_TYPE").is_ok_and(|t| t == "wayland")
        || std::env::var_os("WAYLAND_DISPLAY").is_some()
}

/// Our shortcut (`ctrl+alt+Space`, `shift+KeyT`, the global-hotkey
/// spelling) as an XDG shortcuts trigger (`CTRL+ALT+space`, `SHIFT+t`).
pub fn preferred_trigger(shortcut: &str) -> String {
    shortcut
        .split('+')
        .map(|part| match part.to_ascii_lowercase().as_str() {
            "ctrl" | "control" => "CTRL".to_owned(),
            "alt" | "option" => "ALT".to_owned(),
            "shift" => "SHIFT".to_owned(),
            "super" | "meta" | "cmd" | "command" | "cmdorctrl" => "LOGO".to_owned(),
            "space" => "space".to_owned(),
            "enter" | "return" => "Return".to_owned(),
            "escape" | "esc" => "Escape".to_owned(),
            "tab" => "Tab".to_owned(),
            _ => {
                let key = part
                    .strip_prefix("Key")
                    .or_else(|| part.strip_prefix("Digit"))
                    .unwrap_or(part);
                if key.len() == 1 {
                    key.to_ascii_lowercase()
                } else {
                    key.to_owned()
                }
            }
        })
        .collect::<Vec<_>>()
        .join("+")
}

/// Binds the push-to-talk shortcut through the portal; `on_edge` then gets
/// every press and release until the app exits. Returns how the desktop
/// describes the trigger it assigned (the preferred one if it says none).
pub async fn bind(
    shortcut: &str,
    on_edge: impl Fn(Edge) + Send + 'static,
) -> Result<String, ashpd::Error> {
    let portal = GlobalShortcuts::new().await?;
    let session = portal
        .create_session(CreateSessionOptions::default())
        .await?;
    let preferred = preferred_trigger(shortcut);
    let wanted = [NewShortcut::new(SHORTCUT_ID, "Push to talk (Walkie)")
        .preferred_trigger(preferred.as_str())];
    // Subscribed before binding, so no early press is missed.
    let mut activated = portal.receive_activated().await?;
    let mut deactivated = portal.receive_deactivated().await?;
    let bound = portal
        .bind_shortcuts(&session, &wanted, None, BindShortcutsOptions::default())
        .await?
        .response()?;
    let trigger = bound
        .shortcuts()
        .iter()
        .find(|s| s.id() == SHORTCUT_ID)
        .map(|s| s.trigger_description().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or(preferred);
    tauri::async_runtime::spawn(async move {
        // The portal and the session live as long as this task: the
        // shortcut stays bound while the app runs.
        // The portal sends the signals to the session's owner only (this
        // app, which has the one session), so the id tells them apart.
        let _keep = (&portal, &session);
        loop {
            let edge = tokio::select! {
                Some(a) = activated.next() => {
                    (a.shortcut_id() == SHORTCUT_ID).then_some(Edge::Pressed)
                }
                Some(d) = deactivated.next() => {
                    (d.shortcut_id() == SHORTCUT_ID).then_some(Edge::Released)
                }
                else => break,
            };
            if let Some(edge) = edge {
                on_edge(edge);
            }
        }
        tracing::warn!("the desktop portal's shortcut signals ended");
    });
    Ok(trigger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_become_xdg_triggers() {
        assert_eq!(preferred_trigger("ctrl+alt+Space"), "CTRL+ALT+space");
        assert_eq!(preferred_trigger("shift+KeyT"), "SHIFT+t");
        assert_eq!(preferred_trigger("super+Digit1"), "LOGO+1");
        assert_eq!(preferred_trigger("ctrl+F5"), "CTRL+F5");
    }
}
