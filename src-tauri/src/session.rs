//! The account behind the app: signs in at start with the configured
//! credentials, then runs the engine's sync loop and reflects it in the
//! status.

use tauri::{AppHandle, Manager};
use tokio::sync::mpsc;
use walkie_core::{Account, SignInRequest, SyncLoop};

use crate::{
    config::AppConfig,
    status::{AccountState, SharedStatus},
};

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

        let (tx, mut rx) = mpsc::channel(16);
        let _sync = SyncLoop::default().spawn(account.client().clone(), tx);
        while rx.recv().await.is_some() {
            let joined = account.client().joined_rooms().len();
            status.update(&app, |s| {
                s.account = AccountState::Online;
                s.joined_rooms = joined;
                s.error = None;
            });
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
