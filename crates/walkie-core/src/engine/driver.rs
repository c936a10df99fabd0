//! The engine driver: the only place that feeds the room machines
//! ([`walkie_protocol::room::RoomMachine`]) and drains their `poll_*`
//! (quinn's `ConnectionDriver` idea). It applies sync responses (room state
//! first, then decrypted to-device audio) and fires floor timeouts; every
//! command from [`super::Engine`] or a [`super::Talk`] goes through
//! [`Rooms::with`], which drains the machine's transmits to the sender queue
//! and its events to the shell.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex, MutexGuard},
    time::Duration,
};

use matrix_sdk::{
    deserialized_responses::{ProcessedToDeviceEvent, VerificationLevel, VerificationState},
    ruma::OwnedRoomId,
    sync::{JoinedRoomUpdate, State, SyncResponse},
};
use serde_json::Value;
use tokio::sync::mpsc;
use walkie_protocol::{
    room::{RoomEvent, RoomMachine},
    sealed::MAX_SEALED_CONTENT_BYTES,
    DeviceId, KeyAnnouncement, RoomId, SealError, SessionId, UserId, ValidatedChunk,
    AUDIO_EVENT_TYPE, MAX_CHUNK_CONTENT_BYTES, SEALED_AUDIO_EVENT_TYPE,
};

use super::{
    event::describe, now_ms, room_state, sender::Outgoing, EngineEvent, Inner, TransmitStopReason,
};

/// The room machines of every joined room whose state was read.
#[derive(Default)]
pub(super) struct Rooms {
    machines: Mutex<HashMap<RoomId, RoomMachine>>,
}

impl Rooms {
    fn lock(&self) -> MutexGuard<'_, HashMap<RoomId, RoomMachine>> {
        self.machines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the room's machine, then drains what it produced: its
    /// messages to the sender queue (in order), its events to the shell.
    /// `None` when the room has no machine.
    pub(super) fn with<R>(
        &self,
        inner: &Inner,
        room: &RoomId,
        f: impl FnOnce(&mut RoomMachine) -> R,
    ) -> Option<R> {
        let (out, sooner) = {
            let mut machines = self.lock();
            let machine = machines.get_mut(room)?;
            let before = machine.poll_timeout();
            let out = f(machine);
            drain(inner, machine);
            let sooner = match (before, machine.poll_timeout()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(before), Some(after)) => after < before,
            };
            (out, sooner)
        };
        // Only a deadline that moved earlier needs the driver awake (a later
        // one just makes its sleep end early once): a talker's every send
        // does not wake it.
        if sooner {
            inner.wake.notify_one();
        }
        Some(out)
    }

    /// Reads every machine (for status and group lists).
    pub(super) fn read<R>(&self, f: impl FnOnce(&HashMap<RoomId, RoomMachine>) -> R) -> R {
        f(&self.lock())
    }

    /// Drops a room's machine (we left it). Returns whether there was one.
    fn remove(&self, room: &RoomId) -> bool {
        self.lock().remove(room).is_some()
    }

    fn next_timeout(&self) -> Option<u64> {
        self.lock().values().filter_map(|m| m.poll_timeout()).min()
    }

    fn fire_timeouts(&self, inner: &Inner, now: u64) {
        let mut machines = self.lock();
        for machine in machines.values_mut() {
            if machine.poll_timeout().is_some_and(|t| t <= now) {
                machine.handle_timeout(now);
                drain(inner, machine);
            }
        }
    }
}

