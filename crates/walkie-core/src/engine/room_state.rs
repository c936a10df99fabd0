//! Reading and writing a room's walkie state through matrix-sdk: the group
//! marker (`org.matrix.msc4002.walkie`) and the users' consents
//! (`org.matrix.msc4002.consent`, one state event per user mapping their
//! devices to signed grants), turned into the pure types of
//! `walkie_protocol`. A grant counts only if its device signed it and is
//! trusted (see `crate::trust`); the rest are listed with the reason. Bad
//! events are dropped with a log line, never trusted.

use matrix_sdk::{
    deserialized_responses::RawAnySyncOrStrippedState,
    ruma::{
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{room::encryption::RoomEncryptionEventContent, InitialStateEvent},
        serde::Raw,
    },
    Room,
};
use std::collections::{BTreeSet, HashSet};

use matrix_sdk::{ruma::OwnedUserId, RoomMemberships};
use serde::Serialize;
use serde_json::{json, Value};

use walkie_protocol::{
    consent_owner, signing_payload, Consent, ConsentContent, ConsentSet, DeviceId, RoomId,
    SignedConsent, UserId, WalkieGroup, CONSENT_EVENT_TYPE, GROUP_EVENT_TYPE,
};

use super::EngineError;
use crate::trust::{self, Exclusion};

/// Consenting devices of one user that count at most (the rest of the
/// user's grants are ignored with one log line): more than a person's
/// devices, few enough that an account listing thousands of made-up devices
/// costs a bounded number of checks.
pub const MAX_CONSENTING_DEVICES_PER_USER: usize = 32;
/// Consenting devices of one room that count at most (the fan-out was
/// measured up to 50 on this 2-core machine; see `docs/benchmarks.md`).
/// Users with fewer devices are counted first, so one account cannot crowd
/// the others out.
pub const MAX_CONSENTING_DEVICES_PER_ROOM: usize = 256;

/// A consenting device whose consent does not count, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Excluded {
    pub user_id: String,
    pub device_id: String,
    pub reason: Exclusion,
}

/// A room's walkie state as of the local store.
#[derive(Debug, Clone)]
pub struct WalkieRoomState {
    /// `None`: not a walkie group (no marker, one we do not understand, or
    /// a marker in a room that is not end-to-end encrypted).
    pub group: Option<WalkieGroup>,
    /// Only consents signed by their device, of devices their owner's
    /// identity signed, of identities not changed unaccepted.
    pub consents: ConsentSet,
    /// Users whose membership is `join`.
    pub members: BTreeSet<UserId>,
    /// Consenting devices left out of `consents`.
    pub excluded: Vec<Excluded>,
    /// This user's consent content as the room has it (for rewrites).
    pub own_content: ConsentContent,
}

/// The raw JSON of a state event from the store.
fn raw_json(raw: &RawAnySyncOrStrippedState) -> Option<Value> {
    let parsed = match raw {
        RawAnySyncOrStrippedState::Sync(r) => r.deserialize_as_unchecked::<Value>(),
        RawAnySyncOrStrippedState::Stripped(r) => r.deserialize_as_unchecked::<Value>(),
    };
    parsed.ok()
}

