//! The engine: owns the signed-in `matrix_sdk::Client` and its sync loop,
//! and connects them to the pure core. Sync output (room state, decrypted
//! to-device audio) becomes input for `consent` and `floor`; their outputs
//! become Olm-encrypted to-device sends, drained in order by a sender task so
//! that a talker never waits on the network between frames. Shells (the app,
//! the CLI) talk to it through [`Engine`] and its [`EngineEvent`] stream.

pub mod outbox;
pub mod room_state;
mod sender;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use matrix_sdk::{
    deserialized_responses::ProcessedToDeviceEvent, ruma::OwnedRoomId, sync::SyncResponse, Client,
};
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{
    account::Account,
    consent::ConsentSet,
    floor::{ChunkVerdict, Claim, Floor, FloorConfig, FloorEvent, StopReason},
    protocol::{
        Consent, DeviceId, ProtocolError, RoomId, SessionId, UserId, ValidatedChunk, WalkieGroup,
        AUDIO_EVENT_TYPE, MAX_CHUNK_CONTENT_BYTES,
    },
    sync_loop::{SyncLoop, SyncLoopHandle},
};

use sender::Outgoing;

/// Milliseconds since the Unix epoch: the protocol's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("unknown room {0}")]
    UnknownRoom(String),
    #[error("{0} is not a walkie group (enable it first)")]
    NotAGroup(String),
    #[error("this device has no active talk consent in {0}")]
    NoConsent(String),
    #[error("the floor is busy: {holder} is talking")]
    FloorBusy { holder: String },
    #[error("the talk stopped: {0}")]
    Stopped(String),
    #[error("the engine has shut down")]
    ShutDown,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Matrix(#[from] Box<matrix_sdk::Error>),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl From<matrix_sdk::Error> for EngineError {
    fn from(e: matrix_sdk::Error) -> Self {
        Self::Matrix(Box::new(e))
    }
}

impl From<matrix_sdk::HttpError> for EngineError {
    fn from(e: matrix_sdk::HttpError) -> Self {
        Self::Matrix(Box::new(e.into()))
    }
}

impl From<matrix_sdk::StoreError> for EngineError {
    fn from(e: matrix_sdk::StoreError) -> Self {
        Self::Matrix(Box::new(e.into()))
    }
}

/// What the engine reports to its shell, in order. Serialises to one JSON
/// object per event (the CLI prints them as lines).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// The first sync finished: room state is known.
    Ready,
    /// A remote talker holds the floor of a room: play only this session.
    TalkStarted {
        room_id: String,
        user_id: String,
        device_id: String,
        session_id: String,
        start_ts: u64,
    },
    /// Opus packets of the playing session (`seq` orders them).
    Audio {
        room_id: String,
        session_id: String,
        seq: u32,
        ts: u64,
        #[serde(skip)]
        frames: Vec<Vec<u8>>,
        frame_count: usize,
        /// When this client accepted the message (its clock, ms since epoch):
        /// `received_ms - ts` is the transport latency of the first frame.
        received_ms: u64,
    },
    /// The playing session ended (released, lease expired, superseded…).
    TalkEnded {
        room_id: String,
        session_id: String,
        user_id: String,
        reason: String,
    },
    /// Nobody holds the floor of the room.
    FloorFree { room_id: String },
    /// Our own talk was stopped (lost the floor, cap, revoked).
    TransmitStopped {
        room_id: String,
        session_id: String,
        reason: String,
    },
    /// Something received was dropped; `reason` says why.
    Dropped { reason: String },
    /// A room's walkie state was read again (it became or stopped being a
    /// group, or its settings or consents changed): refresh what is shown.
    RoomChanged { room_id: String },
}

/// One walkie room as the engine tracks it.
struct RoomRuntime {
    group: WalkieGroup,
    consents: ConsentSet,
    floor: Floor,
    /// Why our own current talk stopped, if it did.
    local_stop: Option<StopReason>,
}

