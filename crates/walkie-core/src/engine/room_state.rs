//! Reading and writing a room's walkie state through matrix-sdk: the group
//! marker (`org.matrix.msc4002.walkie`) and the per-device consents
//! (`org.matrix.msc4002.consent`), turned into the pure types of
//! `walkie_protocol`. Bad events are dropped with a log
//! line, never trusted.

use matrix_sdk::{
    deserialized_responses::RawAnySyncOrStrippedState,
    ruma::{
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{room::encryption::RoomEncryptionEventContent, InitialStateEvent},
        serde::Raw,
    },
    Room,
};
use std::collections::BTreeSet;

use matrix_sdk::RoomMemberships;
use serde_json::{json, Value};

use walkie_protocol::{
    Consent, ConsentContent, ConsentSet, ConsentStateKey, DeviceId, UserId, WalkieGroup,
    CONSENT_EVENT_TYPE, GROUP_EVENT_TYPE,
};

use super::EngineError;

/// A room's walkie state as of the local store.
#[derive(Debug, Clone)]
pub struct WalkieRoomState {
    /// `None`: not a walkie group (no marker, one we do not understand, or
    /// a marker in a room that is not end-to-end encrypted).
    pub group: Option<WalkieGroup>,
    pub consents: ConsentSet,
    /// Users whose membership is `join`.
    pub members: BTreeSet<UserId>,
}

/// The raw JSON of a state event from the store.
fn raw_json(raw: &RawAnySyncOrStrippedState) -> Option<Value> {
    let parsed = match raw {
        RawAnySyncOrStrippedState::Sync(r) => r.deserialize_as_unchecked::<Value>(),
        RawAnySyncOrStrippedState::Stripped(r) => r.deserialize_as_unchecked::<Value>(),
    };
    parsed.ok()
}

/// Loads the group marker and all consents of `room` from the local store.
pub async fn load(room: &Room, now: u64) -> Result<WalkieRoomState, EngineError> {
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
    let mut consents = ConsentSet::new();
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
        if let Err(e) = consents.apply(state_key, &sender, &event["content"], now) {
            tracing::warn!(room = %room.room_id(), state_key, sender = %sender, error = %e, "dropping a consent event");
        }
    }
    Ok(WalkieRoomState {
        group,
        consents,
        members,
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

/// Grants (`Some`) or revokes (`None`) this device's consent in `room`.
pub async fn set_consent(
    room: &Room,
    user: &UserId,
    device: &DeviceId,
    consent: Option<Consent>,
) -> Result<(), EngineError> {
    let content = match consent {
        Some(c) => ConsentContent::Granted(c),
        None => ConsentContent::Revoked,
    };
    let key = ConsentStateKey::format(user, device);
    room.send_state_event_raw(
        CONSENT_EVENT_TYPE,
        &key,
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
