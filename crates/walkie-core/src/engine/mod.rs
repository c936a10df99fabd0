//! The engine: owns the signed-in `matrix_sdk::Client`, its own sync loop
//! and one [`walkie_protocol::room::RoomMachine`] per walkie room, and is
//! the shells' only way to Matrix. Split by job:
//! - `driver`: feeds the room machines from sync output and timers and
//!   drains their outputs (the only place that does);
//! - `talk`: [`Talk`], our talk in progress;
//! - `sender`: to-device sends (talk keys over Olm, batches sealed once),
//!   drained in order so a talker never waits on the network between frames;
//! - `poster` and `outbox`: journalled talks posted as voice messages
//!   (`journal_cipher` seals the journal at rest);
//! - `room_state`: walkie state read from and written to the room, with
//!   only trusted devices' signed consents counted;
//! - `trust_watch`: device-list and identity changes that re-read it;
//! - `people`: members and device names, invites, new groups;
//! - `error`, `event`: [`EngineError`], [`EngineEvent`].

mod consent_intent;
mod driver;
mod drop_log;
mod error;
mod event;
pub mod journal_cipher;
pub mod outbox;
mod people;
mod poster;
pub mod room_state;
mod sender;
mod talk;
mod trust_watch;

use std::{
    collections::HashSet,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use matrix_sdk::Client;
use serde::Serialize;
use tokio::sync::{mpsc, Notify};
use walkie_protocol::{
    room::PressError, Consent, DeviceId, Recordings, RoomId, UserId, WalkieGroup,
};

use crate::{
    account::Account,
    sync_loop::{SyncLoop, SyncLoopHandle},
};

pub use error::EngineError;
pub use event::{describe, EngineEvent, TalkEndReason, TransmitStopReason};
pub use people::Member;
pub use poster::OutboxReport;
pub use talk::{Talk, TalkSummary};

use driver::Rooms;
use sender::Outgoing;

/// Milliseconds since the Unix epoch: the protocol's clock.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Inner {
    client: Client,
    user_id: UserId,
    device_id: DeviceId,
    rooms: Rooms,
    events: mpsc::UnboundedSender<EngineEvent>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Audio messages queued for the sender or being sent: a talker that
    /// sees some gathers its next frames into one message.
    unsent: std::sync::atomic::AtomicUsize,
    /// Notified when the sender has sent everything queued (`unsent` 0).
    sender_idle: Notify,
    /// Wakes the driver when a room's next deadline may have moved.
    wake: Notify,
    outbox: outbox::Outbox,
    poster: poster::Poster,
    /// Notified once the first sync was applied.
    ready: Notify,
    account: Account,
    /// Signs this device's consent entries (loaded on first use).
    signer: tokio::sync::OnceCell<crate::trust::ConsentSigner>,
    trust: trust_watch::TrustWatch,
    intents: consent_intent::Intents,
    /// Per room: consenting devices that do not count, and why.
    excluded: std::sync::Mutex<std::collections::HashMap<RoomId, Vec<room_state::Excluded>>>,
    /// Keys of the talks announced to us, for their sealed batches.
    talk_keys: std::sync::Mutex<walkie_protocol::TalkKeyRing>,
    /// Which dropped messages are reported (rate-limited per sender).
    drop_log: std::sync::Mutex<drop_log::DropLog>,
}

impl Inner {
    fn talk_keys(&self) -> std::sync::MutexGuard<'_, walkie_protocol::TalkKeyRing> {
        self.talk_keys.lock().unwrap_or_else(|p| p.into_inner())
    }
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
    trust: tokio::task::JoinHandle<()>,
    inner: Arc<Inner>,
}

impl EngineTasks {
    pub async fn stop(self) {
        self.sync.stop().await;
        self.inner.trust.stop();
        for task in [self.driver, self.sender, self.outbox, self.trust] {
            task.abort();
            let _ = task.await;
        }
    }
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

/// A walkie room's state as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RoomStatus {
    pub room_id: String,
    pub lease_ms: u64,
    pub max_talk_ms: u64,
    /// Where the group's recordings go.
    pub recordings: Recordings,
    pub devices: Vec<DeviceConsent>,
    pub holder: Option<String>,
    pub holder_device: Option<String>,
    /// Devices that consent but will not hear this device (nor be heard),
    /// with the reason: not signed by their owner, identity changed…
    pub excluded: Vec<room_state::Excluded>,
}