/// Loads the group marker and the consents that count in `room` from the
/// local store. `identity_changed`: users whose identity changed and was
/// not accepted. Device keys not known yet are asked for once.
pub async fn load(
    room: &Room,
    now: u64,
    identity_changed: &HashSet<String>,
) -> Result<WalkieRoomState, EngineError> {
    let group = match room.get_state_event(GROUP_EVENT_TYPE.into(), "").await? {
        None => None,
        Some(raw) => match raw_json(&raw).map(|v| WalkieGroup::parse(&v["content"])) {
            Some(Ok(group)) => Some(group),
            Some(Err(e)) => {
                tracing::warn!(room = %room.room_id(), error = %e, "ignoring a walkie group marker we do not understand");
                None
            }
            None => None,
        },
    };
    let group = match group {
        Some(_) if !room.encryption_state().is_encrypted() => {
            tracing::warn!(room = %room.room_id(), "ignoring a walkie group marker in a room that is not end-to-end encrypted");
            None
        }
        other => other,
    };
    let members = room
        .members_no_sync(RoomMemberships::JOIN)
        .await?
        .iter()
        .filter_map(|m| UserId::parse(m.user_id().as_str()).ok())
        .collect();
    let room_id = RoomId::parse(room.room_id().as_str())?;
    let own_user = room.own_user_id().as_str().to_owned();
    let mut consents = ConsentSet::new();
    let mut excluded = Vec::new();
    let mut own_content = ConsentContent::default();
    let client = room.client();
    // Every user's active grants first, so the caps can be applied in an
    // order no single account controls.
    let mut listed: Vec<(UserId, Vec<(DeviceId, SignedConsent)>)> = Vec::new();
    for raw in room.get_state_events(CONSENT_EVENT_TYPE.into()).await? {
        let Some(event) = raw_json(&raw) else {
            continue;
        };
        let (Some(state_key), Some(sender)) =
            (event["state_key"].as_str(), event["sender"].as_str())
        else {
            tracing::warn!(room = %room.room_id(), "dropping a consent event without state key or sender");
            continue;
        };
        let Ok(sender) = UserId::parse(sender) else {
            tracing::warn!(room = %room.room_id(), sender, "dropping a consent event with an invalid sender");
            continue;
        };
        let user = match consent_owner(state_key, &sender) {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(room = %room.room_id(), error = %e, "dropping a consent event");
                continue;
            }
        };
        let parsed = match ConsentContent::parse(&event["content"]) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(room = %room.room_id(), user = %user, error = %e, "dropping invalid consent content");
                continue;
            }
        };
        if let Some((device, error)) = parsed.rejected.first() {
            tracing::warn!(room = %room.room_id(), user = %user, count = parsed.rejected.len(), first_device = %device, first_error = %error, "dropping invalid consent entries");
        }
        if user.as_str() == own_user {
            own_content = parsed.content.clone();
        }
        let active: Vec<(DeviceId, SignedConsent)> = parsed
            .content
            .devices
            .into_iter()
            .filter(|(_, signed)| signed.consent.is_active(now))
            .collect();
        if !active.is_empty() {
            listed.push((user, active));
        }
    }
    // Our own grants first, then users with fewer devices (a person's few
    // devices before an account listing thousands), then by user ID.
    listed.sort_by(|(a, da), (b, db)| {
        let own = |u: &UserId| u.as_str() != own_user;
        (own(a), da.len(), a).cmp(&(own(b), db.len(), b))
    });
    let mut counted = 0usize;
    for (user, mut active) in listed {
        if active.len() > MAX_CONSENTING_DEVICES_PER_USER {
            tracing::warn!(room = %room.room_id(), user = %user, listed = active.len(), cap = MAX_CONSENTING_DEVICES_PER_USER, "a user lists more consenting devices than count; the rest are ignored");
            active.truncate(MAX_CONSENTING_DEVICES_PER_USER);
        }
        let room_left = MAX_CONSENTING_DEVICES_PER_ROOM.saturating_sub(counted);
        if active.len() > room_left {
            tracing::warn!(room = %room.room_id(), user = %user, ignored = active.len() - room_left, cap = MAX_CONSENTING_DEVICES_PER_ROOM, "the room has more consenting devices than count; the rest are ignored");
            active.truncate(room_left);
        }
        counted += active.len();
        let mut queried = false;
        let mut not_counted: Vec<(DeviceId, Exclusion)> = Vec::new();
        for (device, signed) in active {
            let mut verdict =
                trust::device_verdict(&client, identity_changed, user.as_str(), device.as_str())
                    .await;
            if matches!(verdict, Err(Exclusion::NoKeys)) && !queried {
                queried = true;
                if let Ok(u) = OwnedUserId::try_from(user.as_str()) {
                    if let Err(e) = client.encryption().request_user_identity(&u).await {
                        tracing::warn!(user = %u, error = %e, "cannot query device keys");
                    }
                }
                verdict = trust::device_verdict(
                    &client,
                    identity_changed,
                    user.as_str(),
                    device.as_str(),
                )
                .await;
            }
            let verdict = verdict.and_then(|d| {
                let payload =
                    signing_payload(&room_id, &user, &device, &signed.consent, signed.granted_ts);
                if trust::signed_by(&d, &payload, &signed.signature) {
                    Ok(())
                } else {
                    Err(Exclusion::BadConsentSignature)
                }
            });
            match verdict {
                Ok(()) => {
                    consents.insert(user.clone(), device, signed.consent, now);
                }
                Err(reason) => not_counted.push((device, reason)),
            }
        }
        // One line per user and reason, however many devices.
        let mut reasons: Vec<&Exclusion> = Vec::new();
        for (_, r) in &not_counted {
            if !reasons.contains(&r) {
                reasons.push(r);
            }
        }
        for reason in reasons {
            let devices: Vec<&str> = not_counted
                .iter()
                .filter(|(_, r)| r == reason)
                .map(|(d, _)| d.as_str())
                .collect();
            tracing::info!(room = %room.room_id(), user = %user, count = devices.len(), first_device = devices.first().copied().unwrap_or_default(), %reason, "consents that do not count");
        }
        excluded.extend(not_counted.into_iter().map(|(device, reason)| Excluded {
            user_id: user.to_string(),
            device_id: device.to_string(),
            reason,
        }));
    }
    Ok(WalkieRoomState {
        group,
        consents,
        members,
        excluded,
        own_content,
    })
}

