//! Watches what changes trust without a room event: device lists and
//! cross-signing identities (a device newly signed by its owner, a new
//! device, a reset identity) and each walkie room's identity status from
//! matrix-sdk (who is in pin or verification violation: "bob's identity
//! changed"). Any change re-reads every room's walkie state, since which
//! consents count depends on it (see `room_state`).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use futures_util::{FutureExt, StreamExt};
use matrix_sdk_base::crypto::IdentityState;
use tokio::{sync::Notify, task::JoinHandle};

use super::Inner;

/// Trust facts the driver reads when it loads a room's state.
#[derive(Default)]
pub(super) struct TrustWatch {
    /// Users whose identity changed and the local user has not accepted it.
    identity_changed: Mutex<HashSet<String>>,
    /// Rooms whose identity status is being watched.
    watched: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Fires when a room's walkie state must be re-read.
    pub changed: Notify,
}

impl TrustWatch {
    fn lock_changed(&self) -> MutexGuard<'_, HashSet<String>> {
        self.identity_changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Users in identity violation now.
    pub fn identity_changed(&self) -> HashSet<String> {
        self.lock_changed().clone()
    }

    /// Forgets that `user`'s identity changed (the local user accepted it).
    pub fn accepted(&self, user: &str) {
        self.lock_changed().remove(user);
        self.changed.notify_one();
    }

    fn apply(&self, changes: Vec<matrix_sdk_base::crypto::IdentityStatusChange>) {
        let mut set = self.lock_changed();
        for change in changes {
            let user = change.user_id.to_string();
            match change.changed_to {
                IdentityState::PinViolation | IdentityState::VerificationViolation => {
                    tracing::warn!(user = %user, "identity changed: not talking to them until accepted");
                    set.insert(user);
                }
                IdentityState::Pinned | IdentityState::Verified => {
                    set.remove(&user);
                }
            }
        }
    }

    /// Starts watching the identity status of `room`'s members (once). The
    /// current status is applied before this returns, so the first reading
    /// of the room's consents already leaves out changed identities.
    pub async fn watch_room(&self, inner: &Arc<Inner>, room: &matrix_sdk::Room) {
        let key = room.room_id().to_string();
        if self
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&key)
        {
            return;
        }
        let stream = match room.subscribe_to_identity_status_changes().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(room = %room.room_id(), error = %e, "cannot watch identity changes");
                return;
            }
        };
        let mut stream = Box::pin(stream);
        // The stream yields the room's current violations first, at once.
        if let Some(Some(current)) = stream.next().now_or_never() {
            self.apply(current);
        }
        let weak = Arc::downgrade(inner);
        let task = tokio::spawn(async move {
            while let Some(changes) = stream.next().await {
                let Some(inner) = weak.upgrade() else { return };
                inner.trust.apply(changes);
                inner.trust.changed.notify_one();
            }
        });
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(previous) = watched.insert(key, task) {
            previous.abort();
        }
    }

    /// Stops every watch (engine shutdown).
    pub fn stop(&self) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        for (_, task) in watched.drain() {
            task.abort();
        }
    }
}

/// Re-reads room state whenever device lists or identities change.
pub(super) async fn run(inner: Arc<Inner>) {
    let encryption = inner.client.encryption();
    let (devices, identities) = match (
        encryption.devices_stream().await,
        encryption.user_identities_stream().await,
    ) {
        (Ok(d), Ok(i)) => (d, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot watch device and identity changes");
            return;
        }
    };
    futures_util::pin_mut!(devices, identities);
    loop {
        tokio::select! {
            d = devices.next() => if d.is_none() { break },
            i = identities.next() => if i.is_none() { break },
        }
        inner.trust.changed.notify_one();
    }
}
