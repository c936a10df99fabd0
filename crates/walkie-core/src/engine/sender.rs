//! The sender task: drains the engine's queue of outgoing audio messages in
//! order and sends each to the devices its room machine addressed it to
//! (those consenting to receive when it was queued, trusted devices only).
//! A talker only queues; the network time is spent here.
//!
//! Sealed fan-out (`docs/protocol.md`, "Sealed fan-out"): each talk gets
//! fresh [`TalkKeys`]. A device that has not had this epoch's keys gets the
//! message Olm-encrypted with the keys inside (the claim, a device that
//! starts consenting mid-talk, everyone after a rotation); every other
//! device gets the same sealed content, all in one `/sendToDevice` request.
//! A device that stops being addressed mid-talk makes a new epoch, so it
//! can read nothing sent after. `WALKIE_FANOUT=olm` sends every message
//! Olm-encrypted per device instead (the old path, kept for benchmarks).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
};

use matrix_sdk::ruma::{
    api::client::to_device::send_event_to_device::v3::Request as ToDeviceRequest,
    events::AnyToDeviceEventContent, serde::Raw, to_device::DeviceIdOrAllDevices, OwnedDeviceId,
    OwnedUserId, TransactionId,
};
use matrix_sdk_base::crypto::CollectStrategy;
use tokio::sync::{mpsc, oneshot};
use walkie_protocol::{
    room::Transmit, sealed::KEYS_FIELD, DeviceId, RoomId, SessionId, TalkKeys, UserId,
    AUDIO_EVENT_TYPE, SEALED_AUDIO_EVENT_TYPE,
};

use super::Inner;

pub(super) enum Outgoing {
    /// A message and the devices the room machine addressed it to.
    Chunk { room_id: RoomId, transmit: Transmit },
    /// Answered once everything queued before it has been sent.
    Flush(oneshot::Sender<SendStats>),
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SendStats {
    pub errors: usize,
}

/// How live audio reaches its receivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fanout {
    /// Keys over Olm, batches sealed once (the default).
    Sealed,
    /// Every message Olm-encrypted per device (`WALKIE_FANOUT=olm`).
    Olm,
}

impl Fanout {
    fn from_env() -> Self {
        match std::env::var("WALKIE_FANOUT").as_deref() {
            Ok("olm") => Self::Olm,
            _ => Self::Sealed,
        }
    }
}

type Device = (UserId, DeviceId);

/// Our keys for one talk of ours, and which devices hold this epoch's.
struct TalkFanout {
    keys: TalkKeys,
    informed: HashSet<Device>,
}

/// Talks of ours kept at once (one is live; an ended one's state goes with
/// its `end` message, this only bounds a talk that never sent one).
const TALKS_KEPT: usize = 4;

