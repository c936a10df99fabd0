//! The account behind the app. At start: credentials from the environment
//! (the run script, tests) sign in; otherwise the session saved in the OS
//! keyring is restored without asking; otherwise the panel asks. A sign-in
//! saves the session (homeserver, user, device, access token) in the
//! keyring — never in a plain file — and sign-out removes it with the
//! account's local store. A signed-in account runs the engine (its own sync
//! loop), hands it to the radio and feeds its events to radio and status.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager};
use walkie_audio::queue_store::QueueStore;
use walkie_core::{
    matrix_sdk::authentication::matrix::MatrixSession, secrets::Keyring, store_key::Fallback,
    trust::OwnDeviceState, Account, Engine, EngineEvent, EngineTasks, SignInRequest,
};

use crate::{
    config::{AppConfig, Credentials},
    radio::Radio,
    status::{AccountState, RecoveryKey, SharedStatus},
};

/// The keyring entry holding the signed-in session.
const SESSION_ENTRY: &str = "session";

/// What the keyring keeps to restore the session.
#[derive(Serialize, Deserialize)]
struct SavedSession {
    homeserver: String,
    account_dir: PathBuf,
    session: MatrixSession,
}

/// The running account, for sign-out.
#[derive(Default)]
pub struct Running(tokio::sync::Mutex<Option<(Account, EngineTasks)>>);

impl Running {
    /// The signed-in account's Matrix client (for verification).
    pub async fn client(&self) -> Option<walkie_core::matrix_sdk::Client> {
        self.0
            .lock()
            .await
            .as_ref()
            .map(|(account, _)| account.client().clone())
    }
}

pub fn start(app: AppHandle, config: AppConfig) {
    tauri::async_runtime::spawn(async move {
        if let Some(creds) = config.credentials.clone() {
            if let Err(e) = sign_in(&app, &config, &creds).await {
                tracing::error!(error = %e, "sign-in failed");
            }
            return;
        }
        let saved = tokio::task::spawn_blocking(|| Keyring::default().get(SESSION_ENTRY)).await;
        let saved = match saved {
            Ok(Ok(Some(json))) => match serde_json::from_str::<SavedSession>(&json) {
                Ok(saved) => Some(saved),
                Err(e) => {
                    tracing::warn!(error = %e, "the saved session is unreadable; sign in again");
                    None
                }
            },
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "no OS keyring: sign in from the panel");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "keyring lookup failed");
                None
            }
        };
        let status = app.state::<SharedStatus>();
        let Some(saved) = saved else {
            tracing::info!("not signed in; the panel asks");
            status.update(&app, |s| s.account = AccountState::SignedOut);
            return;
        };
        status.update(&app, |s| {
            s.account = AccountState::SigningIn;
            s.homeserver = Some(saved.homeserver.clone());
        });
        match Account::restore(
            &saved.account_dir,
            &saved.homeserver,
            saved.session,
            Fallback::KeyringOnly,
        )
        .await
        {
            Ok(account) => {
                tracing::info!(user = %account.user_id(), "session restored from the keyring");
                run(app.clone(), account, &config).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "the saved session could not be restored");
                status.update(&app, |s| {
                    s.account = AccountState::SignedOut;
                    s.error = Some(format!("Please sign in again ({e})"));
                });
            }
        }
    });
}

