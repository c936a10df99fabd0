//! What the app shows: the account state, shared by the tray tooltip, the
//! panel (through the `status` command and `status` events) and the log line
//! that tells scripts and tests the app is ready.

use std::sync::Mutex;

use serde::Serialize;
use tauri::{AppHandle, Emitter};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AccountState {
    #[default]
    SignedOut,
    SigningIn,
    Online,
    Offline,
    Failed,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub account: AccountState,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub homeserver: Option<String>,
    pub joined_rooms: usize,
    pub error: Option<String>,
    #[serde(skip)]
    pub panel_loaded: bool,
    #[serde(skip)]
    pub ready_announced: bool,
}

impl Status {
    pub fn summary(&self) -> String {
        match (&self.account, &self.user_id) {
            (AccountState::Online, Some(u)) => format!("Walkie — {u}"),
            (AccountState::SigningIn, _) => "Walkie — signing in…".into(),
            (AccountState::Offline, _) => "Walkie — offline".into(),
            (AccountState::Failed, _) => "Walkie — sign-in failed".into(),
            _ => "Walkie — signed out".into(),
        }
    }

    /// Ready: the panel is loaded and the account is settled (online, or
    /// there is nothing to sign in with, or sign-in failed).
    fn is_ready(&self) -> bool {
        self.panel_loaded
            && matches!(
                self.account,
                AccountState::Online | AccountState::SignedOut | AccountState::Failed
            )
    }
}

#[derive(Debug, Default)]
pub struct SharedStatus(Mutex<Status>);

impl SharedStatus {
    /// Applies `change`, then tells the panel and the tray, and announces
    /// readiness once.
    pub fn update(&self, app: &AppHandle, change: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut s);
            if s.is_ready() && !s.ready_announced {
                s.ready_announced = true;
                tracing::info!(
                    account = ?s.account,
                    user = s.user_id.as_deref().unwrap_or("-"),
                    "walkie-app ready"
                );
            }
            s.clone()
        };
        crate::tray::show_status(app, &snapshot);
        if let Err(e) = app.emit("status", &snapshot) {
            tracing::warn!(error = %e, "could not send the status to the panel");
        }
    }

    pub fn get(&self) -> Status {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The panel asks for the current status when it opens.
#[tauri::command]
pub fn status(state: tauri::State<'_, SharedStatus>) -> Status {
    state.get()
}
