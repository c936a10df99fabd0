//! The tray icon and its menu. The icon shows the radio state (one icon per
//! state in `icons/`), the tooltip the state, the talk room and who talks;
//! the menu lists the walkie groups as radio items (the checked one is where
//! the hotkey talks), mute all, do not disturb (1 h / until turned off),
//! open panel, sign out and quit. Everything is redrawn
//! from the shared `Status`, so menu, tooltip and panel always agree.

use std::sync::Mutex;

use tauri::{
    image::Image,
    menu::{CheckMenuItem, IsMenuItem, Menu, MenuItem, PredefinedMenuItem},
    tray::TrayIconBuilder,
    AppHandle, Manager, Wry,
};

use crate::{
    radio::Radio,
    status::{RadioState, Status},
};

const TRAY_ID: &str = "walkie";
const PANEL: &str = "panel";
const ROOM_PREFIX: &str = "room:";

/// What the current menu and icon were drawn from; redraw only on change.
static DRAWN: Mutex<Option<(String, RadioState)>> = Mutex::new(None);

fn icon(state: RadioState) -> tauri::Result<Image<'static>> {
    let bytes: &'static [u8] = match state {
        RadioState::Idle => include_bytes!("../../icons/tray-idle.png"),
        RadioState::Talking => include_bytes!("../../icons/tray-talking.png"),
        RadioState::Receiving => include_bytes!("../../icons/tray-receiving.png"),
        RadioState::Busy => include_bytes!("../../icons/tray-busy.png"),
        RadioState::Muted => include_bytes!("../../icons/tray-muted.png"),
        RadioState::Offline => include_bytes!("../../icons/tray-offline.png"),
    };
    Image::from_bytes(bytes)
}

fn menu(app: &AppHandle, status: &Status) -> tauri::Result<Menu<Wry>> {
    let mut items: Vec<Box<dyn IsMenuItem<Wry>>> = Vec::new();
    if status.groups.is_empty() {
        items.push(Box::new(MenuItem::with_id(
            app,
            "no-groups",
            "No walkie groups yet",
            false,
            None::<&str>,
        )?));
    }
    for group in &status.groups {
        let checked = status.talk_room.as_deref() == Some(group.room_id.as_str());
        items.push(Box::new(CheckMenuItem::with_id(
            app,
            format!("{ROOM_PREFIX}{}", group.room_id),
            &group.name,
            true,
            checked,
            None::<&str>,
        )?));
    }
    items.push(Box::new(PredefinedMenuItem::separator(app)?));
    items.push(Box::new(CheckMenuItem::with_id(
        app,
        "mute",
        "Mute all",
        true,
        status.muted,
        None::<&str>,
    )?));
    if status.dnd {
        items.push(Box::new(MenuItem::with_id(
            app,
            "dnd-off",
            "Turn off do not disturb",
            true,
            None::<&str>,
        )?));
    } else {
        items.push(Box::new(MenuItem::with_id(
            app,
            "dnd-1h",
            "Do not disturb for 1 hour",
            true,
            None::<&str>,
        )?));
        items.push(Box::new(MenuItem::with_id(
            app,
            "dnd-on",
            "Do not disturb until I turn it off",
            true,
            None::<&str>,
        )?));
    }
    items.push(Box::new(MenuItem::with_id(
        app,
        "open",
        "Open panel",
        true,
        None::<&str>,
    )?));
    items.push(Box::new(PredefinedMenuItem::separator(app)?));
    items.push(Box::new(MenuItem::with_id(
        app,
        "sign-out",
        "Sign out",
        status.user_id.is_some(),
        None::<&str>,
    )?));
    items.push(Box::new(MenuItem::with_id(
        app,
        "quit",
        "Quit Walkie",
        true,
        None::<&str>,
    )?));
    let refs: Vec<&dyn IsMenuItem<Wry>> = items.iter().map(|i| i.as_ref()).collect();
    Menu::with_items(app, &refs)
}

pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let status = Status::default();
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(icon(RadioState::Offline)?)
        .tooltip("Walkie")
        .menu(&menu(app, &status)?)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .build(app)?;
    Ok(())
}

/// A menu item was chosen (also the path the tests take).
pub fn on_menu(app: &AppHandle, id: &str) {
    let radio = app.state::<Radio>();
    match id {
        "open" => show_panel(app),
        "quit" => app.exit(0),
        "dnd-1h" => radio.set_dnd(app, Some(std::time::Duration::from_secs(3600))),
        "dnd-on" => radio.set_dnd(app, None),
        "dnd-off" => radio.set_dnd(app, Some(std::time::Duration::ZERO)),
        "sign-out" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                if let Err(e) = crate::session::sign_out(&app).await {
                    tracing::warn!(error = %e, "sign-out failed");
                }
            });
        }
        "mute" => {
            let muted = app.state::<crate::status::SharedStatus>().get().muted;
            radio.set_muted(app, !muted);
        }
        other => match other.strip_prefix(ROOM_PREFIX) {
            Some(room) => radio.set_talk_room(app, room),
            None => tracing::debug!(item = other, "unhandled tray menu item"),
        },
    }
}

/// Shows the panel and brings it up to date.
pub fn show_panel(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(PANEL) {
        if let Err(e) = window.show().and_then(|_| window.set_focus()) {
            tracing::warn!(error = %e, "could not show the panel");
        }
    }
    // It heard nothing while hidden.
    app.state::<crate::status::SharedStatus>()
        .send_to_panel(app);
}

/// Whether the panel window is on screen (shown, not closed to the tray).
pub fn panel_shown(app: &AppHandle) -> bool {
    app.get_webview_window(PANEL)
        .is_some_and(|w| w.is_visible().unwrap_or(true))
}

/// Redraws tooltip, icon and (when its content changed) the menu.
pub fn show_status(app: &AppHandle, status: &Status) {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return;
    };
    if let Err(e) = tray.set_tooltip(Some(status.summary())) {
        tracing::debug!(error = %e, "could not set the tray tooltip");
    }
    let menu_key = format!(
        "{:?}|{:?}|{}",
        status.groups, status.talk_room, status.muted
    );
    let mut drawn = DRAWN.lock().unwrap_or_else(|p| p.into_inner());
    let (menu_changed, icon_changed) = match drawn.as_ref() {
        Some((key, state)) => (key != &menu_key, *state != status.radio),
        None => (true, true),
    };
    if icon_changed {
        match icon(status.radio) {
            Ok(image) => {
                if let Err(e) = tray.set_icon(Some(image)) {
                    tracing::debug!(error = %e, "could not set the tray icon");
                }
            }
            Err(e) => tracing::warn!(error = %e, "tray icon unreadable"),
        }
        tracing::info!(state = status.radio.label(), "tray state");
    }
    if menu_changed {
        match menu(app, status) {
            Ok(m) => {
                if let Err(e) = tray.set_menu(Some(m)) {
                    tracing::debug!(error = %e, "could not set the tray menu");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not build the tray menu"),
        }
    }
    *drawn = Some((menu_key, status.radio));
}