struct Inner {
    client: Client,
    user_id: UserId,
    device_id: DeviceId,
    rooms: Mutex<HashMap<RoomId, RoomRuntime>>,
    events: mpsc::UnboundedSender<EngineEvent>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Wakes the driver when a floor's next deadline may have moved.
    wake: Notify,
    outbox: outbox::Outbox,
    /// Notified once the first sync was applied.
    ready: Notify,
    /// Wakes the outbox poster (a talk ended).
    outbox_wake: Notify,
    /// Sessions being journalled right now (not to be posted yet).
    recording: Mutex<std::collections::HashSet<String>>,
    /// One outbox pass at a time.
    posting: tokio::sync::Mutex<()>,
}

/// The running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A running engine's background tasks; [`EngineTasks::stop`] ends them.
pub struct EngineTasks {
    sync: SyncLoopHandle,
    driver: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
    outbox: tokio::task::JoinHandle<()>,
}

impl EngineTasks {
    pub async fn stop(self) {
        self.sync.stop().await;
        self.driver.abort();
        let _ = self.driver.await;
        self.sender.abort();
        let _ = self.sender.await;
        self.outbox.abort();
        let _ = self.outbox.await;
    }
}

fn lock(
    rooms: &Mutex<HashMap<RoomId, RoomRuntime>>,
) -> MutexGuard<'_, HashMap<RoomId, RoomRuntime>> {
    rooms.lock().unwrap_or_else(|p| p.into_inner())
}

fn lock_set(
    set: &Mutex<std::collections::HashSet<String>>,
) -> MutexGuard<'_, std::collections::HashSet<String>> {
    set.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one outbox pass did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OutboxReport {
    pub posted: usize,
    pub failed: usize,
    pub pending: usize,
}

impl Engine {
    /// Whether a talk's recording is still waiting in the outbox.
    pub fn recording_pending(&self, session_id: &str) -> bool {
        self.inner
            .outbox
            .pending()
            .map(|entries| entries.iter().any(|m| m.session_id == session_id))
            .unwrap_or(true)
    }

    /// Posts every finished recording in the outbox (and any cut off by a
    /// crash), deleting each once the homeserver acknowledged it. Failures
    /// stay for the next pass.
    pub async fn post_pending(&self) -> OutboxReport {
        let _one_at_a_time = self.inner.posting.lock().await;
        let mut report = OutboxReport::default();
        let entries = match self.inner.outbox.pending() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox");
                return report;
            }
        };
        for meta in entries {
            if lock_set(&self.inner.recording).contains(&meta.session_id) {
                report.pending += 1;
                continue;
            }
            let result = async {
                let packets = self.inner.outbox.packets(&meta.session_id)?;
                if packets.is_empty() {
                    return Ok(false);
                }
                let recording = outbox::make_recording(&meta.session_id, &packets)?;
                outbox::post(&self.inner.client, &meta, recording).await?;
                Ok::<_, outbox::OutboxError>(true)
            }
            .await;
            match result {
                Ok(posted) => {
                    if posted {
                        report.posted += 1;
                        tracing::info!(session = %meta.session_id, room = %meta.room_id, "recording posted");
                    }
                    if let Err(e) = self.inner.outbox.remove(&meta.session_id) {
                        tracing::error!(error = %e, "cannot delete a posted recording from the outbox");
                    }
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(session = %meta.session_id, error = %e, "posting a recording failed; kept for the next pass");
                }
            }
        }
        report
    }
}

fn random_session_id() -> SessionId {
    let mut bytes = [0u8; 16];
    // The OS RNG only fails on broken systems; a counter-free fallback from
    // the clock still gives distinct ids per talk.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    SessionId::from_entropy(bytes)
}