/// Moves a machine's outputs on: transmits to the sender, events to the
/// shell (and the log).
fn drain(inner: &Inner, machine: &mut RoomMachine) {
    let now = now_ms();
    let room = machine.room_id().to_string();
    while let Some(transmit) = machine.poll_transmit(now) {
        inner.unsent.fetch_add(1, Ordering::Relaxed);
        let _ = inner.outgoing.send(Outgoing::Chunk {
            room_id: machine.room_id().clone(),
            transmit,
        });
    }
    while let Some(event) = machine.poll_event() {
        let out = match event {
            RoomEvent::TransmitStarted { session_id } => {
                tracing::info!(room = %room, session = %session_id, "transmitting");
                continue;
            }
            RoomEvent::TransmitStopped { session_id, reason } => {
                let reason = TransmitStopReason::from(&reason);
                tracing::info!(room = %room, session = %session_id, %reason, "stopped transmitting");
                EngineEvent::TransmitStopped {
                    room_id: room.clone(),
                    session_id: session_id.to_string(),
                    reason,
                }
            }
            RoomEvent::TalkStarted { claim } => EngineEvent::TalkStarted {
                room_id: room.clone(),
                user_id: claim.user_id.to_string(),
                device_id: claim.device_id.to_string(),
                session_id: claim.session_id.to_string(),
                start_ts: claim.start_ts,
            },
            RoomEvent::Audio {
                session_id,
                seq,
                ts,
                frame_index,
                frames,
            } => EngineEvent::Audio {
                room_id: room.clone(),
                session_id: session_id.to_string(),
                seq,
                ts,
                frame_index,
                frame_count: frames.len(),
                received_ms: now,
                frames,
            },
            RoomEvent::TalkEnded { claim, reason } => EngineEvent::TalkEnded {
                room_id: room.clone(),
                session_id: claim.session_id.to_string(),
                user_id: claim.user_id.to_string(),
                reason: reason.into(),
            },
            RoomEvent::FloorFree => EngineEvent::FloorFree {
                room_id: room.clone(),
            },
        };
        let _ = inner.events.send(out);
    }
}

pub(super) fn random_session_id() -> SessionId {
    let mut bytes = [0u8; 16];
    // The OS RNG only fails on broken systems; a counter-free fallback from
    // the clock still gives distinct ids per talk.
    if getrandom::fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    SessionId::from_entropy(bytes)
}

/// To-device messages Synapse hands out per sync response at most.
const TO_DEVICE_PAGE: usize = 100;

/// Full pages of to-device messages drained before ready at most: a backlog
/// longer than this (a stranger's flood that keeps coming) does not hold
/// the start up; what is left is handled after ready, as usual.
const MAX_PAGES_BEFORE_READY: usize = 20;

