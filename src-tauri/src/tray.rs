//! The tray icon and its menu (open panel, quit); its tooltip follows the
//! account status.

use tauri::{
    image::Image,
    menu::{Menu, MenuItem, PredefinedMenuItem},
    tray::TrayIconBuilder,
    AppHandle, Manager,
};

use crate::status::Status;

const TRAY_ID: &str = "walkie";
const PANEL: &str = "panel";

pub fn create(app: &AppHandle) -> tauri::Result<()> {
    let open = MenuItem::with_id(app, "open", "Open panel", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Walkie", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&open, &PredefinedMenuItem::separator(app)?, &quit])?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(Image::from_bytes(include_bytes!(
            "../../icons/tray-idle.png"
        ))?)
        .tooltip("Walkie")
        .menu(&menu)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "open" => show_panel(app),
            "quit" => app.exit(0),
            other => tracing::debug!(item = other, "unhandled tray menu item"),
        })
        .build(app)?;
    Ok(())
}

fn show_panel(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(PANEL) {
        if let Err(e) = window.show().and_then(|_| window.set_focus()) {
            tracing::warn!(error = %e, "could not show the panel");
        }
    }
}

pub fn show_status(app: &AppHandle, status: &Status) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        if let Err(e) = tray.set_tooltip(Some(status.summary())) {
            tracing::debug!(error = %e, "could not set the tray tooltip");
        }
    }
}
