//! Consent on the wire: the `org.matrix.msc4002.consent` state event.
//!
//! This module owns the event's shape and what a reader may conclude from
//! it without crypto:
//! - the state key is the owner's user id, and must be the sender's
//!   ([`consent_owner`]); stock room versions let only that user write it;
//! - the content maps the owner's devices to their grants
//!   ([`ConsentContent`], [`SignedConsent`]); each entry is judged alone, so
//!   one malformed entry does not void the others ([`ParsedConsents`]);
//! - the exact bytes a device signs for its grant ([`signing_payload`]),
//!   binding room, user and device so a grant cannot be replayed elsewhere.
//!
//! It does not verify signatures (no crypto here): the engine checks each
//! entry's `signature` over [`signing_payload`] against the device's
//! published Ed25519 key, and its cross-signing, before it hands the grant
//! to [`ConsentSet`] (in `set`), which owns the rules that say which devices
//! of a room may receive and talk at an instant.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::*;

mod set;
pub use set::{ConsentChange, ConsentSet};

/// Why (part of) a consent state event grants nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    /// The state key is not a user id
    /// ([`ProtocolError::InvalidStateKey`]): the event is ignored.
    #[error("not a consent state key: {0}")]
    StateKey(ProtocolError),
    /// The state key names another user than the sender. Stock auth rules
    /// let only the user named by a user-id state key write it, so the
    /// homeserver should have refused it: ignored, it grants nothing.
    #[error("state key {state_key:?} names {named}, but {sender} sent it: ignored")]
    ForeignStateKey {
        state_key: String,
        named: UserId,
        sender: UserId,
    },
    /// The content as a whole is invalid (not an object, or `devices` not
    /// an object): none of the user's devices consents.
    #[error("invalid consent content from {user}: {error}")]
    InvalidContent { user: UserId, error: ProtocolError },
    /// One device's entry is invalid (`device` as written in the content):
    /// that device counts as not consenting; the other entries still count.
    #[error("invalid consent from {user} / {device:?}: {error}")]
    Content {
        user: UserId,
        device: String,
        error: ProtocolError,
    },
}

/// The user whose consents a consent state event carries: its state key,
/// which must be a user id and the event's `sender`.
pub fn consent_owner(state_key: &str, sender: &UserId) -> Result<UserId, ConsentError> {
    let named = UserId::parse(state_key).map_err(|_| {
        ConsentError::StateKey(ProtocolError::InvalidStateKey(state_key.to_owned()))
    })?;
    if &named != sender {
        return Err(ConsentError::ForeignStateKey {
            state_key: state_key.to_owned(),
            named,
            sender: sender.clone(),
        });
    }
    Ok(named)
}

/// A device's grant. `talk` implies `receive` (MSC4002: only users willing to
/// receive may broadcast).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    #[serde(default)]
    pub receive: bool,
    #[serde(default)]
    pub talk: bool,
    /// Milliseconds since the Unix epoch; absent = until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ts: Option<u64>,
}

impl Consent {
    /// A grant to receive (and to talk, if `talk`) from `now` for
    /// `duration_ms` (`None`: until revoked).
    pub fn granted_for(duration_ms: Option<u64>, talk: bool, now: u64) -> Self {
        Self {
            receive: true,
            talk,
            expires_ts: duration_ms.map(|d| now.saturating_add(d)),
        }
    }

    /// Whether this grant is still in force at `now` (expiry is exclusive).
    pub fn is_active(&self, now: u64) -> bool {
        (self.receive || self.talk) && self.expires_ts.is_none_or(|e| now < e)
    }
}

/// One device's entry in the content: its grant, when it was made (ms since
/// the Unix epoch, the granting device's clock) and the device's Ed25519
/// signature over [`signing_payload`] (unpadded standard base64, as
/// written; this crate does not decode or check it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedConsent {
    pub consent: Consent,
    pub granted_ts: u64,
    pub signature: String,
}

/// Content of `org.matrix.msc4002.consent` (state key: the owner's user
/// id): the owner's devices that consent, each with its signed grant.
///
/// ```json
/// { "devices": { "ALICEDEV": { "receive": true, "talk": true,
///   "expires_ts": 1767225600000, "granted_ts": 1767220000000,
///   "signature": "…" } } }
/// ```
///
/// A device without an entry does not consent; `{}` means no device does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsentContent {
    pub devices: BTreeMap<DeviceId, SignedConsent>,
}

/// [`ConsentContent::parse`]'s result: the valid entries, and the entries
/// refused (device key as written, and why). A refused entry grants nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedConsents {
    pub content: ConsentContent,
    pub rejected: Vec<(String, ProtocolError)>,
}

