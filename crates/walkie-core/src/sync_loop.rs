//! The engine's own sync loop. matrix-sdk's `Client::sync*` loops sleep a
//! second after any sync that returned within a second of the previous one,
//! which would hold live audio back by up to a second; this loop calls
//! `sync_once` back to back (one parked long-poll when idle) and backs off
//! only on errors. A revoked access token (signed out from another
//! client, device deleted) ends it with [`Synced::SignedOut`]: retrying
//! could never succeed, so nothing is retried. Every other failed sync is
//! reported ([`Synced::Failed`]) before the retry, so the shell can say
//! "offline" while the homeserver cannot be reached.

use std::time::Duration;

use matrix_sdk::{config::SyncSettings, sync::SyncResponse, Client};
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::backoff::Backoff;

/// What the loop hands on.
#[derive(Debug)]
pub enum Synced {
    Response(Box<SyncResponse>),
    /// The homeserver no longer knows our access token; the loop ended.
    SignedOut,
    /// A sync failed (homeserver down, network gone…); the loop retries
    /// after `retry_in`.
    Failed {
        error: String,
        retry_in: Duration,
    },
}

/// Whether `error` says the access token is no longer valid.
fn token_revoked(error: &matrix_sdk::Error) -> bool {
    matches!(
        error.client_api_error_kind(),
        Some(matrix_sdk::ruma::api::error::ErrorKind::UnknownToken(_))
    )
}

/// How long one /sync may park on the homeserver when nothing happens.
pub const DEFAULT_LONG_POLL: Duration = Duration::from_secs(30);

/// Configuration of the loop.
#[derive(Debug, Clone)]
pub struct SyncLoop {
    pub long_poll: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for SyncLoop {
    fn default() -> Self {
        Self {
            long_poll: DEFAULT_LONG_POLL,
            backoff_initial: Duration::from_millis(250),
            // A walkie-talkie is back within seconds of its homeserver: one
            // failed request per 8 s while it is down is no load for it.
            backoff_max: Duration::from_secs(8),
        }
    }
}

/// A running loop. Dropping the handle leaves the loop running; call
/// [`SyncLoopHandle::stop`] to end it.
#[derive(Debug)]
pub struct SyncLoopHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SyncLoopHandle {
    /// Ends the loop, cancelling a parked long-poll, and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "sync loop task ended abnormally");
        }
    }
}

impl SyncLoop {
    /// Starts syncing `client`; each response goes to `responses`. The loop
    /// ends when stopped or when the receiver is dropped.
    pub fn spawn(self, client: Client, responses: mpsc::Sender<Synced>) -> SyncLoopHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut backoff = Backoff::new(self.backoff_initial, self.backoff_max);
            // The first sync returns at once so start-up state arrives quickly.
            let mut long_poll = Duration::ZERO;
            loop {
                let settings = SyncSettings::default().timeout(long_poll);
                let result = tokio::select! {
                    _ = stopped.changed() => break,
                    r = client.sync_once(settings) => r,
                };
                match result {
                    Ok(response) => {
                        backoff.reset();
                        long_poll = self.long_poll;
                        if responses
                            .send(Synced::Response(Box::new(response)))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                    Err(e) if token_revoked(&e) => {
                        tracing::warn!(error = %e, "the access token was revoked (signed out elsewhere); sync stopped");
                        let _ = responses.send(Synced::SignedOut).await;
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        // The first sync after a failure returns at once, so
                        // that being back is known without a long-poll's wait.
                        long_poll = Duration::ZERO;
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "sync failed");
                        let failed = Synced::Failed {
                            error: e.to_string(),
                            retry_in: delay,
                        };
                        if responses.send(failed).await.is_err() {
                            break;
                        }
                        tokio::select! {
                            _ = stopped.changed() => break,
                            _ = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
            tracing::debug!("sync loop stopped");
        });
        SyncLoopHandle { stop, task }
    }
}
