//! Walkie desktop app: a tray icon, the panel window, and the signed-in
//! engine behind them. Thin shell: Matrix logic lives in walkie-core.
#![recursion_limit = "256"]

mod commands;
mod config;
mod hotkey;
mod log_noise;
mod logging;
mod mic_test;
mod portal_hotkey;
mod radio;
mod second_start;
mod session;
mod settings;
mod shutdown;
mod status;
mod tray;
mod trust;

use tauri::{webview::PageLoadEvent, Manager, WindowEvent};

/// Start in the tray with the panel hidden (as the desktop session's
/// autostart does); the tray's "Open panel" shows it.
const IN_TRAY_ARG: &str = "--hidden";

/// Whether a start's arguments (program name first) ask for the tray only.
fn starts_in_tray(args: &[String]) -> bool {
    args.iter().skip(1).any(|a| a == IN_TRAY_ARG)
}

fn main() -> anyhow::Result<()> {
    walkie_core::make_created_files_private();
    let config = config::AppConfig::from_env()?;
    // Logs go to stderr and to a daily file in the data directory (the
    // place to look when something went wrong; kept 7 days).
    let _log_guard = logging::init(&config.data_dir);
    tracing::info!(data_dir = %config.data_dir.display(), "starting walkie-app");

    let built = tauri::Builder::default()
        // First: a second start only brings the running app's panel up.
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            if starts_in_tray(&args) {
                // The desktop session starting again: it stays in the tray.
                tracing::info!("second start in the tray: nothing to show");
                return;
            }
            tracing::info!("second start: showing the running app's panel");
            tray::on_menu(app, "open");
        }))
        .plugin(tauri_plugin_global_shortcut::Builder::new().build())
        .plugin(tauri_plugin_notification::init())
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .app_name("walkie")
                // Started with the desktop session: in the tray, no panel.
                .arg(IN_TRAY_ARG)
                .build(),
        )
        .manage(status::SharedStatus::default())
        .manage(radio::Radio::default())
        .manage(session::Running::default())
        .manage(mic_test::MicTest::default())
        .manage(trust::Verifying::default())
        .manage(config.clone())
        .invoke_handler(tauri::generate_handler![
            status::status,
            commands::sign_in,
            commands::sign_out,
            commands::groups,
            commands::grant_consent,
            commands::set_recordings,
            commands::revoke_consent,
            commands::other_rooms,
            commands::make_group,
            commands::set_talk_room,
            commands::set_muted,
            commands::talk_press,
            commands::talk_release,
            commands::unplayed_talks,
            commands::play_talk,
            commands::skip_talk,
            commands::set_cues,
            commands::set_hotkey,
            commands::set_autostart,
            commands::audio_devices,
            commands::set_audio_devices,
            commands::mic_test_start,
            commands::mic_test_stop,
            commands::set_dnd,
            commands::set_group_playback,
            commands::set_person_volume,
            commands::set_release_tail,
            commands::create_group,
            commands::invite,
            trust::recovery_key_saved,
            trust::verify_with_recovery_key,
            trust::verify_with_device,
            trust::verify_confirm,
            trust::verify_cancel,
            trust::accept_identity,
        ])
        .on_page_load(|webview, payload| {
            if payload.event() == PageLoadEvent::Finished {
                let shared = webview.state::<status::SharedStatus>();
                shared.update(webview.app_handle(), |s| s.panel_loaded = true);
            }
        })
        .on_window_event(|window, event| {
            // Closing the panel hides it; the app lives on in the tray.
            if let WindowEvent::CloseRequested { api, .. } = event {
                api.prevent_close();
                if let Err(e) = window.hide() {
                    tracing::warn!(error = %e, "could not hide the panel");
                }
            }
        })
        .setup(move |app| {
            tray::create(app.handle())?;
            if !starts_in_tray(&std::env::args().collect::<Vec<_>>()) {
                tray::show_panel(app.handle());
            }
            let cues = config.cues;
            let tail_ms = config.release_tail.as_millis() as u64;
            app.state::<status::SharedStatus>()
                .update(app.handle(), |s| {
                    s.cues = cues;
                    s.release_tail_ms = tail_ms;
                });
            hotkey::register(app.handle(), &config.hotkey, config.hotkey_mode);
            commands::show_autostart(app.handle());
            shutdown::exit_on_signals(app.handle().clone());
            session::start(app.handle().clone(), config.clone());
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match built {
        Ok(app) => app,
        Err(e) if second_start::is_previous_instance_quitting(&e) => {
            return second_start::start_again(e);
        }
        Err(e) => return Err(e.into()),
    };
    app.run(|_app, event| {
        if let tauri::RunEvent::Exit = event {
            tracing::info!("walkie-app exiting");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn only_the_tray_argument_starts_in_the_tray() {
        assert!(starts_in_tray(&args(&["walkie-app", "--hidden"])));
        assert!(!starts_in_tray(&args(&["walkie-app"])));
        // The program's own name is not an argument.
        assert!(!starts_in_tray(&args(&["--hidden"])));
        assert!(!starts_in_tray(&args(&["walkie-app", "--hide"])));
    }
}