pub(super) async fn run(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    let fanout = Fanout::from_env();
    if fanout == Fanout::Olm {
        tracing::info!("live audio fan-out: Olm per device (WALKIE_FANOUT=olm)");
    }
    let mut stats = SendStats::default();
    let mut talks: HashMap<SessionId, TalkFanout> = HashMap::new();
    while let Some(item) = queue.recv().await {
        match item {
            Outgoing::Flush(done) => {
                let _ = done.send(stats);
                stats = SendStats::default();
            }
            Outgoing::Chunk { room_id, transmit } => {
                let sent = match fanout {
                    Fanout::Olm => send_olm(&inner, &room_id, &transmit, &transmit.to, None)
                        .await
                        .map(|_| ()),
                    Fanout::Sealed => send_sealed(&inner, &room_id, &transmit, &mut talks).await,
                };
                if let Err(e) = sent {
                    stats.errors += 1;
                    tracing::warn!(room = %room_id, seq = transmit.header.seq, error = %e, "sending walkie audio failed");
                }
                if inner.unsent.fetch_sub(1, Ordering::AcqRel) == 1 {
                    inner.sender_idle.notify_waiters();
                }
            }
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Keys must be unpredictable: a broken OS RNG is not papered over.
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!(error = %e, "the OS random number generator failed");
        std::process::abort();
    }
    bytes
}

async fn send_sealed(
    inner: &Inner,
    room_id: &RoomId,
    transmit: &Transmit,
    talks: &mut HashMap<SessionId, TalkFanout>,
) -> Result<(), super::EngineError> {
    let session = &transmit.header.session_id;
    if !talks.contains_key(session) {
        if talks.len() >= TALKS_KEPT {
            talks.clear();
        }
        talks.insert(
            session.clone(),
            TalkFanout {
                keys: TalkKeys::new(random(), random()),
                informed: HashSet::new(),
            },
        );
    }
    let Some(talk) = talks.get_mut(session) else {
        return Ok(());
    };
    let to: HashSet<Device> = transmit.to.iter().cloned().collect();
    if talk.informed.iter().any(|d| !to.contains(d)) {
        // A receiver stopped consenting (or lost trust, or left): a new
        // media key for those who remain, over Olm.
        talk.keys.rotate(random());
        talk.informed.clear();
        tracing::debug!(session = %session, epoch = talk.keys.epoch(), "new media key epoch");
    }
    let (known, fresh): (Vec<Device>, Vec<Device>) = transmit
        .to
        .iter()
        .cloned()
        .partition(|d| talk.informed.contains(d));
    if !fresh.is_empty() {
        let keys = talk.keys.announcement().to_json();
        let reached = send_olm(inner, room_id, transmit, &fresh, Some(keys)).await?;
        talk.informed.extend(reached);
    }
    if !known.is_empty() {
        let content = talk
            .keys
            .seal(room_id, &transmit.header, &transmit.frames, random())?;
        send_plain(inner, &known, SEALED_AUDIO_EVENT_TYPE, content).await?;
    }
    if transmit.header.end {
        talks.remove(session);
    }
    Ok(())
}

/// One `/sendToDevice` request carrying the same content for each device.
async fn send_plain(
    inner: &Inner,
    to: &[Device],
    event_type: &str,
    content: serde_json::Value,
) -> Result<(), super::EngineError> {
    let raw: Raw<AnyToDeviceEventContent> = Raw::new(&content)?.cast_unchecked();
    let mut messages: BTreeMap<OwnedUserId, BTreeMap<DeviceIdOrAllDevices, _>> = BTreeMap::new();
    for (user, device) in to {
        let Ok(user) = OwnedUserId::try_from(user.as_str()) else {
            continue;
        };
        let device: OwnedDeviceId = device.as_str().into();
        messages
            .entry(user)
            .or_default()
            .insert(DeviceIdOrAllDevices::DeviceId(device), raw.clone());
    }
    let request = ToDeviceRequest::new_raw(event_type.into(), TransactionId::new(), messages);
    inner.client.send(request).await?;
    Ok(())
}

/// Sends the message Olm-encrypted to each of `to` (with `keys` in its
/// content when given). Returns the devices it was encrypted for.
async fn send_olm(
    inner: &Inner,
    room_id: &RoomId,
    transmit: &Transmit,
    to: &[Device],
    keys: Option<serde_json::Value>,
) -> Result<Vec<Device>, super::EngineError> {
    let mut content = transmit.header.to_content(room_id, &transmit.frames)?;
    if let Some(keys) = keys {
        content[KEYS_FIELD] = keys;
    }
    let mut devices = Vec::with_capacity(to.len());
    let mut addressed = Vec::with_capacity(to.len());
    for (user, device) in to {
        let Ok(user_id) = OwnedUserId::try_from(user.as_str()) else {
            continue;
        };
        let device_id: OwnedDeviceId = device.as_str().into();
        match inner
            .client
            .encryption()
            .get_device(&user_id, &device_id)
            .await
        {
            Ok(Some(d)) => {
                devices.push(d);
                addressed.push((user.clone(), device.clone()));
            }
            Ok(None) => tracing::debug!(%user, %device, "consenting device has no known keys yet"),
            Err(e) => tracing::warn!(%user, %device, error = %e, "device lookup failed"),
        }
    }
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let raw = Raw::new(&content)?.cast_unchecked();
    let failed = inner
        .client
        .encryption()
        .encrypt_and_send_raw_to_device(
            devices.iter().collect(),
            AUDIO_EVENT_TYPE,
            raw,
            // Only devices their owner's identity signed; matrix-sdk
            // withholds from the rest (they are also never addressed: see
            // `room_state`, which drops their consent).
            CollectStrategy::IdentityBasedStrategy,
        )
        .await?;
    if !failed.is_empty() {
        tracing::warn!(
            ?failed,
            "walkie audio could not be encrypted for some devices"
        );
    }
    let failed: HashSet<(String, String)> = failed
        .iter()
        .map(|(u, d)| (u.to_string(), d.to_string()))
        .collect();
    Ok(addressed
        .into_iter()
        .filter(|(u, d)| !failed.contains(&(u.as_str().to_owned(), d.as_str().to_owned())))
        .collect())
}