impl ConsentContent {
    /// Parses the content. It must be an object; `devices`, if present,
    /// must be an object (`{}` and `{"devices": {}}`: no device consents).
    /// Each device entry is judged alone and lands in `rejected` if its key
    /// is not a device id, it is not an object, a field has the wrong type,
    /// it grants `talk` without `receive`
    /// ([`ProtocolError::TalkWithoutReceive`]), or a grant lacks
    /// `granted_ts` or a non-empty `signature`. An entry granting neither
    /// `receive` nor `talk` means no consent: skipped, not rejected.
    /// Unknown keys are ignored.
    pub fn parse(content: &Value) -> Result<ParsedConsents, ProtocolError> {
        let obj = content
            .as_object()
            .ok_or_else(|| ProtocolError::Malformed("consent content is not an object".into()))?;
        let mut parsed = ParsedConsents::default();
        let devices = match obj.get("devices") {
            None => return Ok(parsed),
            Some(Value::Object(devices)) => devices,
            Some(_) => {
                return Err(ProtocolError::Malformed(
                    "consent `devices` is not an object".into(),
                ))
            }
        };
        for (key, entry) in devices {
            let judged = DeviceId::parse(key).and_then(|d| Ok((d, parse_entry(entry)?)));
            match judged {
                Ok((device, Some(signed))) => {
                    parsed.content.devices.insert(device, signed);
                }
                Ok((_, None)) => {}
                Err(e) => parsed.rejected.push((key.clone(), e)),
            }
        }
        Ok(parsed)
    }

    /// The content to send: the inverse of [`parse`](Self::parse)
    /// (`expires_ts` omitted when `None`).
    pub fn to_content(&self) -> Value {
        let devices: Map<String, Value> = self
            .devices
            .iter()
            .map(|(device, s)| {
                let mut entry = Map::new();
                entry.insert("receive".into(), Value::Bool(s.consent.receive));
                entry.insert("talk".into(), Value::Bool(s.consent.talk));
                if let Some(e) = s.consent.expires_ts {
                    entry.insert("expires_ts".into(), Value::from(e));
                }
                entry.insert("granted_ts".into(), Value::from(s.granted_ts));
                entry.insert("signature".into(), Value::String(s.signature.clone()));
                (device.to_string(), Value::Object(entry))
            })
            .collect();
        let mut content = Map::new();
        content.insert("devices".into(), Value::Object(devices));
        Value::Object(content)
    }

    /// This content with `device`'s entry set to `entry` (`None`: removed),
    /// the other devices' entries kept: how a device rewrites its own grant
    /// in its user's shared content.
    pub fn with_device(&self, device: &DeviceId, entry: Option<SignedConsent>) -> ConsentContent {
        let mut next = self.clone();
        match entry {
            Some(e) => {
                next.devices.insert(device.clone(), e);
            }
            None => {
                next.devices.remove(device);
            }
        }
        next
    }
}

fn field_error(field: &str, expected: &str) -> ProtocolError {
    ProtocolError::Malformed(format!("consent `{field}` is {expected}"))
}

fn opt_bool(entry: &Map<String, Value>, field: &str) -> Result<bool, ProtocolError> {
    match entry.get(field) {
        None => Ok(false),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| field_error(field, "not a boolean")),
    }
}

fn opt_u64(entry: &Map<String, Value>, field: &str) -> Result<Option<u64>, ProtocolError> {
    match entry.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| field_error(field, "not a non-negative integer")),
    }
}

/// One device's entry: `Ok(None)` when it grants nothing.
fn parse_entry(entry: &Value) -> Result<Option<SignedConsent>, ProtocolError> {
    let entry = entry
        .as_object()
        .ok_or_else(|| ProtocolError::Malformed("consent entry is not an object".into()))?;
    let consent = Consent {
        receive: opt_bool(entry, "receive")?,
        talk: opt_bool(entry, "talk")?,
        expires_ts: opt_u64(entry, "expires_ts")?,
    };
    let granted_ts = opt_u64(entry, "granted_ts")?;
    let signature = match entry.get("signature") {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(field_error("signature", "not a string")),
    };
    if consent.talk && !consent.receive {
        return Err(ProtocolError::TalkWithoutReceive);
    }
    if !consent.receive {
        return Ok(None);
    }
    let granted_ts = granted_ts.ok_or_else(|| field_error("granted_ts", "missing"))?;
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or_else(|| field_error("signature", "missing or empty"))?;
    Ok(Some(SignedConsent {
        consent,
        granted_ts,
        signature: signature.clone(),
    }))
}

/// The bytes `device` of `user` signs (Ed25519, its device key) to grant
/// `consent` in `room` at `granted_ts`: canonical JSON (keys sorted, no
/// whitespace) of `device_id`, `expires_ts` (only when set), `granted_ts`,
/// `receive`, `room_id`, `talk`, `type` (the consent event type) and
/// `user_id`. Built by hand, so it does not depend on how serde_json orders
/// maps.
pub fn signing_payload(
    room: &RoomId,
    user: &UserId,
    device: &DeviceId,
    consent: &Consent,
    granted_ts: u64,
) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"device_id\":");
    push_json_string(&mut out, device.as_str());
    if let Some(e) = consent.expires_ts {
        out.push_str(&format!(",\"expires_ts\":{e}"));
    }
    out.push_str(&format!(
        ",\"granted_ts\":{granted_ts},\"receive\":{},\"room_id\":",
        consent.receive
    ));
    push_json_string(&mut out, room.as_str());
    out.push_str(&format!(",\"talk\":{},\"type\":", consent.talk));
    push_json_string(&mut out, CONSENT_EVENT_TYPE);
    out.push_str(",\"user_id\":");
    push_json_string(&mut out, user.as_str());
    out.push('}');
    out
}

/// Appends `s` as a JSON string, escaped as serde_json and Matrix canonical
/// JSON do (`"` `\` and control characters; everything else as UTF-8).
/// Validated identifiers never contain control characters; this keeps the
/// output valid JSON regardless.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}
