//! [`Talk`]: our talk in progress, from a granted press to its release.
//! Sends go through the room machine (which numbers and addresses them)
//! to the sender queue, and into the outbox journal that becomes the
//! recording. However a talk ends (finished, lost, capped, revoked, or
//! dropped on an error) the floor is released and the journal handed over.

use tokio::sync::oneshot;
use walkie_protocol::{room::TalkStopped, RoomId, SessionId};

use super::{
    driver::holder_name, now_ms, outbox, sender::Outgoing, Engine, EngineError, TransmitStopReason,
};

/// Our talk in progress.
pub struct Talk {
    pub(super) engine: Engine,
    pub(super) room_id: RoomId,
    pub(super) session_id: SessionId,
    pub(super) frames_sent: usize,
    pub(super) journal: Option<outbox::Journal>,
}

/// How a finished talk went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TalkSummary {
    pub session_id: String,
    pub frames_sent: usize,
    /// Messages the homeserver did not take (each is logged).
    pub send_errors: usize,
}

impl Talk {
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Whether the sender is busy: an audio message is being sent or queued.
    /// Frames captured meanwhile would only wait behind it; the talker
    /// gathers them into one message for when it is free.
    pub fn sender_behind(&self) -> bool {
        self.engine
            .inner
            .unsent
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
    }

    /// Returns once the sender has sent everything queued.
    pub async fn sender_idle(&self) {
        let inner = &self.engine.inner;
        loop {
            let idle = inner.sender_idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if !self.sender_behind() {
                return;
            }
            idle.await;
        }
    }

    /// Queues one message of Opus packets (at most
    /// [`walkie_protocol::MAX_FRAMES_PER_CHUNK`]) whose first frame was
    /// captured at `first_frame_ts`. Never waits on the network. Fails
    /// once the talk has stopped (lost the floor, cap, revoked).
    pub fn send(&mut self, frames: Vec<Vec<u8>>, first_frame_ts: u64) -> Result<(), EngineError> {
        let inner = &self.engine.inner;
        let count = frames.len();
        let (session_id, journal) = (&self.session_id, &mut self.journal);
        let sent = inner
            .rooms
            .with(inner, &self.room_id, |machine| {
                let queued = machine.send_audio(session_id, frames, first_frame_ts, now_ms())?;
                // Journalled as sent, in order (under the room's lock, as
                // the message is queued).
                if let Some(j) = journal.as_mut() {
                    if let Err(e) = j.append(queued) {
                        tracing::error!(error = %e, "journalling the talk failed; the recording will be cut here");
                        *journal = None;
                    }
                }
                Ok(())
            })
            .ok_or(EngineError::ShutDown)?;
        if let Err(stopped) = sent {
            return Err(match stopped {
                // Lost a collision: the other talker holds the floor.
                TalkStopped::LostTo(claim) => EngineError::FloorBusy {
                    holder: holder_name(&claim),
                },
                TalkStopped::Other(reason) => {
                    EngineError::Stopped(TransmitStopReason::from(&reason).to_string())
                }
                TalkStopped::NotTransmitting => EngineError::Stopped("not transmitting".into()),
            });
        }
        self.frames_sent += count;
        Ok(())
    }

    /// Releases the floor if this talk still holds it (queueing the `end`
    /// message). Returns whether the talk had lost a collision. Idempotent:
    /// `finish` and `drop` both call it.
    fn release(&self) -> bool {
        let inner = &self.engine.inner;
        inner
            .rooms
            .with(inner, &self.room_id, |machine| {
                machine.release(&self.session_id, now_ms());
                matches!(
                    machine.local_stop(),
                    Some(walkie_protocol::floor::StopReason::LostTo(_))
                )
            })
            .unwrap_or(false)
    }

    /// Releases the floor and waits until every queued message, the final
    /// one included, has been handed to the homeserver.
    pub async fn finish(self) -> Result<TalkSummary, EngineError> {
        let inner = &self.engine.inner;
        self.release();
        let (done, flushed) = oneshot::channel();
        inner
            .outgoing
            .send(Outgoing::Flush(done))
            .map_err(|_| EngineError::ShutDown)?;
        let stats = flushed.await.map_err(|_| EngineError::ShutDown)?;
        // Dropping `self` closes the journal and hands it to the poster.
        Ok(TalkSummary {
            session_id: self.session_id.to_string(),
            frames_sent: self.frames_sent,
            send_errors: stats.errors,
        })
    }
}

impl Drop for Talk {
    /// However a talk ends (finished, lost, or abandoned on an error), the
    /// floor is released if we still hold it and the journal is closed and
    /// handed to the outbox poster, except for a talk that lost a collision
    /// within the collision window: the few frames sent before the busy tone
    /// are not a recording.
    fn drop(&mut self) {
        let inner = &self.engine.inner;
        // A talk cut after the collision window (which the floor rules
        // should make impossible) is kept: what was said is posted.
        let lost = self.release()
            && (self.frames_sent as u64).saturating_mul(walkie_protocol::FRAME_MS)
                <= walkie_protocol::floor::COLLISION_WINDOW_MS;
        self.journal = None;
        if lost {
            if let Err(e) = inner.outbox.remove(self.session_id.as_str()) {
                tracing::warn!(error = %e, "cannot discard the journal of a lost talk");
            }
        }
        inner.poster.talk_closed(self.session_id.as_str());
    }
}
