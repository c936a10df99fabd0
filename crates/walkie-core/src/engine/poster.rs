//! The outbox poster: turns journalled talks into voice messages, in the
//! shape of `OlmMachine`'s outgoing requests — [`Poster::pending`] lists
//! what is ready to post (finished talks, and any cut off by a crash), the
//! poster task posts each and [`Poster::mark_posted`] deletes it once the
//! homeserver acknowledged it. Failures stay for the next pass, retried
//! with backoff.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::Notify;

use walkie_protocol::RoomId;

use super::{outbox, Inner};

/// What one outbox pass did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OutboxReport {
    pub posted: usize,
    pub failed: usize,
    pub pending: usize,
}

/// Which journals are still being written, and the poster's wake-up.
#[derive(Default)]
pub(super) struct Poster {
    /// Sessions being journalled right now (not to be posted yet).
    recording: Mutex<HashSet<String>>,
    wake: Notify,
    /// One pass at a time.
    posting: tokio::sync::Mutex<()>,
}

impl Poster {
    fn recording(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.recording.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A talk began journalling: not to be posted until it closes.
    pub(super) fn talk_opened(&self, session: &str) {
        self.recording().insert(session.to_owned());
    }

    /// A talk's journal closed: post it.
    pub(super) fn talk_closed(&self, session: &str) {
        self.recording().remove(session);
        self.wake.notify_one();
    }

    /// Finished recordings waiting to be posted (oldest first).
    fn pending(
        &self,
        outbox: &outbox::Outbox,
    ) -> Result<Vec<outbox::EntryMeta>, outbox::OutboxError> {
        let recording = self.recording();
        Ok(outbox
            .pending()?
            .into_iter()
            .filter(|m| !recording.contains(&m.session_id))
            .collect())
    }

    /// The homeserver took the recording (or there was nothing to post).
    fn mark_posted(&self, outbox: &outbox::Outbox, session: &str) {
        if let Err(e) = outbox.remove(session) {
            tracing::error!(error = %e, "cannot delete a posted recording from the outbox");
        }
    }
}

/// Posts every finished recording in the outbox.
pub(super) async fn post_pending(inner: &Inner) -> OutboxReport {
    let _one_at_a_time = inner.poster.posting.lock().await;
    let mut report = OutboxReport::default();
    let all = inner.outbox.pending().map(|e| e.len()).unwrap_or(0);
    let entries = match inner.poster.pending(&inner.outbox) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the outbox");
            return report;
        }
    };
    report.pending = all.saturating_sub(entries.len());
    for meta in entries {
        let result = async {
            let packets = inner.outbox.packets(&meta.session_id)?;
            if packets.is_empty() {
                return Ok(false);
            }
            let recording = outbox::make_recording(&meta.session_id, &packets)?;
            // Where the group wants recordings now (it may have changed
            // since the talk): the timeline, or its recordings thread.
            let thread = RoomId::parse(&meta.room_id).ok().and_then(|id| {
                inner.rooms.read(|machines| {
                    machines
                        .get(&id)
                        .and_then(|m| m.group())
                        .and_then(|g| g.recordings_thread().map(str::to_owned))
                })
            });
            outbox::post(&inner.client, &meta, recording, thread.as_deref()).await?;
            Ok::<_, outbox::OutboxError>(true)
        }
        .await;
        match result {
            Ok(posted) => {
                if posted {
                    report.posted += 1;
                    tracing::info!(session = %meta.session_id, room = %meta.room_id, "recording posted");
                }
                inner.poster.mark_posted(&inner.outbox, &meta.session_id);
            }
            Err(e) => {
                report.failed += 1;
                tracing::warn!(session = %meta.session_id, error = %e, "posting a recording failed; kept for the next pass");
            }
        }
    }
    report
}

/// The poster task: a pass once the first sync has loaded the rooms
/// (recordings left by an earlier run, e.g. a crash mid-talk), after each
/// talk, and retries with backoff while anything fails.
pub(super) async fn run(inner: Arc<Inner>) {
    inner.ready.notified().await;
    let mut backoff =
        crate::backoff::Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
    loop {
        let report = post_pending(&inner).await;
        if report.posted + report.failed > 0 {
            tracing::info!(
                posted = report.posted,
                failed = report.failed,
                "outbox pass"
            );
        }
        if report.failed > 0 {
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = inner.poster.wake.notified() => {}
            }
        } else {
            backoff.reset();
            inner.poster.wake.notified().await;
        }
    }
}