/// Signs in with a password, saves the session in the keyring and runs the
/// account. The error is what the panel shows.
pub async fn sign_in(
    app: &AppHandle,
    config: &AppConfig,
    creds: &Credentials,
) -> Result<(), String> {
    let status = app.state::<SharedStatus>();
    status.update(app, |s| {
        s.account = AccountState::SigningIn;
        s.homeserver = Some(creds.homeserver.clone());
        s.error = None;
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
    let account = match Account::sign_in(&dir, &request, Fallback::KeyringOnly).await {
        Ok(a) => a,
        Err(e) => {
            let message = e.to_string();
            status.update(app, |s| {
                s.account = AccountState::Failed;
                s.error = Some(message.clone());
            });
            return Err(message);
        }
    };
    if let Err(e) = save_session(&account).await {
        tracing::warn!(error = %e, "session not saved");
        status.update(app, |s| {
            s.error = Some(format!(
                "Signed in, but the session could not be kept in the OS keyring ({e}); \
                 you will be asked to sign in next time"
            ))
        });
    }
    let app = app.clone();
    let config = config.clone();
    tauri::async_runtime::spawn(async move { run(app, account, &config).await });
    Ok(())
}

async fn save_session(account: &Account) -> Result<(), String> {
    let session = account.session().ok_or("no session after sign-in")?;
    let saved = SavedSession {
        homeserver: account.homeserver(),
        account_dir: account.data_dir().to_owned(),
        session,
    };
    let json = serde_json::to_string(&saved).map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(move || Keyring::default().set(SESSION_ENTRY, &json))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Signs out: the server forgets the device, the keyring the session, the
/// disk the account's store.
pub async fn sign_out(app: &AppHandle) -> Result<(), String> {
    forget_session(app, true).await
}

/// The server ended this device's session (signed out from another client,
/// or the device deleted): forget it here as [`sign_out`] does, without
/// asking the server, so that the next start asks for a sign-in instead of
/// retrying a dead token (and a new device gets a fresh store).
async fn forget_revoked_session(app: &AppHandle) {
    if let Err(e) = forget_session(app, false).await {
        tracing::warn!(error = %e, "the revoked session was not removed from the keyring");
    }
    app.state::<SharedStatus>().update(app, |s| {
        s.error = Some("Signed out elsewhere: please sign in again".into());
    });
}

/// Stops the engine and forgets the session: the keyring entry and the
/// account's store; `tell_server` signs the device out on the server first.
async fn forget_session(app: &AppHandle, tell_server: bool) -> Result<(), String> {
    app.state::<crate::trust::Verifying>().cancel().await;
    let running = app.state::<Running>().0.lock().await.take();
    app.state::<Radio>().detach();
    if let Some((account, tasks)) = running {
        tasks.stop().await;
        if tell_server {
            account.sign_out().await;
        }
        let dir = account.data_dir().to_owned();
        drop(account);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "local store not removed");
        }
    }
    tokio::task::spawn_blocking(|| Keyring::default().delete(SESSION_ENTRY))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    app.state::<SharedStatus>().update(app, |s| {
        s.account = AccountState::SignedOut;
        s.user_id = None;
        s.device_id = None;
        s.groups.clear();
        s.talk_room = None;
        s.error = None;
        s.device_state = None;
        s.recovery_key = None;
        s.identity_changed.clear();
    });
    tracing::info!("signed out");
    Ok(())
}

/// The encrypted store of unplayed talks, its key in the OS keyring. Without
/// a keyring, talks are still queued, only not kept across restarts.
async fn unplayed_store(account_dir: &Path) -> Option<QueueStore> {
    match walkie_core::secrets::unplayed_store(account_dir).await {
        Ok(store) => Some(store),
        Err(e) => {
            tracing::warn!(error = %e, "unplayed talks will not survive a restart");
            None
        }
    }
}

/// Runs a signed-in account until it stops.
async fn run(app: AppHandle, mut account: Account, config: &AppConfig) {
    let status = app.state::<SharedStatus>();
    let recovery_key = account.take_new_recovery_key().map(RecoveryKey);
    status.update(&app, |s| {
        s.user_id = Some(account.user_id());
        s.device_id = Some(account.device_id());
        s.homeserver = Some(account.homeserver());
        // Shown once, until the user says they saved it.
        s.recovery_key = recovery_key;
        s.device_state = None;
        s.identity_changed.clear();
    });
    let (engine, tasks, mut events) = match Engine::start(&account) {
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
    let store = unplayed_store(account.data_dir()).await;
    let radio = app.state::<Radio>();
    radio.attach(
        &app,
        engine,
        store,
        config.talk_room.clone(),
        config.release_tail,
    );
    let counter = account.clone();
    *app.state::<Running>().0.lock().await = Some((account, tasks));
    while let Some(event) = events.recv().await {
        if matches!(event, EngineEvent::Ready | EngineEvent::RoomChanged { .. }) {
            let joined = counter.joined_room_count();
            status.update(&app, |s| {
                s.account = AccountState::Online;
                s.joined_rooms = joined;
            });
            // Trust changes (identities, device signatures) re-read the
            // rooms, so they arrive here as room changes too.
            crate::trust::refresh_identity_changed(&app);
            let unverified = status.get().device_state != Some(OwnDeviceState::Verified);
            if matches!(event, EngineEvent::Ready) || unverified {
                crate::trust::spawn_refresh_device_state(&app);
            }
        }
        match &event {
            // The homeserver cannot be reached: panel and tray say offline
            // until a sync succeeds again (the engine keeps retrying).
            EngineEvent::Offline { reason } => {
                tracing::warn!(%reason, "offline");
                status.update(&app, |s| {
                    if s.account == AccountState::Online {
                        s.account = AccountState::Offline;
                    }
                    s.error = Some("Offline: the homeserver cannot be reached; retrying".into());
                })
            }
            EngineEvent::Online => status.update(&app, |s| {
                if s.account == AccountState::Offline {
                    s.account = AccountState::Online;
                }
                s.error = None;
            }),
            _ => {}
        }
        if matches!(event, EngineEvent::SignedOut) {
            // The token was revoked (signed out from another client, or
            // this device deleted): the engine stopped syncing.
            tracing::warn!("signed out elsewhere: please sign in again");
            drop(events);
            forget_revoked_session(&app).await;
            return;
        }
        radio.on_engine_event(&app, event);
    }
    if app.state::<Running>().0.lock().await.is_some() {
        status.update(&app, |s| s.account = AccountState::Offline);
    }
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