/// The driver task: applies sync responses and floor timeouts.
pub(super) async fn run(inner: Arc<Inner>, mut syncs: mpsc::Receiver<crate::Synced>) {
    let mut first = true;
    let mut ready = false;
    let mut offline = false;
    let mut full_pages = 0;
    loop {
        let sleep = match inner.rooms.next_timeout() {
            Some(at) => Duration::from_millis(at.saturating_sub(now_ms())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            synced = syncs.recv() => {
                let response = match synced {
                    Some(crate::Synced::Response(r)) => Some(*r),
                    Some(crate::Synced::SignedOut) => {
                        let _ = inner.events.send(EngineEvent::SignedOut);
                        break;
                    }
                    Some(crate::Synced::Failed { error, retry_in }) => {
                        if !offline {
                            offline = true;
                            tracing::info!(%error, retry_in_ms = retry_in.as_millis() as u64, "offline: the homeserver cannot be reached");
                            let _ = inner.events.send(EngineEvent::Offline { reason: error });
                        }
                        None
                    }
                    None => break,
                };
                if let Some(response) = response {
                    if offline {
                        offline = false;
                        tracing::info!("online again");
                        let _ = inner.events.send(EngineEvent::Online);
                    }
                    // A full page of to-device messages means more are
                    // waiting (e.g. the rest of a talk that ended while we
                    // were away): ready only once they are in, or a press
                    // could find a talk live whose `end` is on the next page.
                    let more_waiting = response.to_device.len() >= TO_DEVICE_PAGE;
                    handle_sync(&inner, response, first).await;
                    first = false;
                    full_pages += usize::from(more_waiting);
                    if !ready && (!more_waiting || full_pages >= MAX_PAGES_BEFORE_READY) {
                        if more_waiting {
                            tracing::warn!(pages = full_pages, "ready with to-device messages still waiting (a flood?)");
                        }
                        ready = true;
                        inner.ready.notify_waiters();
                        inner.ready.notify_one();
                        let _ = inner.events.send(EngineEvent::Ready);
                    }
                }
            }
            _ = tokio::time::sleep(sleep) => {}
            _ = inner.wake.notified() => {}
            _ = inner.trust.changed.notified() => {
                // Device lists or identities changed: which consents count
                // may have, in every walkie group (other rooms have none).
                let rooms: Vec<OwnedRoomId> = inner.rooms.read(|machines| {
                    machines
                        .keys()
                        .filter_map(|id| OwnedRoomId::try_from(id.as_str()).ok())
                        .collect()
                });
                for room_id in rooms {
                    reload_room(&inner, &room_id).await;
                }
            }
        }
        inner.rooms.fire_timeouts(&inner, now_ms());
    }
    tracing::debug!("engine driver stopped");
}

async fn handle_sync(inner: &Arc<Inner>, response: SyncResponse, first: bool) {
    // Room state first, so consents granted in this sync apply to audio in it.
    let changed: Vec<OwnedRoomId> = if first {
        inner
            .client
            .joined_rooms()
            .iter()
            .map(|r| r.room_id().to_owned())
            .collect()
    } else {
        response
            .rooms
            .joined
            .iter()
            .filter(|(_, update)| state_may_have_moved(update))
            .map(|(id, _)| id.clone())
            .collect()
    };
    for room_id in changed {
        reload_room(inner, &room_id).await;
    }
    // Left, kicked or banned: the room's walkie state goes at once.
    for room_id in response.rooms.left.keys() {
        if let Ok(id) = RoomId::parse(room_id.as_str()) {
            if inner.rooms.remove(&id) {
                tracing::info!(room = %room_id, "left a walkie group");
                let _ = inner.events.send(EngineEvent::RoomChanged {
                    room_id: room_id.to_string(),
                });
            }
        }
    }
    for event in response.to_device {
        handle_to_device(inner, event);
    }
}

/// Whether a joined room's sync update may change what [`room_state::load`]
/// reads: a state event (in `state`, or in the timeline when the server
/// sends state before it), a redaction (it can strip a state event), or a
/// gap. A voice message, a receipt or typing change nothing there, and a
/// talk's own recording must not re-read the group on every device.
fn state_may_have_moved(update: &JoinedRoomUpdate) -> bool {
    let state = match &update.state {
        State::Before(events) | State::After(events) => events,
    };
    !state.is_empty()
        || update.timeline.limited
        || update.timeline.events.iter().any(|event| {
            let raw = event.raw();
            raw.get_field::<serde::de::IgnoredAny>("state_key")
                .ok()
                .flatten()
                .is_some()
                || raw
                    .get_field::<String>("type")
                    .ok()
                    .flatten()
                    .is_some_and(|t| t == "m.room.redaction")
        })
}

/// Reads a room's walkie state from the store into its machine (made on
/// first sight of a group; dropped once it is no group and idle).
async fn reload_room(inner: &Arc<Inner>, room_id: &matrix_sdk::ruma::RoomId) {
    let Some(room) = inner.client.get_room(room_id) else {
        return;
    };
    let Ok(id) = RoomId::parse(room_id.as_str()) else {
        return;
    };
    let now = now_ms();
    if room.encryption_state().is_encrypted() {
        inner.trust.watch_room(inner, &room).await;
    }
    let identity_changed = inner.trust.identity_changed();
    let state = match room_state::load(&room, now, &identity_changed).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(room = %room_id, error = %e, "cannot read the room's walkie state");
            return;
        }
    };
    let known = inner.rooms.with(inner, &id, |machine| {
        machine.handle_state(
            state.group.clone(),
            state.consents.clone(),
            state.members.clone(),
            now,
        );
    });
    if state.group.is_some() {
        reassert_own_consent(inner, &room, &id, &state.own_content);
    }
    inner
        .excluded
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), state.excluded.clone());
    if known.is_none() && state.group.is_some() {
        tracing::info!(room = %room_id, "walkie group");
        let machine = RoomMachine::new(
            id.clone(),
            inner.user_id.clone(),
            inner.device_id.clone(),
            state.group,
            state.consents,
            state.members,
            Box::new(random_session_id),
        );
        inner.rooms.lock().insert(id, machine);
    }
    let _ = inner.events.send(EngineEvent::RoomChanged {
        room_id: room_id.to_string(),
    });
}

