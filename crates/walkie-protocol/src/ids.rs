//! Identifiers as small validated newtypes: user, device, room and talk
//! session ids. Everything handed out has been validated.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{ProtocolError, MAX_ID_LEN, SESSION_ID_MAX_LEN, SESSION_ID_MIN_LEN};

fn has_bad_char(s: &str) -> bool {
    s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Validates a Matrix server name: `host[:port]` where host is a DNS name,
/// an IPv4 address or a bracketed IPv6 literal.
fn valid_server_name(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => {
                let inner = &rest[..end];
                let after = &rest[end + 1..];
                if inner.is_empty()
                    || !inner
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
                {
                    return false;
                }
                match after.strip_prefix(':') {
                    Some(p) => ("[]", Some(p)),
                    None if after.is_empty() => ("[]", None),
                    None => return false,
                }
            }
            None => return false,
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host != "[]"
        && (host.is_empty()
            || host.len() > 253
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    {
        return false;
    }
    match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()),
    }
}

macro_rules! string_newtype {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ProtocolError;
            fn try_from(s: String) -> Result<Self, ProtocolError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = ProtocolError;
            fn from_str(s: &str) -> Result<Self, ProtocolError> {
                Self::parse(s)
            }
        }
    };
}

string_newtype!(
    /// A Matrix user id `@localpart:server`. Ordered bytewise (the floor's
    /// tie-break uses this order).
    UserId
);
string_newtype!(
    /// A Matrix device id: opaque, non-empty, no whitespace or control
    /// characters, at most 255 bytes.
    DeviceId
);
string_newtype!(
    /// A Matrix room id: `!opaque:server`, or `!opaque` (room version 12
    /// ids carry no server name).
    RoomId
);
string_newtype!(
    /// A talk session id: 16–32 characters of `[A-Za-z0-9_-]`, random per
    /// talk. Never reused.
    SessionId
);

impl UserId {
    /// Parses `@localpart:server`. The localpart may not contain `:`, the
    /// server part must be a valid server name.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let err = || ProtocolError::InvalidUserId(s.to_owned());
        if s.len() > MAX_ID_LEN || has_bad_char(s) {
            return Err(err());
        }
        let rest = s.strip_prefix('@').ok_or_else(err)?;
        let (local, server) = rest.split_once(':').ok_or_else(err)?;
        if local.is_empty() || !valid_server_name(server) {
            return Err(err());
        }
        Ok(Self(s.to_owned()))
    }

    /// The localpart (between `@` and the first `:`).
    pub fn localpart(&self) -> &str {
        self.0[1..].split_once(':').map_or("", |(l, _)| l)
    }

    /// The server name (after the first `:`).
    pub fn server_name(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, s)| s)
    }
}

impl DeviceId {
    /// Parses an opaque device id.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        if s.is_empty() || s.len() > MAX_ID_LEN || has_bad_char(s) {
            return Err(ProtocolError::InvalidDeviceId(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl RoomId {
    /// Parses `!opaque:server` or a server-less `!opaque` (room v12).
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let err = || ProtocolError::InvalidRoomId(s.to_owned());
        if s.len() > MAX_ID_LEN || has_bad_char(s) {
            return Err(err());
        }
        let rest = s.strip_prefix('!').ok_or_else(err)?;
        match rest.split_once(':') {
            Some((opaque, server)) if !opaque.is_empty() && valid_server_name(server) => {}
            None if !rest.is_empty() => {}
            _ => return Err(err()),
        }
        Ok(Self(s.to_owned()))
    }
}

impl SessionId {
    /// Parses a session id (16–32 chars of `[A-Za-z0-9_-]`).
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let ok = (SESSION_ID_MIN_LEN..=SESSION_ID_MAX_LEN).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(ProtocolError::InvalidSessionId(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// A session id from 16 random bytes (unpadded URL-safe base64, 22
    /// chars). The caller supplies the entropy (e.g. `getrandom`).
    pub fn from_entropy(bytes: [u8; 16]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }
}