impl Engine {
    /// Starts the engine on a signed-in account: its own sync loop, the
    /// driver that feeds the pure core, and the sender task. Events arrive
    /// on the returned receiver.
    pub fn start(
        account: &Account,
    ) -> Result<(Self, EngineTasks, mpsc::UnboundedReceiver<EngineEvent>), EngineError> {
        let client = account.client().clone();
        let user_id = UserId::parse(&account.user_id())?;
        let device_id = DeviceId::parse(&account.device_id())?;
        let (events, events_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let outbox = outbox::Outbox::open(&account.data_dir().join("outbox"))
            .map_err(|e| EngineError::Stopped(e.to_string()))?;
        let inner = Arc::new(Inner {
            client: client.clone(),
            user_id,
            device_id,
            rooms: Mutex::new(HashMap::new()),
            events,
            outgoing,
            wake: Notify::new(),
            outbox,
            ready: Notify::new(),
            outbox_wake: Notify::new(),
            recording: Mutex::new(Default::default()),
            posting: tokio::sync::Mutex::new(()),
        });
        let (sync_tx, sync_rx) = mpsc::channel(8);
        let sync = SyncLoop::default().spawn(client, sync_tx);
        let driver = tokio::spawn(drive(inner.clone(), sync_rx));
        let sender = tokio::spawn(sender::run(inner.clone(), outgoing_rx));
        let engine = Self { inner };
        // The outbox poster: a pass once the first sync has loaded the rooms
        // (recordings left by an earlier run, e.g. a crash mid-talk), after
        // each talk, and retries with backoff while anything fails.
        let poster = engine.clone();
        let outbox_task = tokio::spawn(async move {
            poster.inner.ready.notified().await;
            let mut backoff =
                crate::backoff::Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
            loop {
                let report = poster.post_pending().await;
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
                        _ = poster.inner.outbox_wake.notified() => {}
                    }
                } else {
                    backoff.reset();
                    poster.inner.outbox_wake.notified().await;
                }
            }
        });
        Ok((
            engine,
            EngineTasks {
                sync,
                driver,
                sender,
                outbox: outbox_task,
            },
            events_rx,
        ))
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    fn room(&self, room: &str) -> Result<(matrix_sdk::Room, RoomId), EngineError> {
        let id = matrix_sdk::ruma::RoomId::parse(room)
            .map_err(|_| EngineError::UnknownRoom(room.to_owned()))?;
        let sdk_room = self
            .inner
            .client
            .get_room(&id)
            .ok_or_else(|| EngineError::UnknownRoom(room.to_owned()))?;
        Ok((sdk_room, RoomId::parse(room)?))
    }

    /// Marks a joined room as a walkie group with default settings.
    pub async fn enable(&self, room: &str) -> Result<(), EngineError> {
        let (sdk_room, _) = self.room(room)?;
        room_state::enable(&sdk_room, &WalkieGroup::default()).await
    }

    /// Grants this device's consent in `room` (`expires_ts: None` = until
    /// revoked), or revokes it with `None`.
    pub async fn set_consent(
        &self,
        room: &str,
        consent: Option<Consent>,
    ) -> Result<(), EngineError> {
        let (sdk_room, id) = self.room(room)?;
        if !lock(&self.inner.rooms).contains_key(&id) {
            return Err(EngineError::NotAGroup(room.to_owned()));
        }
        room_state::set_consent(
            &sdk_room,
            &self.inner.user_id,
            &self.inner.device_id,
            consent,
        )
        .await?;
        if consent.is_none() {
            let mut rooms = lock(&self.inner.rooms);
            if let Some(rt) = rooms.get_mut(&id) {
                rt.consents
                    .revoke(&self.inner.user_id, &self.inner.device_id);
                rt.floor
                    .handle_revoked(&self.inner.user_id, &self.inner.device_id, now_ms());
                pump(&self.inner, &id, rt);
            }
        }
        Ok(())
    }

    /// The walkie state of a room: settings, consenting devices, holder.
    pub fn status(&self, room: &str) -> Result<RoomStatus, EngineError> {
        let id = RoomId::parse(room)?;
        let rooms = lock(&self.inner.rooms);
        let rt = rooms
            .get(&id)
            .ok_or_else(|| EngineError::NotAGroup(room.to_owned()))?;
        let now = now_ms();
        let devices = rt
            .consents
            .receivers(now)
            .into_iter()
            .filter_map(|(user, device)| {
                let consent = rt.consents.get(&user, &device, now)?;
                Some(DeviceConsent {
                    user_id: user.to_string(),
                    device_id: device.to_string(),
                    talk: consent.talk,
                    expires_ts: consent.expires_ts,
                    remaining_ms: consent.expires_ts.map(|t| t.saturating_sub(now)),
                })
            })
            .collect();
        Ok(RoomStatus {
            room_id: room.to_owned(),
            lease_ms: rt.group.lease_ms,
            max_talk_ms: rt.group.max_talk_ms,
            devices,
            holder: rt.floor.holder().map(|c| c.user_id.to_string()),
            holder_device: rt.floor.holder().map(|c| c.device_id.to_string()),
        })
    }