/// Puts this device's consent entry back if the room's content for our
/// user lacks what we last wrote (a concurrent write by another of our
/// devices dropped it) while that grant is still in force.
fn reassert_own_consent(
    inner: &Arc<Inner>,
    room: &matrix_sdk::Room,
    id: &RoomId,
    current: &walkie_protocol::ConsentContent,
) {
    let device = &inner.device_id;
    let wanted = inner.intents.get(id);
    let active = wanted
        .as_ref()
        .is_some_and(|w| w.consent.is_active(now_ms()));
    if !active || wanted.as_ref() == current.devices.get(device) {
        return;
    }
    if !inner.intents.begin_rewrite(id) {
        return;
    }
    let content = current.with_device(device, wanted);
    let (inner, room, id) = (inner.clone(), room.clone(), id.clone());
    tracing::info!(room = %id, "our consent entry was dropped by another write; putting it back");
    tokio::spawn(async move {
        if let Err(e) = room_state::write_content(&room, &inner.user_id, &content).await {
            tracing::warn!(room = %id, error = %e, "cannot re-assert our consent");
        }
        inner.intents.end_rewrite(&id);
    });
}

/// Reports a dropped walkie message: at most once per sender and `kind` a
/// minute (with how many were left out), at WARN from a member of one of
/// our walkie groups and at DEBUG from anyone else (a stranger cannot fill
/// the log).
fn drop_event(inner: &Inner, sender: &str, kind: &'static str, reason: String) {
    let left_out = inner
        .drop_log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .note(sender, kind, now_ms());
    let Some(left_out) = left_out else {
        return;
    };
    let member = UserId::parse(sender).is_ok_and(|user| {
        inner
            .rooms
            .read(|rooms| rooms.values().any(|m| m.is_member(&user)))
    });
    if member {
        tracing::warn!(%sender, kind, left_out, reason = %reason, "dropped walkie to-device message");
    } else {
        tracing::debug!(%sender, kind, left_out, reason = %reason, "dropped walkie to-device message from a stranger");
    }
    let _ = inner.events.send(EngineEvent::Dropped { reason });
}

