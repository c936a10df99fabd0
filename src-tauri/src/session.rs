//! The account behind the app: signs in at start with the configured
//! credentials, starts the engine (its own sync loop) and hands it to the
//! radio, then feeds the engine's events to the radio and the status.

use tauri::{AppHandle, Manager};
use walkie_audio::queue_store::QueueStore;
use walkie_core::{secrets::Keyring, Account, Engine, EngineEvent, SignInRequest};

use crate::{
    config::AppConfig,
    radio::Radio,
    status::{AccountState, SharedStatus},
};

/// The encrypted store of unplayed talks, its key in the OS keyring. Without
/// a keyring, talks are still queued, only not kept across restarts.
async fn unplayed_store(account_dir: &std::path::Path) -> Option<QueueStore> {
    let name = format!("unplayed-talks-key {}", account_dir.display());
    let key = tokio::task::spawn_blocking(move || Keyring::default().key_256(&name)).await;
    match key {
        Ok(Ok(key)) => match QueueStore::open(account_dir.join("unplayed"), &key) {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(error = %e, "unplayed talks will not be kept");
                None
            }
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no OS keyring: unplayed talks will not survive a restart");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "keyring lookup failed");
            None
        }
    }
}

pub fn start(app: AppHandle, config: AppConfig) {
    let Some(creds) = config.credentials else {
        tracing::info!("no credentials configured; staying signed out");
        app.state::<SharedStatus>()
            .update(&app, |s| s.account = AccountState::SignedOut);
        return;
    };
    tauri::async_runtime::spawn(async move {
        let status = app.state::<SharedStatus>();
        status.update(&app, |s| {
            s.account = AccountState::SigningIn;
            s.homeserver = Some(creds.homeserver.clone());
        });
        let request = SignInRequest {
            server: creds.homeserver.clone(),
            user: creds.user.clone(),
            password: creds.password.clone(),
            device_display_name: "Walkie desktop".into(),
        };
        let dir = config
            .data_dir
            .join("accounts")
            .join(account_dir_name(&creds.homeserver, &creds.user));
        let account = match Account::sign_in(&dir, &request).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "sign-in failed");
                status.update(&app, |s| {
                    s.account = AccountState::Failed;
                    s.error = Some(e.to_string());
                });
                return;
            }
        };
        status.update(&app, |s| {
            s.user_id = Some(account.user_id());
            s.device_id = Some(account.device_id());
            s.homeserver = Some(account.client().homeserver().to_string());
        });

        let (engine, _tasks, mut events) = match Engine::start(&account) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "engine did not start");
                status.update(&app, |s| {
                    s.account = AccountState::Failed;
                    s.error = Some(e.to_string());
                });
                return;
            }
        };
        let store = unplayed_store(&dir).await;
        let radio = app.state::<Radio>();
        radio.attach(
            &app,
            engine,
            store,
            config.talk_room.clone(),
            config.release_tail,
        );
        while let Some(event) = events.recv().await {
            if matches!(event, EngineEvent::Ready | EngineEvent::RoomChanged { .. }) {
                let joined = account.client().joined_rooms().len();
                status.update(&app, |s| {
                    s.account = AccountState::Online;
                    s.joined_rooms = joined;
                    s.error = None;
                });
            }
            radio.on_engine_event(&app, event);
        }
        status.update(&app, |s| s.account = AccountState::Offline);
    });
}

/// A file-system-safe directory name for one account on one server.
fn account_dir_name(server: &str, user: &str) -> String {
    format!("{user}@{server}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::account_dir_name;

    #[test]
    fn account_dir_names_are_safe_and_distinct() {
        let a = account_dir_name("http://127.0.0.1:8008", "alice");
        assert_eq!(a, "alice@http___127.0.0.1_8008");
        assert_ne!(a, account_dir_name("http://127.0.0.1:8009", "alice"));
        assert!(!account_dir_name("x/../y", "../bob").contains('/'));
    }
}