    /// The rooms the engine knows as walkie groups.
    pub fn groups(&self) -> Vec<String> {
        lock(&self.inner.rooms)
            .keys()
            .map(|r| r.to_string())
            .collect()
    }

    /// Claims the floor of `room`. The claim goes out at once (before any
    /// audio); send frames with [`Talk::send`], end with [`Talk::finish`].
    /// First makes sure the keys of every consenting device are known, so
    /// the claim reaches them all.
    pub async fn talk(&self, room: &str) -> Result<Talk, EngineError> {
        let id = RoomId::parse(room)?;
        self.refresh_receiver_keys(&id).await;
        let now = now_ms();
        let mut rooms = lock(&self.inner.rooms);
        let rt = rooms
            .get_mut(&id)
            .ok_or_else(|| EngineError::NotAGroup(room.to_owned()))?;
        if !rt
            .consents
            .may_talk(&self.inner.user_id, &self.inner.device_id, now)
        {
            return Err(EngineError::NoConsent(room.to_owned()));
        }
        rt.local_stop = None;
        let record = rt.group.recordings != crate::protocol::Recordings::None;
        rt.floor.press(now);
        let busy = pump(&self.inner, &id, rt);
        let session = rt.floor.transmitting().map(|c| c.session_id.clone());
        drop(rooms);
        self.inner.wake.notify_one();
        match (session, busy) {
            (Some(session_id), _) => {
                let journal = if record {
                    let meta = outbox::EntryMeta {
                        room_id: id.to_string(),
                        session_id: session_id.to_string(),
                        start_ts: now,
                    };
                    lock_set(&self.inner.recording).insert(meta.session_id.clone());
                    match self.inner.outbox.begin(&meta) {
                        Ok(j) => Some(j),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot journal this talk; it will not be posted");
                            None
                        }
                    }
                } else {
                    None
                };
                Ok(Talk {
                    engine: self.clone(),
                    room_id: id,
                    session_id,
                    frames_sent: 0,
                    journal,
                })
            }
            (None, Some(holder)) => Err(EngineError::FloorBusy {
                holder: describe(&holder),
            }),
            (None, None) => Err(EngineError::Stopped("the floor refused the press".into())),
        }
    }
}

impl Engine {
    /// Queries the device keys of consenting users whose devices we do not
    /// know yet (a fresh process may not have synced them).
    async fn refresh_receiver_keys(&self, id: &RoomId) {
        let receivers = {
            let rooms = lock(&self.inner.rooms);
            rooms
                .get(id)
                .map(|rt| rt.consents.receivers(now_ms()))
                .unwrap_or_default()
        };
        let encryption = self.inner.client.encryption();
        for (user, device) in receivers {
            let (Ok(u), d) = (
                matrix_sdk::ruma::OwnedUserId::try_from(user.as_str()),
                matrix_sdk::ruma::OwnedDeviceId::from(device.as_str()),
            ) else {
                continue;
            };
            if matches!(encryption.get_device(&u, &d).await, Ok(Some(_))) {
                continue;
            }
            if let Err(e) = encryption.request_user_identity(&u).await {
                tracing::warn!(user = %u, error = %e, "cannot query device keys");
            }
        }
    }
}

fn describe(claim: &Claim) -> String {
    format!("{} ({})", claim.user_id, claim.device_id)
}

/// A device's consent as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceConsent {
    pub user_id: String,
    pub device_id: String,
    pub talk: bool,
    pub expires_ts: Option<u64>,
    pub remaining_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    pub room_id: String,
    pub lease_ms: u64,
    pub max_talk_ms: u64,
    pub devices: Vec<DeviceConsent>,
    pub holder: Option<String>,
    pub holder_device: Option<String>,
}

/// Our talk in progress.
pub struct Talk {
    engine: Engine,
    room_id: RoomId,
    session_id: SessionId,
    frames_sent: usize,
    journal: Option<outbox::Journal>,
}