/// A joined room, as room lists show it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoomSummary {
    pub room_id: String,
    /// The room's display name, when the store has one.
    pub name: Option<String>,
    /// Whether it is a walkie group.
    pub walkie: bool,
    /// Whether it is end-to-end encrypted (only such rooms can be groups).
    pub encrypted: bool,
}

impl Engine {
    /// Starts the engine on a signed-in account: its own sync loop, the
    /// driver, the sender and the outbox poster. Events arrive on the
    /// returned receiver.
    pub fn start(
        account: &Account,
    ) -> Result<(Self, EngineTasks, mpsc::UnboundedReceiver<EngineEvent>), EngineError> {
        let client = account.client().clone();
        let user_id = UserId::parse(&account.user_id())?;
        let device_id = DeviceId::parse(&account.device_id())?;
        let own_device = device_id.clone();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let outbox =
            outbox::Outbox::open(&account.data_dir().join("outbox"), account.journal_cipher())
                .map_err(|e| EngineError::Stopped(e.to_string()))?;
        let inner = Arc::new(Inner {
            client: client.clone(),
            user_id,
            device_id,
            rooms: Rooms::default(),
            events,
            outgoing,
            unsent: Default::default(),
            sender_idle: Notify::new(),
            wake: Notify::new(),
            outbox,
            poster: poster::Poster::default(),
            ready: Notify::new(),
            account: account.clone(),
            signer: tokio::sync::OnceCell::new(),
            trust: trust_watch::TrustWatch::default(),
            intents: consent_intent::Intents::open(account.data_dir(), own_device),
            excluded: Default::default(),
            talk_keys: Default::default(),
            drop_log: Default::default(),
        });
        let (sync_tx, sync_rx) = mpsc::channel(8);
        let sync = SyncLoop::default().spawn(client, sync_tx);
        let driver = tokio::spawn(driver::run(inner.clone(), sync_rx));
        let sender = tokio::spawn(sender::run(inner.clone(), outgoing_rx));
        let outbox_task = tokio::spawn(poster::run(inner.clone()));
        let trust = tokio::spawn(trust_watch::run(inner.clone()));
        Ok((
            Self {
                inner: inner.clone(),
            },
            EngineTasks {
                sync,
                driver,
                sender,
                outbox: outbox_task,
                trust,
                inner,
            },
            events_rx,
        ))
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

    /// The room id behind `room`: a room id as it is, an alias (`#…`)
    /// resolved by the homeserver.
    pub async fn resolve_room(&self, room: &str) -> Result<String, EngineError> {
        if !room.starts_with('#') {
            return Ok(room.to_owned());
        }
        let alias = matrix_sdk::ruma::RoomAliasId::parse(room)
            .map_err(|_| EngineError::UnknownRoom(format!("bad alias {room}")))?;
        let resolved = self
            .inner
            .client
            .resolve_room_alias(&alias)
            .await
            .map_err(|e| EngineError::UnknownRoom(format!("{room}: {e}")))?;
        Ok(resolved.room_id.to_string())
    }

    /// The joined rooms with their names, and which are walkie groups.
    pub async fn rooms(&self) -> Vec<RoomSummary> {
        let groups = self.groups();
        let mut out = Vec::new();
        for room in self.inner.client.joined_rooms() {
            let room_id = room.room_id().to_string();
            out.push(RoomSummary {
                name: room.display_name().await.ok().map(|n| n.to_string()),
                walkie: groups.contains(&room_id),
                encrypted: room.encryption_state().is_encrypted(),
                room_id,
            });
        }
        out
    }

    /// A room's display name (its id when it has none).
    pub fn room_name(&self, room: &str) -> String {
        self.room(room)
            .ok()
            .and_then(|(r, _)| r.cached_display_name().map(|n| n.to_string()))
            .unwrap_or_else(|| room.to_owned())
    }

    /// Marks a joined room as a walkie group with default settings.
    pub async fn enable(&self, room: &str) -> Result<(), EngineError> {
        let (sdk_room, _) = self.room(room)?;
        room_state::enable(&sdk_room, &WalkieGroup::default()).await
    }

    /// Whether this user may change the group's settings (send its marker
    /// state: a room admin, by the room's power levels).
    pub async fn can_change_settings(&self, room: &str) -> Result<bool, EngineError> {
        let (sdk_room, _) = self.room(room)?;
        let levels = sdk_room
            .power_levels()
            .await
            .map_err(|e| EngineError::Matrix(Box::new(e.into())))?;
        let me = self
            .inner
            .client
            .user_id()
            .ok_or_else(|| EngineError::Stopped("not signed in".into()))?;
        Ok(levels.user_can_send_state(me, walkie_protocol::GROUP_EVENT_TYPE.into()))
    }

    /// Sets where the group's recordings go (a room admin's choice). The
    /// first switch to [`Recordings::Thread`] posts the thread's root
    /// message and records it in the group marker; later ones reuse it.
    pub async fn set_recordings(
        &self,
        room: &str,
        recordings: Recordings,
    ) -> Result<WalkieGroup, EngineError> {
        let (sdk_room, id) = self.room(room)?;
        let mut group = self
            .inner
            .rooms
            .read(|machines| machines.get(&id).and_then(|m| m.group().cloned()))
            .ok_or_else(|| EngineError::NotAGroup(room.to_owned()))?;
        group.recordings = recordings;
        if recordings == Recordings::Thread && group.thread_root.is_none() {
            let root = sdk_room
                .send_raw(
                    "m.room.message",
                    serde_json::json!({
                        "msgtype": "m.notice",
                        "body": "Walkie talks: the recordings of this group's talks are in this thread.",
                    }),
                )
                .await?;
            group.thread_root = Some(root.response.event_id.to_string());
        }
        room_state::enable(&sdk_room, &group).await?;
        Ok(group)
    }

    /// Sets this device's consent in `room` (`expires_ts: None` = until
    /// revoked), or revokes it with `None` (effective here at once).
    pub async fn set_consent(
        &self,
        room: &str,
        consent: Option<Consent>,
    ) -> Result<(), EngineError> {
        let (sdk_room, id) = self.room(room)?;
        if !self.is_group(&id) {
            return Err(EngineError::NotAGroup(room.to_owned()));
        }
        let signer = self
            .inner
            .signer
            .get_or_try_init(|| self.inner.account.consent_signer())
            .await?;
        let written = room_state::set_consent(
            &sdk_room,
            &self.inner.user_id,
            &self.inner.device_id,
            consent,
            signer,
        )
        .await?;
        self.inner
            .intents
            .set(&id, written.devices.get(&self.inner.device_id).cloned());
        if consent.is_none() {
            self.inner.rooms.with(&self.inner, &id, |machine| {
                machine.revoke_own_consent(now_ms())
            });
        }
        Ok(())
    }

    /// Grants this device's consent in `room` for `duration` (`None`: until
    /// revoked); `talk: false` only receives. Returns the grant.
    pub async fn grant_consent(
        &self,
        room: &str,
        duration: Option<std::time::Duration>,
        talk: bool,
    ) -> Result<Consent, EngineError> {
        let consent = Consent::granted_for(
            duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            talk,
            now_ms(),
        );
        self.set_consent(room, Some(consent)).await?;
        Ok(consent)
    }

    /// Revokes this device's consent in `room` (effective here at once).
    pub async fn revoke_consent(&self, room: &str) -> Result<(), EngineError> {
        self.set_consent(room, None).await
    }

    fn is_group(&self, id: &RoomId) -> bool {
        self.inner
            .rooms
            .read(|rooms| rooms.get(id).is_some_and(|m| m.is_group()))
    }

    /// The walkie state of a room: settings, consenting devices, holder.
    pub fn status(&self, room: &str) -> Result<RoomStatus, EngineError> {
        let id = RoomId::parse(room)?;
        let now = now_ms();
        let excluded = self
            .inner
            .excluded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .unwrap_or_default();
        self.inner.rooms.read(|rooms| {
            let machine = rooms.get(&id).filter(|m| m.is_group());
            let (Some(machine), Some(group)) = (machine, machine.and_then(|m| m.group())) else {
                return Err(EngineError::NotAGroup(room.to_owned()));
            };
            let consents = machine.consents();
            let devices = machine
                .receivers(now)
                .into_iter()
                .filter_map(|(user, device)| {
                    let consent = consents.get(&user, &device, now)?;
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
                lease_ms: group.lease_ms,
                max_talk_ms: group.max_talk_ms,
                recordings: group.recordings,
                devices,
                holder: machine.holder().map(|c| c.user_id.to_string()),
                holder_device: machine.holder().map(|c| c.device_id.to_string()),
                excluded,
            })
        })
    }

    /// Users whose identity changed and who are not talked to until the
    /// local user accepts it ([`Engine::accept_identity`]).
    pub fn identity_changed(&self) -> Vec<String> {
        let mut users: Vec<String> = self.inner.trust.identity_changed().into_iter().collect();
        users.sort();
        users
    }

    /// Accepts `user`'s new identity: their signed devices hear and are
    /// heard again. Returns whether an identity was known for them.
    pub async fn accept_identity(&self, user: &str) -> Result<bool, EngineError> {
        let known = crate::trust::accept_identity(&self.inner.client, user).await?;
        self.inner.trust.accepted(user);
        Ok(known)
    }

    /// This device's standing in its own account.
    pub async fn own_device_state(&self) -> Result<crate::trust::OwnDeviceState, EngineError> {
        Ok(crate::trust::own_device_state(&self.inner.client).await?)
    }

    /// The rooms the engine knows as walkie groups.
    pub fn groups(&self) -> Vec<String> {
        self.inner.rooms.read(|rooms| {
            rooms
                .iter()
                .filter(|(_, m)| m.is_group())
                .map(|(id, _)| id.to_string())
                .collect()
        })
    }

    /// Claims the floor of `room`. The claim goes out at once (before any
    /// audio); send frames with [`Talk::send`], end with [`Talk::finish`].
    /// Consenting devices whose keys are not known yet are asked for after
    /// the claim, off the press path, once per user: they get the talk from
    /// the next message on.
    pub async fn talk(&self, room: &str) -> Result<Talk, EngineError> {
        let id = RoomId::parse(room)?;
        // Others' clients drop audio from an unverified device, and
        // matrix-sdk will not encrypt from one: say so instead of talking
        // into silence. (A store lookup, no network.)
        let own = self
            .inner
            .client
            .encryption()
            .get_own_device()
            .await
            .map_err(|e| EngineError::Matrix(Box::new(e.into())))?;
        if !own.is_some_and(|d| d.is_cross_signed_by_owner()) {
            return Err(EngineError::DeviceNotVerified);
        }
        let now = now_ms();
        let pressed = self
            .inner
            .rooms
            .with(&self.inner, &id, |machine| {
                let record = machine
                    .group()
                    .is_some_and(|g| g.recordings != Recordings::None);
                machine.press(now).map(|session| (session, record))
            })
            .ok_or_else(|| EngineError::NotAGroup(room.to_owned()))?;
        let (session_id, record) = pressed.map_err(|e| match e {
            PressError::NotAGroup => EngineError::NotAGroup(room.to_owned()),
            PressError::NoConsent => EngineError::NoConsent(room.to_owned()),
            PressError::Busy { holder } => EngineError::FloorBusy {
                holder: describe(&holder),
            },
            PressError::Refused => EngineError::Stopped("the floor refused the press".into()),
            e @ PressError::CoolingDown { .. } => EngineError::Stopped(e.to_string()),
        })?;
        let journal = if record {
            let meta = outbox::EntryMeta {
                room_id: id.to_string(),
                session_id: session_id.to_string(),
                start_ts: now,
            };
            self.inner.poster.talk_opened(&meta.session_id);
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
        self.refresh_receiver_keys(&id);
        Ok(Talk {
            engine: self.clone(),
            room_id: id,
            session_id,
            frames_sent: 0,
            journal,
        })
    }

    /// Queries, in the background, the device keys of consenting users
    /// whose devices we do not know yet (a fresh process may not have
    /// synced them): one query per user, however many devices it lists.
    fn refresh_receiver_keys(&self, id: &RoomId) {
        let inner = self.inner.clone();
        let id = id.clone();
        tokio::spawn(async move { refresh_receiver_keys(&inner, &id).await });
    }
}

async fn refresh_receiver_keys(inner: &Inner, id: &RoomId) {
    {
        let receivers = inner.rooms.read(|rooms| {
            rooms
                .get(id)
                .map(|m| m.receivers(now_ms()))
                .unwrap_or_default()
        });
        let encryption = inner.client.encryption();
        let mut queried = HashSet::new();
        for (user, device) in receivers {
            if queried.contains(&user) {
                continue;
            }
            let (Ok(u), d) = (
                matrix_sdk::ruma::OwnedUserId::try_from(user.as_str()),
                matrix_sdk::ruma::OwnedDeviceId::from(device.as_str()),
            ) else {
                continue;
            };
            if matches!(encryption.get_device(&u, &d).await, Ok(Some(_))) {
                continue;
            }
            queried.insert(user);
            if let Err(e) = encryption.request_user_identity(&u).await {
                tracing::warn!(user = %u, error = %e, "cannot query device keys");
            }
        }
    }
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
        poster::post_pending(&self.inner).await
    }
}