/// Only `Decrypted` to-device events may carry walkie audio; the sender is
/// the one the Olm session authenticated, never the content's claim.
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
                    log_received(&encryption_info.sender);
                    drop_event(
                        inner,
                        encryption_info.sender.as_str(),
                        "oversize",
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
            log_received(&encryption_info.sender);
            let sender = match UserId::parse(encryption_info.sender.as_str()) {
                Ok(u) => u,
                Err(e) => {
                    return drop_event(
                        inner,
                        encryption_info.sender.as_str(),
                        "invalid sender",
                        format!("invalid sender: {e}"),
                    )
                }
            };
            let Some(device) = encryption_info
                .sender_device
                .as_ref()
                .and_then(|d| DeviceId::parse(d.as_str()).ok())
            else {
                return drop_event(
                    inner,
                    sender.as_str(),
                    "no sender device",
                    format!("walkie audio from {sender} without a sender device"),
                );
            };
            if let Some(why) = untrusted_sender(&encryption_info.verification_state) {
                return drop_event(
                    inner,
                    sender.as_str(),
                    "untrusted device",
                    format!("walkie audio from {sender} ({device}): {why}"),
                );
            }
            handle_audio(inner, &value["content"], &sender, &device);
        }
        ProcessedToDeviceEvent::PlainText(raw) => {
            let event_type = raw.get_field::<String>("type").ok().flatten();
            let sender = || {
                raw.get_field::<String>("sender")
                    .ok()
                    .flatten()
                    .unwrap_or_default()
            };
            match event_type.as_deref() {
                Some(SEALED_AUDIO_EVENT_TYPE) => {
                    let sender = sender();
                    log_received_str(&sender);
                    handle_sealed(inner, raw.json().get(), &sender);
                }
                Some(AUDIO_EVENT_TYPE) => {
                    let sender = sender();
                    drop_event(
                        inner,
                        &sender,
                        "unencrypted",
                        format!("unencrypted walkie audio claiming to be from {sender}"),
                    )
                }
                _ => {}
            }
        }
        ProcessedToDeviceEvent::UnableToDecrypt { utd_info, .. } => {
            tracing::debug!(target: "walkie_to_device", "walkie to-device message received (undecryptable)");
            tracing::debug!(info = ?utd_info, "undecryptable to-device event");
        }
        ProcessedToDeviceEvent::Invalid(_) => {}
    }
}

/// One line per walkie to-device message this client receives (the
/// `walkie_to_device` debug target), whatever becomes of it: the tests
/// count what a device was sent by it.
fn log_received(sender: &matrix_sdk::ruma::UserId) {
    log_received_str(sender.as_str());
}

fn log_received_str(sender: &str) {
    tracing::debug!(target: "walkie_to_device", %sender, "walkie to-device message received");
}

/// Why audio from a device with this verification state is refused, if it
/// is: the sending device must be signed by its owner's identity, and a
/// verified identity must not have changed. (A changed identity that was
/// never verified shows as `UnverifiedIdentity`; its devices are refused
/// because their consent does not count, see `room_state`.)
fn untrusted_sender(state: &VerificationState) -> Option<&'static str> {
    match state {
        VerificationState::Verified
        | VerificationState::Unverified(VerificationLevel::UnverifiedIdentity) => None,
        VerificationState::Unverified(VerificationLevel::UnsignedDevice) => {
            Some("the sending device is not signed by its owner")
        }
        VerificationState::Unverified(VerificationLevel::VerificationViolation) => {
            Some("the sender's verified identity changed")
        }
        VerificationState::Unverified(VerificationLevel::None(_)) => {
            Some("the sending device is unknown")
        }
        VerificationState::Unverified(VerificationLevel::MismatchedSender) => {
            Some("the sending device belongs to another user")
        }
    }
}

fn handle_audio(inner: &Inner, content: &Value, sender: &UserId, device: &DeviceId) {
    let chunk = match ValidatedChunk::parse_received(content, sender, device, true) {
        Ok(c) => c,
        Err(e) => {
            return drop_event(
                inner,
                sender.as_str(),
                "invalid",
                format!("invalid walkie audio from {sender} ({device}): {e}"),
            )
        }
    };
    // The talk's keys for its sealed batches, bound to the device Olm
    // authenticated (the caller checked that device is trusted).
    if let Some(keys) = KeyAnnouncement::from_content(content) {
        let learnt = keys.and_then(|keys| inner.talk_keys().learn(&chunk, keys, now_ms()));
        if let Err(e) = learnt {
            return drop_event(
                inner,
                sender.as_str(),
                e.kind(),
                format!("walkie talk keys from {sender} ({device}): {e}"),
            );
        }
    }
    admit(inner, chunk);
}