impl Talk {
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Queues one message of Opus packets (at most
    /// [`crate::protocol::MAX_FRAMES_PER_CHUNK`]) whose first frame was
    /// captured at `first_frame_ts`. Never waits on the network. Fails
    /// once the talk has stopped (lost the floor, cap, revoked).
    pub fn send(&mut self, frames: Vec<Vec<u8>>, first_frame_ts: u64) -> Result<(), EngineError> {
        let inner = &self.engine.inner;
        let now = now_ms();
        let mut rooms = lock(&inner.rooms);
        let rt = rooms.get_mut(&self.room_id).ok_or(EngineError::ShutDown)?;
        pump(inner, &self.room_id, rt);
        let header = match rt.floor.next_audio_header(first_frame_ts, now) {
            Some(h) if h.session_id == self.session_id => h,
            _ => {
                return Err(match rt.local_stop.clone() {
                    // Lost a collision: the other talker holds the floor.
                    Some(StopReason::LostTo(claim)) => EngineError::FloorBusy {
                        holder: describe(&claim),
                    },
                    Some(other) => EngineError::Stopped(stop_reason(&other)),
                    None => EngineError::Stopped("not transmitting".into()),
                });
            }
        };
        self.frames_sent += frames.len();
        if let Some(journal) = self.journal.as_mut() {
            if let Err(e) = journal.append(&frames) {
                tracing::error!(error = %e, "journalling the talk failed; the recording will be cut here");
                self.journal = None;
            }
        }
        inner
            .outgoing
            .send(Outgoing::Chunk {
                room_id: self.room_id.clone(),
                header,
                frames,
            })
            .map_err(|_| EngineError::ShutDown)?;
        Ok(())
    }

    /// Releases the floor if this talk still holds it (queueing the `end`
    /// message) and wakes the driver. Returns whether the talk had lost a
    /// collision. Idempotent: `finish` and `drop` both call it.
    fn release(&self) -> bool {
        let inner = &self.engine.inner;
        let lost = {
            let mut rooms = lock(&inner.rooms);
            let Some(rt) = rooms.get_mut(&self.room_id) else {
                return false;
            };
            if rt
                .floor
                .transmitting()
                .is_some_and(|c| c.session_id == self.session_id)
            {
                rt.floor.release(now_ms());
                pump(inner, &self.room_id, rt);
            }
            matches!(rt.local_stop, Some(StopReason::LostTo(_)))
        };
        inner.wake.notify_one();
        lost
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
    /// handed to the outbox poster, except for a talk that lost a collision:
    /// the few frames sent before the busy tone are not a recording.
    fn drop(&mut self) {
        let inner = &self.engine.inner;
        let lost = self.release();
        self.journal = None;
        if lost {
            if let Err(e) = inner.outbox.remove(self.session_id.as_str()) {
                tracing::warn!(error = %e, "cannot discard the journal of a lost talk");
            }
        }
        lock_set(&inner.recording).remove(self.session_id.as_str());
        inner.outbox_wake.notify_one();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TalkSummary {
    pub session_id: String,
    pub frames_sent: usize,
    /// Messages the homeserver did not take (each is logged).
    pub send_errors: usize,
}

fn stop_reason(reason: &StopReason) -> String {
    match reason {
        StopReason::LostTo(claim) => format!("lost the floor to {}", describe(claim)),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Drains a floor's events and control messages after any input: control
/// messages (claim, keep-alive, end) go to the sender queue in order, events
/// to the shell. Returns the holder of a `Busy` event, if one came out.
fn pump(inner: &Inner, room_id: &RoomId, rt: &mut RoomRuntime) -> Option<Claim> {
    let mut busy = None;
    while let Some(header) = rt.floor.poll_transmit() {
        let _ = inner.outgoing.send(Outgoing::Chunk {
            room_id: room_id.clone(),
            header,
            frames: Vec::new(),
        });
    }
    let room = room_id.to_string();
    while let Some(event) = rt.floor.poll_event() {
        let out = match event {
            FloorEvent::StartTransmitting { session_id, .. } => {
                tracing::info!(room = %room, session = %session_id, "transmitting");
                None
            }
            FloorEvent::StopTransmitting { session_id, reason } => {
                let text = stop_reason(&reason);
                tracing::info!(room = %room, session = %session_id, reason = %text, "stopped transmitting");
                rt.local_stop = Some(reason);
                Some(EngineEvent::TransmitStopped {
                    room_id: room.clone(),
                    session_id: session_id.to_string(),
                    reason: text,
                })
            }
            FloorEvent::Busy { holder } => {
                tracing::info!(room = %room, holder = %describe(&holder), "floor busy");
                busy = Some(holder);
                None
            }
            FloorEvent::Holder { claim } => Some(EngineEvent::TalkStarted {
                room_id: room.clone(),
                user_id: claim.user_id.to_string(),
                device_id: claim.device_id.to_string(),
                session_id: claim.session_id.to_string(),
                start_ts: claim.start_ts,
            }),
            FloorEvent::TalkEnded { claim, reason } => Some(EngineEvent::TalkEnded {
                room_id: room.clone(),
                session_id: claim.session_id.to_string(),
                user_id: claim.user_id.to_string(),
                reason: format!("{reason:?}").to_lowercase(),
            }),
            FloorEvent::Free => Some(EngineEvent::FloorFree {
                room_id: room.clone(),
            }),
        };
        if let Some(e) = out {
            let _ = inner.events.send(e);
        }
    }
    busy
}

/// The driver: applies sync responses and floor timeouts.
async fn drive(inner: Arc<Inner>, mut syncs: mpsc::Receiver<SyncResponse>) {
    let mut first = true;
    loop {
        let deadline = {
            let rooms = lock(&inner.rooms);
            rooms
                .values()
                .filter_map(|rt| rt.floor.poll_timeout())
                .min()
        };
        let sleep = match deadline {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            response = syncs.recv() => {
                let Some(response) = response else { break };
                handle_sync(&inner, response, first).await;
                if first {
                    first = false;
                    inner.ready.notify_waiters();
                    inner.ready.notify_one();
                    let _ = inner.events.send(EngineEvent::Ready);
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            _ = inner.wake.notified() => {}
        }
        let now = now_ms();
        let mut rooms = lock(&inner.rooms);
        for (id, rt) in rooms.iter_mut() {
            if rt.floor.poll_timeout().is_some_and(|t| t <= now) {
                rt.floor.handle_timeout(now);
                pump(&inner, id, rt);
            }
        }
    }
    tracing::debug!("engine driver stopped");
}

async fn handle_sync(inner: &Inner, response: SyncResponse, first: bool) {
    // Room state first, so consents granted in this sync apply to audio in it.
    let changed: Vec<OwnedRoomId> = if first {
        inner
            .client
            .joined_rooms()
            .iter()
            .map(|r| r.room_id().to_owned())
            .collect()
    } else {
        response.rooms.joined.keys().cloned().collect()
    };
    for room_id in changed {
        reload_room(inner, &room_id).await;
    }
    for event in response.to_device {
        handle_to_device(inner, event);
    }
}

async fn reload_room(inner: &Inner, room_id: &matrix_sdk::ruma::RoomId) {
    let Some(room) = inner.client.get_room(room_id) else {
        return;
    };
    let Ok(id) = RoomId::parse(room_id.as_str()) else {
        return;
    };
    let state = match room_state::load(&room, now_ms()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(room = %room_id, error = %e, "cannot read the room's walkie state");
            return;
        }
    };
    let mut rooms = lock(&inner.rooms);
    match state.group {
        None => {
            rooms.remove(&id);
        }
        Some(group) => match rooms.get_mut(&id) {
            Some(rt) => {
                if rt.group != group {
                    rt.floor.set_config(FloorConfig::from_group(&group));
                    rt.group = group;
                }
                rt.consents = state.consents;
            }
            None => {
                let floor = Floor::new(
                    id.clone(),
                    inner.user_id.clone(),
                    inner.device_id.clone(),
                    FloorConfig::from_group(&group),
                    Box::new(random_session_id),
                );
                tracing::info!(room = %room_id, "walkie group");
                rooms.insert(
                    id,
                    RoomRuntime {
                        group,
                        consents: state.consents,
                        floor,
                        local_stop: None,
                    },
                );
            }
        },
    }
    drop(rooms);
    let _ = inner.events.send(EngineEvent::RoomChanged {
        room_id: room_id.to_string(),
    });
}

fn drop_event(inner: &Inner, reason: String) {
    tracing::warn!(reason = %reason, "dropped walkie to-device message");
    let _ = inner.events.send(EngineEvent::Dropped { reason });
}

fn handle_to_device(inner: &Inner, event: ProcessedToDeviceEvent) {
    match event {
        ProcessedToDeviceEvent::Decrypted {
            raw,
            encryption_info,
        } => {
            if raw.json().get().len() > MAX_CHUNK_CONTENT_BYTES + 4096 {
                if raw.get_field::<String>("type").ok().flatten().as_deref()
                    == Some(AUDIO_EVENT_TYPE)
                {
                    drop_event(
                        inner,
                        format!("oversize walkie audio from {}", encryption_info.sender),
                    );
                }
                return;
            }
            let Ok(value) = raw.deserialize_as_unchecked::<Value>() else {
                return;
            };
            if value["type"] != AUDIO_EVENT_TYPE {
                return;
            }
            let sender = match UserId::parse(encryption_info.sender.as_str()) {
                Ok(u) => u,
                Err(e) => return drop_event(inner, format!("invalid sender: {e}")),
            };
            let Some(device) = encryption_info
                .sender_device
                .as_ref()
                .and_then(|d| DeviceId::parse(d.as_str()).ok())
            else {
                return drop_event(
                    inner,
                    format!("walkie audio from {sender} without a sender device"),
                );
            };
            handle_audio(inner, &value["content"], &sender, &device);
        }
        ProcessedToDeviceEvent::PlainText(raw) => {
            if raw.get_field::<String>("type").ok().flatten().as_deref() == Some(AUDIO_EVENT_TYPE) {
                let sender = raw
                    .get_field::<String>("sender")
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                drop_event(
                    inner,
                    format!("unencrypted walkie audio claiming to be from {sender}"),
                );
            }
        }
        ProcessedToDeviceEvent::UnableToDecrypt { utd_info, .. } => {
            tracing::debug!(info = ?utd_info, "undecryptable to-device event");
        }
        ProcessedToDeviceEvent::Invalid(_) => {}
    }
}

fn handle_audio(inner: &Inner, content: &Value, sender: &UserId, device: &DeviceId) {
    let chunk = match ValidatedChunk::parse_received(content, sender, device, true) {
        Ok(c) => c,
        Err(e) => {
            return drop_event(
                inner,
                format!("invalid walkie audio from {sender} ({device}): {e}"),
            )
        }
    };
    let now = now_ms();
    let room_id = chunk.room_id().clone();
    let mut rooms = lock(&inner.rooms);
    let Some(rt) = rooms.get_mut(&room_id) else {
        return drop_event(
            inner,
            format!("walkie audio for {room_id}, which is not a walkie group here"),
        );
    };
    if !rt
        .consents
        .may_receive(&inner.user_id, &inner.device_id, now)
    {
        return drop_event(
            inner,
            format!("walkie audio in {room_id}, where this device has not consented"),
        );
    }
    if !rt
        .consents
        .may_talk(sender, device, chunk.header().start_ts)
    {
        return drop_event(
            inner,
            format!("walkie audio from {sender} ({device}) without talk consent in {room_id}"),
        );
    }
    let verdict = rt.floor.handle_chunk(&chunk, now);
    pump(inner, &room_id, rt);
    match verdict {
        ChunkVerdict::Play => {
            let header = chunk.header().clone();
            let frames = chunk.into_frames();
            if !frames.is_empty() {
                let _ = inner.events.send(EngineEvent::Audio {
                    room_id: room_id.to_string(),
                    session_id: header.session_id.to_string(),
                    seq: header.seq,
                    ts: header.ts,
                    frame_count: frames.len(),
                    received_ms: now_ms(),
                    frames,
                });
            }
        }
        ChunkVerdict::Track => {}
        ChunkVerdict::Ignored(rejection) => drop_event(
            inner,
            format!("walkie audio from {sender} ({device}): {rejection}"),
        ),
    }
    drop(rooms);
    inner.wake.notify_one();
}
