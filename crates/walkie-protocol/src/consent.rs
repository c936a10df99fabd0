//! A device's consent: the `org.matrix.msc4002.consent` state content and
//! its state key (the wire shape), and [`ConsentSet`] (in `set`), the rules
//! that say which devices of a room may receive and talk at an instant.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{error::malformed, *};

mod set;
pub use set::{ConsentChange, ConsentError, ConsentSet};

/// State key of a consent event: `_@user:server_DEVICEID` (the MatrixRTC
/// membership convention). The leading `_` keeps stock room versions from
/// treating it as a user-owned (`@`-prefixed) key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConsentStateKey {
    pub user_id: UserId,
    pub device_id: DeviceId,
}

impl ConsentStateKey {
    /// Parses `_@local:server_DEVICE`. Server names cannot contain `_`, so
    /// the first `_` after the user id's first `:` ends the user id; the
    /// device id is the rest (it may contain `_`).
    pub fn parse(key: &str) -> Result<Self, ProtocolError> {
        let err = || ProtocolError::InvalidStateKey(key.to_owned());
        let rest = key.strip_prefix('_').ok_or_else(err)?;
        let colon = rest.find(':').ok_or_else(err)?;
        let sep = rest[colon..].find('_').ok_or_else(err)? + colon;
        let user_id = UserId::parse(&rest[..sep]).map_err(|_| err())?;
        let device_id = DeviceId::parse(&rest[sep + 1..]).map_err(|_| err())?;
        Ok(Self { user_id, device_id })
    }

    /// Formats the state key.
    pub fn format(user_id: &UserId, device_id: &DeviceId) -> String {
        format!("_{user_id}_{device_id}")
    }
}

impl fmt::Display for ConsentStateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "_{}_{}", self.user_id, self.device_id)
    }
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

/// Content of `org.matrix.msc4002.consent`: `{}` revokes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentContent {
    Revoked,
    Granted(Consent),
}

impl ConsentContent {
    /// Parses the content. `{}` is a revocation; a grant of `talk` without
    /// `receive` is refused ([`ProtocolError::TalkWithoutReceive`]); unknown
    /// keys are ignored. A grant with both flags false is a revocation too.
    pub fn parse(content: &Value) -> Result<Self, ProtocolError> {
        let obj = content
            .as_object()
            .ok_or_else(|| ProtocolError::Malformed("consent content is not an object".into()))?;
        if obj.is_empty() {
            return Ok(Self::Revoked);
        }
        let c: Consent = serde_json::from_value(content.clone()).map_err(malformed)?;
        if c.talk && !c.receive {
            return Err(ProtocolError::TalkWithoutReceive);
        }
        if !c.receive {
            return Ok(Self::Revoked);
        }
        Ok(Self::Granted(c))
    }

    /// The content to send (`{}` for a revocation).
    pub fn to_content(&self) -> Value {
        match self {
            Self::Revoked => serde_json::json!({}),
            Self::Granted(c) => serde_json::to_value(c).unwrap_or_else(|_| serde_json::json!({})),
        }
    }
}