/// A sealed batch (plaintext to-device): opened only with keys an Olm
/// message of the same session brought from a trusted device.
fn handle_sealed(inner: &Inner, json: &str, sender: &str) {
    if json.len() > MAX_SEALED_CONTENT_BYTES + 4096 {
        return drop_event(
            inner,
            sender,
            "oversize sealed",
            format!("oversize sealed walkie audio from {sender}"),
        );
    }
    let opened = serde_json::from_str::<Value>(json)
        .map_err(|e| SealError::Protocol(walkie_protocol::ProtocolError::Malformed(e.to_string())))
        .and_then(|event| inner.talk_keys().open(&event["content"], sender));
    match opened {
        Ok(chunk) => admit(inner, chunk),
        Err(e) => drop_event(
            inner,
            sender,
            e.kind(),
            format!("sealed walkie audio from {sender}: {e}"),
        ),
    }
}

/// Hands a validated chunk to its room's machine.
fn admit(inner: &Inner, chunk: ValidatedChunk) {
    let (sender, device) = (chunk.sender().clone(), chunk.sender_device().clone());
    let room_id = chunk.room_id().clone();
    let admitted = inner.rooms.with(inner, &room_id, |machine| {
        machine.handle_chunk(chunk, now_ms())
    });
    match admitted {
        None => drop_event(
            inner,
            sender.as_str(),
            "not a group",
            format!("walkie audio for {room_id}, which is not a walkie group here"),
        ),
        Some(Err(why)) => drop_event(
            inner,
            sender.as_str(),
            why.kind(),
            format!("walkie audio from {sender} ({device}) in {room_id}: {why}"),
        ),
        Some(Ok(())) => {}
    }
}

/// `user (device)` of a claim, for messages.
pub(super) fn holder_name(claim: &walkie_protocol::floor::Claim) -> String {
    describe(claim)
}

#[cfg(test)]
mod tests {
    use matrix_sdk::{deserialized_responses::TimelineEvent, ruma::serde::Raw};
    use serde_json::json;

    use super::*;

    fn with_timeline(events: &[Value]) -> JoinedRoomUpdate {
        let mut update = JoinedRoomUpdate::default();
        for event in events {
            let raw = Raw::new(event).expect("a JSON object").cast_unchecked();
            update
                .timeline
                .events
                .push(TimelineEvent::from_plaintext(raw));
        }
        update
    }

    fn event(kind: &str, state_key: Option<&str>) -> Value {
        let mut event = json!({
            "type": kind, "event_id": "$e", "sender": "@alice:hs",
            "origin_server_ts": 1, "content": {},
        });
        if let Some(key) = state_key {
            event["state_key"] = json!(key);
        }
        event
    }

    #[test]
    fn messages_receipts_and_typing_leave_the_group_alone() {
        let messages = with_timeline(&[
            event("m.room.message", None),
            event("m.room.encrypted", None),
        ]);
        assert!(!state_may_have_moved(&messages));
        let mut ephemeral = JoinedRoomUpdate::default();
        ephemeral.ephemeral.push(
            Raw::new(&json!({"type": "m.typing", "content": {"user_ids": []}}))
                .expect("a JSON object")
                .cast_unchecked(),
        );
        assert!(!state_may_have_moved(&ephemeral));
    }

    #[test]
    fn state_a_redaction_or_a_gap_re_reads_it() {
        let in_timeline = with_timeline(&[
            event("m.room.message", None),
            event("m.room.member", Some("@bob:hs")),
        ]);
        assert!(state_may_have_moved(&in_timeline));
        // An empty state key is a state event too (a group's marker).
        assert!(state_may_have_moved(&with_timeline(&[event(
            walkie_protocol::GROUP_EVENT_TYPE,
            Some("")
        )])));
        assert!(state_may_have_moved(&with_timeline(&[event(
            "m.room.redaction",
            None
        )])));
        let after = JoinedRoomUpdate {
            state: State::After(vec![Raw::new(&event("m.room.topic", Some("")))
                .expect("a JSON object")
                .cast_unchecked()]),
            ..Default::default()
        };
        assert!(state_may_have_moved(&after));
        let mut gap = with_timeline(&[event("m.room.message", None)]);
        gap.timeline.limited = true;
        assert!(state_may_have_moved(&gap));
    }
}
