//! The sender task: drains the engine's queue of outgoing audio messages in
//! order and sends each, Olm-encrypted, to the devices its room machine
//! addressed it to (those consenting to receive when it was queued, from
//! trusted devices only), with matrix-sdk's identity-based strategy as a
//! second gate. A talker only queues; the ~10–15 ms each encrypted PUT
//! takes is spent here.

use std::sync::Arc;

use matrix_sdk::ruma::{serde::Raw, OwnedDeviceId, OwnedUserId};
use matrix_sdk_base::crypto::CollectStrategy;
use tokio::sync::{mpsc, oneshot};
use walkie_protocol::{room::Transmit, RoomId, AUDIO_EVENT_TYPE};

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

pub(super) async fn run(inner: Arc<Inner>, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
    let mut stats = SendStats::default();
    while let Some(item) = queue.recv().await {
        match item {
            Outgoing::Flush(done) => {
                let _ = done.send(stats);
                stats = SendStats::default();
            }
            Outgoing::Chunk { room_id, transmit } => {
                if let Err(e) = send_chunk(&inner, &room_id, &transmit).await {
                    stats.errors += 1;
                    tracing::warn!(room = %room_id, seq = transmit.header.seq, error = %e, "sending walkie audio failed");
                }
            }
        }
    }
}

async fn send_chunk(
    inner: &Inner,
    room_id: &RoomId,
    transmit: &Transmit,
) -> Result<(), super::EngineError> {
    let content = transmit.header.to_content(room_id, &transmit.frames)?;
    let receivers: Vec<(OwnedUserId, OwnedDeviceId)> = transmit
        .to
        .iter()
        .filter_map(|(u, d)| Some((u.as_str().try_into().ok()?, d.as_str().into())))
        .collect();
    let mut devices = Vec::with_capacity(receivers.len());
    for (user, device) in &receivers {
        match inner.client.encryption().get_device(user, device).await {
            Ok(Some(d)) => devices.push(d),
            Ok(None) => tracing::debug!(%user, %device, "consenting device has no known keys yet"),
            Err(e) => tracing::warn!(%user, %device, error = %e, "device lookup failed"),
        }
    }
    if devices.is_empty() {
        return Ok(());
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
    Ok(())
}