/// Marks `room` as a walkie group; refused unless the room is end-to-end
/// encrypted.
pub async fn enable(room: &Room, group: &WalkieGroup) -> Result<(), EngineError> {
    if !room.latest_encryption_state().await?.is_encrypted() {
        return Err(EngineError::NotEncrypted(room.room_id().to_string()));
    }
    room.send_state_event_raw(
        GROUP_EVENT_TYPE,
        "",
        Raw::new(&group.to_content())?.cast_unchecked(),
    )
    .await?;
    Ok(())
}

/// Grants (`Some`) or revokes (`None`) this device's consent in `room`:
/// its entry in the user's consent content, signed with the device's key,
/// the user's other devices' entries kept. Returns the content written.
pub async fn set_consent(
    room: &Room,
    user: &UserId,
    device: &DeviceId,
    consent: Option<Consent>,
    signer: &trust::ConsentSigner,
) -> Result<ConsentContent, EngineError> {
    let room_id = RoomId::parse(room.room_id().as_str())?;
    let entry = consent.map(|consent| {
        let granted_ts = super::now_ms();
        let payload = signing_payload(&room_id, user, device, &consent, granted_ts);
        SignedConsent {
            consent,
            granted_ts,
            signature: signer.sign(&payload),
        }
    });
    let current = current_content(room, user).await?;
    let content = current.with_device(device, entry);
    write_content(room, user, &content).await?;
    Ok(content)
}

/// This user's consent content as the local store has it.
pub async fn current_content(room: &Room, user: &UserId) -> Result<ConsentContent, EngineError> {
    let Some(raw) = room
        .get_state_event(CONSENT_EVENT_TYPE.into(), user.as_str())
        .await?
    else {
        return Ok(ConsentContent::default());
    };
    Ok(raw_json(&raw)
        .and_then(|v| ConsentContent::parse(&v["content"]).ok())
        .map(|p| p.content)
        .unwrap_or_default())
}

/// Writes this user's consent content.
pub async fn write_content(
    room: &Room,
    user: &UserId,
    content: &ConsentContent,
) -> Result<(), EngineError> {
    room.send_state_event_raw(
        CONSENT_EVENT_TYPE,
        user.as_str(),
        Raw::new(&content.to_content())?.cast_unchecked(),
    )
    .await?;
    Ok(())
}

/// The request for a new walkie group room: private, encrypted, with the
/// group marker set, and power level 0 for consent events so every member
/// can grant and revoke their own devices' consent.
pub fn create_request(
    name: &str,
    invite: Vec<matrix_sdk::ruma::OwnedUserId>,
    group: &WalkieGroup,
) -> Result<CreateRoomRequest, EngineError> {
    let mut request = CreateRoomRequest::new();
    request.name = Some(name.to_owned());
    request.invite = invite;
    request.preset =
        Some(matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset::PrivateChat);
    let group: Raw<_> = Raw::new(&json!({
        "type": GROUP_EVENT_TYPE,
        "state_key": "",
        "content": group.to_content(),
    }))?
    .cast_unchecked();
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
        group,
    ];
    request.power_level_content_override =
        Some(Raw::new(&json!({ "events": { CONSENT_EVENT_TYPE: 0 } }))?.cast_unchecked());
    Ok(request)
}
