//! The panel's trust side: this device's standing in its account (shown in
//! the Account section), the recovery key shown once after the sign-in that
//! created the account's identity, verifying this device with the recovery
//! key or with emoji against another device of the user, and accepting a
//! contact's changed identity. The protocol is walkie-core's (`trust`,
//! `verification`); this only sequences it for the panel and keeps the
//! emoji verification in progress between the panel's calls.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use tauri::{AppHandle, Manager, State};
use walkie_core::{
    matrix_sdk::{encryption::verification::SasVerification, Client},
    trust::{self, OwnDeviceState},
    verification::{self, Emoji},
};

use crate::{radio::Radio, session::Running, status::SharedStatus};

/// The emoji verification in progress, if any.
#[derive(Default)]
pub struct Verifying(Mutex<Flow>);

#[derive(Default)]
struct Flow {
    /// Waiting for another device's request, or for the emoji.
    waiting: Option<tauri::async_runtime::JoinHandle<()>>,
    /// Bumped by each new wait, so an old one does not clear a newer one.
    generation: u64,
    /// The exchange started: what "They match" confirms.
    sas: Option<SasVerification>,
}

impl Verifying {
    fn lock(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends any verification in progress (cancel, sign-out).
    pub async fn cancel(&self) {
        let (waiting, sas) = {
            let mut flow = self.lock();
            (flow.waiting.take(), flow.sas.take())
        };
        if let Some(task) = waiting {
            task.abort();
        }
        if let Some(sas) = sas {
            if let Err(e) = sas.cancel().await {
                tracing::warn!(error = %e, "could not cancel the verification");
            }
        }
    }
}

async fn client(app: &AppHandle) -> Result<Client, String> {
    app.state::<Running>()
        .client()
        .await
        .ok_or_else(|| "Not signed in".to_owned())
}

/// Reads this device's standing into the status.
pub async fn refresh_device_state(app: &AppHandle) -> Option<OwnDeviceState> {
    let engine = app.state::<Radio>().engine()?;
    match engine.own_device_state().await {
        Ok(state) => {
            tracing::info!(?state, "this device's verification");
            app.state::<SharedStatus>()
                .update(app, |s| s.device_state = Some(state));
            Some(state)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this device's verification");
            None
        }
    }
}

/// Reads this device's standing in the background, unless a reading is
/// under way already (room changes can come in bursts).
pub fn spawn_refresh_device_state(app: &AppHandle) {
    static UNDER_WAY: AtomicBool = AtomicBool::new(false);
    if UNDER_WAY.swap(true, Ordering::AcqRel) {
        return;
    }
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        refresh_device_state(&app).await;
        UNDER_WAY.store(false, Ordering::Release);
    });
}

/// Reads whose identity changed (unaccepted) into the status.
pub fn refresh_identity_changed(app: &AppHandle) {
    let Some(engine) = app.state::<Radio>().engine() else {
        return;
    };
    let changed = engine.identity_changed();
    let status = app.state::<SharedStatus>();
    if status.get().identity_changed != changed {
        status.update(app, |s| s.identity_changed = changed);
    }
}

/// The user saved the recovery key: the panel stops showing it, the app
/// forgets it.
#[tauri::command]
pub fn recovery_key_saved(app: AppHandle, status: State<'_, SharedStatus>) {
    status.update(&app, |s| s.recovery_key = None);
}

/// Verifies this device with the account's recovery key.
#[tauri::command]
pub async fn verify_with_recovery_key(app: AppHandle, key: String) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err("Enter your recovery key".into());
    }
    let client = client(&app).await?;
    let result = trust::recover(&client, &key).await;
    refresh_device_state(&app).await;
    match result {
        Ok(()) => {
            tracing::info!("this device was verified with the recovery key");
            Ok(())
        }
        Err(trust::TrustError::WrongRecoveryKey(_)) => {
            Err("That is not this account's recovery key: check it and try again.".into())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Waits for another device of this account to ask for verification
/// (Element's "Verify session", `walkie verify request DEVICE`), accepts
/// it, and returns the seven emoji to compare.
#[tauri::command]
pub async fn verify_with_device(
    app: AppHandle,
    verifying: State<'_, Verifying>,
) -> Result<Vec<Emoji>, String> {
    verifying.cancel().await;
    let client = client(&app).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task_app = app.clone();
    let task = tauri::async_runtime::spawn(async move {
        let result = async {
            let sas = verification::accept_next(&client, || {
                tracing::info!(
                    "waiting for another device of this account to ask for verification"
                );
            })
            .await?;
            tracing::info!("emoji verification started");
            task_app.state::<Verifying>().lock().sas = Some(sas.clone());
            verification::emoji(&sas).await
        }
        .await;
        let _ = tx.send(result);
    });
    let generation = {
        let mut flow = verifying.lock();
        flow.waiting = Some(task);
        flow.generation += 1;
        flow.generation
    };
    let result = rx.await;
    {
        let mut flow = verifying.lock();
        if flow.generation == generation {
            flow.waiting = None;
        }
    }
    match result {
        Ok(Ok(emoji)) => Ok(emoji),
        Ok(Err(e)) => {
            verifying.lock().sas = None;
            tracing::warn!(error = %e, "emoji verification failed");
            Err(e.to_string())
        }
        Err(_) => Err("The verification was cancelled".into()),
    }
}

/// The user compared the emoji: `matches` confirms (and waits for the other
/// device to confirm too), else the verification is cancelled.
#[tauri::command]
pub async fn verify_confirm(
    app: AppHandle,
    verifying: State<'_, Verifying>,
    matches: bool,
) -> Result<(), String> {
    let sas = verifying
        .lock()
        .sas
        .take()
        .ok_or("No verification in progress")?;
    verification::finish(&sas, matches)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("emoji verification done");
    // The other device's signature of this one arrives with a later sync.
    let mut wait = std::time::Duration::from_millis(200);
    for _ in 0..8 {
        if refresh_device_state(&app).await == Some(OwnDeviceState::Verified) {
            return Ok(());
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(3));
    }
    Err("The emoji matched, but this device is not signed yet: keep Walkie open on both devices for a moment.".into())
}

/// Stops waiting for another device, or the comparison in progress.
#[tauri::command]
pub async fn verify_cancel(verifying: State<'_, Verifying>) -> Result<(), String> {
    verifying.cancel().await;
    Ok(())
}

/// Accepts `user`'s changed identity: Walkie talks to them again.
#[tauri::command]
pub async fn accept_identity(
    app: AppHandle,
    radio: State<'_, Radio>,
    user: String,
) -> Result<(), String> {
    let engine = radio.engine().ok_or("Not signed in")?;
    engine
        .accept_identity(&user)
        .await
        .map_err(|e| e.to_string())?;
    refresh_identity_changed(&app);
    Ok(())
}
