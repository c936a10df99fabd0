//! Wire protocol of MSC4002 (unstable prefix `org.matrix.msc4002`): the event
//! types Walkie sends and receives, their (de)serialisation, and validation.
//!
//! This module owns the *shape* of every walkie event: identifiers (user,
//! device, room and session ids as small validated newtypes), the group marker
//! [`WalkieGroup`], the per-device [`ConsentContent`] and its state key
//! ([`ConsentStateKey`]), the live audio to-device message ([`ValidatedChunk`],
//! built from untrusted JSON only through [`ValidatedChunk::parse`]) and the
//! [`TalkReference`] added to the recording. It knows nothing about time or
//! arbitration: consent expiry lives in `crate::consent`, the floor in
//! `crate::floor`. Everything handed out of this module has been validated.
//!
//! Size budget: a to-device message travels inside an Olm ciphertext (base64
//! of the plaintext event, itself JSON with keys and device info), so the
//! content is inflated by roughly 4/3 plus ~1 KiB. The content of one audio
//! message is capped at [`MAX_CHUNK_CONTENT_BYTES`] (20 KiB): worst case
//! ~28 KiB on the wire per recipient device, well under the 64 KiB a
//! homeserver is sure to accept. The largest content the limits below allow
//! ([`MAX_FRAMES_PER_CHUNK`] packets of [`MAX_OPUS_PACKET_BYTES`]) is
//! ~17.4 KiB, so a valid chunk always fits; at 24 kbit/s a 5-frame chunk is
//! about 0.5 KiB.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Event type of the group marker (room state, state key `""`).
pub const GROUP_EVENT_TYPE: &str = "org.matrix.msc4002.walkie";
/// Event type of a device's consent (room state, state key `_@user:server_DEVICE`).
pub const CONSENT_EVENT_TYPE: &str = "org.matrix.msc4002.consent";
/// Event type of a live audio chunk (Olm-encrypted to-device message).
pub const AUDIO_EVENT_TYPE: &str = "org.matrix.msc4002.audio";
/// Key added to the recording's `m.room.message` content.
pub const TALK_REFERENCE_KEY: &str = "org.matrix.msc4002.talk";

/// The only protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Duration of one Opus frame, the only value accepted in `frame_ms`.
pub const FRAME_MS: u32 = 20;
/// Maximum Opus packets per audio message (200 ms of audio). Batching is a
/// latency/overhead knob for the sender; receivers refuse more than this.
pub const MAX_FRAMES_PER_CHUNK: usize = 10;
/// Largest Opus packet (RFC 6716 §3.2.1: 1275 bytes for one frame).
pub const MAX_OPUS_PACKET_BYTES: usize = 1275;
/// Cap on the serialised content of an audio message (see module docs).
pub const MAX_CHUNK_CONTENT_BYTES: usize = 20 * 1024;
/// Largest `seq` accepted: 300 s of single-frame messages plus keep-alives.
pub const MAX_SEQ: u32 = 20_000;
/// Longest talk any group may configure (`max_talk_ms` upper bound).
pub const MAX_TALK_LIMIT_MS: u64 = 300_000;
/// Shortest `max_talk_ms` a group may configure.
pub const MIN_TALK_LIMIT_MS: u64 = 1_000;
/// Default `max_talk_ms`.
pub const DEFAULT_MAX_TALK_MS: u64 = 60_000;
/// Default floor lease. Across a 1 s federation link Synapse delivers a
/// to-device stream in bursts about 2 s apart (one transaction in flight per
/// destination), so a listener can see 2 s without a message from a live
/// talker; 3 s keeps a 1 s margin. On one server it only bounds how long a
/// vanished talker blocks the floor.
pub const DEFAULT_LEASE_MS: u64 = 3_000;
/// Shortest lease a group may configure (must exceed inter-arrival gaps).
pub const MIN_LEASE_MS: u64 = 1_000;
/// Longest lease a group may configure.
pub const MAX_LEASE_MS: u64 = 30_000;
/// Session ids are 16–32 characters of `[A-Za-z0-9_-]`.
pub const SESSION_ID_MIN_LEN: usize = 16;
/// See [`SESSION_ID_MIN_LEN`].
pub const SESSION_ID_MAX_LEN: usize = 32;
/// Matrix caps user ids (and we cap the other identifiers) at 255 bytes.
pub const MAX_ID_LEN: usize = 255;

/// Longest base64 string that can hold a valid packet (padded, plus slack).
const MAX_FRAME_B64_LEN: usize = MAX_OPUS_PACKET_BYTES.div_ceil(3) * 4 + 4;

/// Base64 for Opus packets: standard alphabet, unpadded on output (the Matrix
/// convention), padding accepted on input.
const FRAME_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a piece of walkie data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid user id {0:?}")]
    InvalidUserId(String),
    #[error("invalid device id {0:?}")]
    InvalidDeviceId(String),
    #[error("invalid room id {0:?}")]
    InvalidRoomId(String),
    #[error("invalid session id {0:?} (16-32 chars of A-Z a-z 0-9 _ -)")]
    InvalidSessionId(String),
    #[error("invalid consent state key {0:?} (expected _@user:server_DEVICEID)")]
    InvalidStateKey(String),
    #[error("malformed content: {0}")]
    Malformed(String),
    #[error("unsupported walkie protocol version {0}")]
    UnsupportedVersion(u32),
    #[error("{field} = {value} is outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    #[error("consent grants talk without receive")]
    TalkWithoutReceive,
    #[error("unsupported frame duration {0} ms (only 20)")]
    UnsupportedFrameMs(u32),
    #[error("{0} frames in one message (max {MAX_FRAMES_PER_CHUNK})")]
    TooManyFrames(usize),
    #[error("frame {index} is {len} bytes (1..={MAX_OPUS_PACKET_BYTES})")]
    BadFrameSize { index: usize, len: usize },
    #[error("frame {0} is not valid base64")]
    BadBase64(usize),
    #[error("ts {ts} is before start_ts {start_ts}")]
    TimestampBeforeStart { ts: u64, start_ts: u64 },
    #[error("content is {0} bytes (max {MAX_CHUNK_CONTENT_BYTES})")]
    TooLarge(usize),
    #[error("walkie audio must arrive Olm-encrypted; plaintext ignored")]
    Unencrypted,
}

fn malformed(e: serde_json::Error) -> ProtocolError {
    ProtocolError::Malformed(e.to_string())
}

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

// ---------------------------------------------------------------- group marker

/// Where a talk's recording is posted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recordings {
    /// As an ordinary voice message in the room timeline.
    #[default]
    Timeline,
    /// In a thread (the room's walkie thread), against chat litter.
    Thread,
    /// Not at all: the talk is live only.
    None,
}

/// Content of `org.matrix.msc4002.walkie` (state key `""`): marks a room as a
/// walkie-talkie group and sets the parameters every client must share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkieGroup {
    /// Protocol version; only [`PROTOCOL_VERSION`] is understood.
    pub version: u32,
    /// Floor lease: a holder silent this long loses the floor.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// Longest single talk.
    #[serde(default = "default_max_talk")]
    pub max_talk_ms: u64,
    /// Where recordings go.
    #[serde(default)]
    pub recordings: Recordings,
}

fn default_lease() -> u64 {
    DEFAULT_LEASE_MS
}
fn default_max_talk() -> u64 {
    DEFAULT_MAX_TALK_MS
}

impl Default for WalkieGroup {
    fn default() -> Self {
        Self {
            version: PROTOCOL_VERSION,
            lease_ms: DEFAULT_LEASE_MS,
            max_talk_ms: DEFAULT_MAX_TALK_MS,
            recordings: Recordings::Timeline,
        }
    }
}

fn check_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), ProtocolError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ProtocolError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl WalkieGroup {
    /// Parses and validates the state event content. An empty object (the
    /// marker removed) is not a group and is refused as malformed.
    pub fn parse(content: &Value) -> Result<Self, ProtocolError> {
        let g: WalkieGroup = serde_json::from_value(content.clone()).map_err(malformed)?;
        g.validate()?;
        Ok(g)
    }

    /// Checks version and bounds.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(self.version));
        }
        check_range("lease_ms", self.lease_ms, MIN_LEASE_MS, MAX_LEASE_MS)?;
        check_range(
            "max_talk_ms",
            self.max_talk_ms,
            MIN_TALK_LIMIT_MS,
            MAX_TALK_LIMIT_MS,
        )
    }

    /// The content to send.
    pub fn to_content(&self) -> Value {
        serde_json::json!({
            "version": self.version,
            "lease_ms": self.lease_ms,
            "max_talk_ms": self.max_talk_ms,
            "recordings": self.recordings,
        })
    }
}

// --------------------------------------------------------------------- consent

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

// ------------------------------------------------------------------ live audio

/// The wire shape of `org.matrix.msc4002.audio` (untrusted; never handed out).
#[derive(Deserialize, Serialize)]
struct RawChunk {
    room_id: String,
    session_id: String,
    seq: u32,
    start_ts: u64,
    ts: u64,
    frame_ms: u32,
    #[serde(default)]
    frames: Vec<String>,
    #[serde(default)]
    end: bool,
}

/// The floor-relevant part of an audio message. Built by the floor for
/// outgoing messages; inside a [`ValidatedChunk`] it has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    pub session_id: SessionId,
    /// 0 for the claim (first message of the session); +1 per message.
    pub seq: u32,
    /// Talker's clock (ms since epoch) when it claimed the floor.
    pub start_ts: u64,
    /// Talker's clock of the first frame in this message (≥ `start_ts`).
    pub ts: u64,
    /// Last message of the session: releases the floor.
    pub end: bool,
}

impl ChunkHeader {
    fn check(&self) -> Result<(), ProtocolError> {
        if self.ts < self.start_ts {
            return Err(ProtocolError::TimestampBeforeStart {
                ts: self.ts,
                start_ts: self.start_ts,
            });
        }
        check_range(
            "ts - start_ts",
            self.ts - self.start_ts,
            0,
            MAX_TALK_LIMIT_MS + 1_000,
        )?;
        check_range("seq", u64::from(self.seq), 0, u64::from(MAX_SEQ))
    }

    /// Builds the content of an audio message carrying `frames` (raw Opus
    /// packets) for `room_id`. Validates exactly as a receiver would.
    pub fn to_content(&self, room_id: &RoomId, frames: &[Vec<u8>]) -> Result<Value, ProtocolError> {
        self.check()?;
        check_frames(frames.iter().map(Vec::len), frames.len())?;
        let raw = RawChunk {
            room_id: room_id.to_string(),
            session_id: self.session_id.to_string(),
            seq: self.seq,
            start_ts: self.start_ts,
            ts: self.ts,
            frame_ms: FRAME_MS,
            frames: frames.iter().map(|f| FRAME_B64.encode(f)).collect(),
            end: self.end,
        };
        serde_json::to_value(raw).map_err(malformed)
    }
}

fn check_frames(lens: impl Iterator<Item = usize>, count: usize) -> Result<(), ProtocolError> {
    if count > MAX_FRAMES_PER_CHUNK {
        return Err(ProtocolError::TooManyFrames(count));
    }
    for (index, len) in lens.enumerate() {
        if len == 0 || len > MAX_OPUS_PACKET_BYTES {
            return Err(ProtocolError::BadFrameSize { index, len });
        }
    }
    Ok(())
}

/// A received audio message that passed every stateless check, with its
/// sender (as authenticated by Olm) and decoded Opus packets. Only
/// [`ValidatedChunk::parse`] (and its variants) build one. Stateful checks
/// (freshness, replay, ordering, lease) are the floor's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedChunk {
    room_id: RoomId,
    sender: UserId,
    sender_device: DeviceId,
    header: ChunkHeader,
    frames: Vec<Vec<u8>>,
}

impl ValidatedChunk {
    /// Validates the content of a *decrypted* to-device event. `sender` and
    /// `sender_device` must come from the Olm session that decrypted it,
    /// never from the content.
    pub fn parse(
        content: &Value,
        sender: &UserId,
        sender_device: &DeviceId,
    ) -> Result<Self, ProtocolError> {
        let raw: RawChunk = RawChunk::deserialize(content).map_err(malformed)?;
        if raw.frame_ms != FRAME_MS {
            return Err(ProtocolError::UnsupportedFrameMs(raw.frame_ms));
        }
        if raw.frames.len() > MAX_FRAMES_PER_CHUNK {
            return Err(ProtocolError::TooManyFrames(raw.frames.len()));
        }
        let mut frames = Vec::with_capacity(raw.frames.len());
        for (index, f) in raw.frames.iter().enumerate() {
            // Refuse oversized strings before decoding them.
            if f.len() > MAX_FRAME_B64_LEN {
                return Err(ProtocolError::BadFrameSize {
                    index,
                    len: f.len() / 4 * 3,
                });
            }
            let bytes = FRAME_B64
                .decode(f)
                .map_err(|_| ProtocolError::BadBase64(index))?;
            frames.push(bytes);
        }
        check_frames(frames.iter().map(Vec::len), frames.len())?;
        let header = ChunkHeader {
            session_id: SessionId::parse(&raw.session_id)?,
            seq: raw.seq,
            start_ts: raw.start_ts,
            ts: raw.ts,
            end: raw.end,
        };
        header.check()?;
        Ok(Self {
            room_id: RoomId::parse(&raw.room_id)?,
            sender: sender.clone(),
            sender_device: sender_device.clone(),
            header,
            frames,
        })
    }

    /// Like [`parse`](Self::parse) for a serialised content, refusing it
    /// before parsing when longer than [`MAX_CHUNK_CONTENT_BYTES`].
    pub fn parse_str(
        json: &str,
        sender: &UserId,
        sender_device: &DeviceId,
    ) -> Result<Self, ProtocolError> {
        if json.len() > MAX_CHUNK_CONTENT_BYTES {
            return Err(ProtocolError::TooLarge(json.len()));
        }
        let v: Value = serde_json::from_str(json).map_err(malformed)?;
        Self::parse(&v, sender, sender_device)
    }

    /// The engine's entry point: walkie audio that did not arrive
    /// Olm-encrypted is refused ([`ProtocolError::Unencrypted`]) — anyone
    /// could forge its sender.
    pub fn parse_received(
        content: &Value,
        sender: &UserId,
        sender_device: &DeviceId,
        was_encrypted: bool,
    ) -> Result<Self, ProtocolError> {
        if !was_encrypted {
            return Err(ProtocolError::Unencrypted);
        }
        Self::parse(content, sender, sender_device)
    }

    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }
    pub fn sender(&self) -> &UserId {
        &self.sender
    }
    pub fn sender_device(&self) -> &DeviceId {
        &self.sender_device
    }
    pub fn header(&self) -> &ChunkHeader {
        &self.header
    }
    /// Decoded Opus packets, in order, each `FRAME_MS` long.
    pub fn frames(&self) -> &[Vec<u8>] {
        &self.frames
    }
    pub fn into_frames(self) -> Vec<Vec<u8>> {
        self.frames
    }
}

// -------------------------------------------------------------- talk reference

/// `org.matrix.msc4002.talk: {session_id}` added to the recording's voice
/// message, so walkie clients that played the talk live mark it as heard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TalkReference {
    pub session_id: SessionId,
}

impl TalkReference {
    /// Adds the reference to a message content object (no-op if the content
    /// is not an object).
    pub fn insert_into(&self, content: &mut Value) {
        if let Some(obj) = content.as_object_mut() {
            obj.insert(
                TALK_REFERENCE_KEY.to_owned(),
                serde_json::json!({ "session_id": self.session_id }),
            );
        }
    }

    /// Reads the reference from a message content: `None` if absent,
    /// `Some(Err)` if present but invalid.
    pub fn from_message_content(content: &Value) -> Option<Result<Self, ProtocolError>> {
        let v = content.get(TALK_REFERENCE_KEY)?;
        Some(Self::deserialize(v).map_err(malformed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn alice() -> (UserId, DeviceId) {
        (
            UserId::parse("@alice:example.org").unwrap(),
            DeviceId::parse("ALICEDEV").unwrap(),
        )
    }

    fn sid() -> SessionId {
        SessionId::parse("abcdefghijklmnop").unwrap()
    }

    fn chunk_json() -> Value {
        json!({
            "room_id": "!room:example.org",
            "session_id": "abcdefghijklmnop",
            "seq": 3, "start_ts": 1000, "ts": 1060, "frame_ms": 20,
            "frames": ["AQID", "BAUG"], "end": false
        })
    }

    #[test]
    fn user_ids() {
        for ok in [
            "@alice:example.org",
            "@a_b.c=d-e/f+g:matrix.org:8448",
            "@x:127.0.0.1:8008",
            "@x:[::1]:8448",
            "@x:[2001:db8::1]",
        ] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "alice:example.org",
            "@alice",
            "@:example.org",
            "@alice:",
            "@al ice:example.org",
            "@alice:exa_mple.org",
            "@alice:example.org:",
            "@alice:example.org:80a",
            "@x:[::1",
            "@x:[zz]",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
        assert!(UserId::parse(&format!("@{}:a.b", "x".repeat(300))).is_err());
        let u = UserId::parse("@alice:example.org:8448").unwrap();
        assert_eq!(u.localpart(), "alice");
        assert_eq!(u.server_name(), "example.org:8448");
    }

    #[test]
    fn device_room_session_ids() {
        assert!(DeviceId::parse("ABCDEF").is_ok());
        assert!(DeviceId::parse("with_underscore").is_ok());
        assert!(DeviceId::parse("").is_err());
        assert!(DeviceId::parse("a b").is_err());
        assert!(RoomId::parse("!abc:example.org").is_ok());
        assert!(RoomId::parse("!Ab3_-xYz0123456789012345678901234567890123").is_ok()); // v12
        for bad in ["abc:example.org", "!", "!:example.org", "!abc:", "!a b:x"] {
            assert!(RoomId::parse(bad).is_err(), "{bad}");
        }
        assert!(SessionId::parse("abcdefghijklmnop").is_ok());
        assert!(SessionId::parse(&"a".repeat(32)).is_ok());
        for bad in [
            "short",
            &"a".repeat(33),
            "abcdefghijklmno/",
            "abcdefghijklmnop ",
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
        let s = SessionId::from_entropy([0xff; 16]);
        assert_eq!(s.as_str().len(), 22);
        assert!(SessionId::parse(s.as_str()).is_ok());
        // serde goes through validation
        assert!(serde_json::from_value::<UserId>(json!("nope")).is_err());
        assert_eq!(
            serde_json::from_value::<UserId>(json!("@a:b"))
                .unwrap()
                .as_str(),
            "@a:b"
        );
    }

    #[test]
    fn group_defaults_and_bounds() {
        let g = WalkieGroup::parse(&json!({"version": 1})).unwrap();
        assert_eq!(g, WalkieGroup::default());
        assert_eq!(g.lease_ms, 3000);
        assert_eq!(g.max_talk_ms, 60_000);
        assert_eq!(g.recordings, Recordings::Timeline);
        let g = WalkieGroup::parse(
            &json!({"version": 1, "recordings": "none", "lease_ms": 1500, "extra": 1}),
        )
        .unwrap();
        assert_eq!((g.recordings, g.lease_ms), (Recordings::None, 1500));
        assert_eq!(WalkieGroup::parse(&g.to_content()).unwrap(), g);
        assert_eq!(
            WalkieGroup::parse(&json!({"version": 2})),
            Err(ProtocolError::UnsupportedVersion(2))
        );
        assert!(matches!(
            WalkieGroup::parse(&json!({"version": 1, "lease_ms": 10})),
            Err(ProtocolError::OutOfRange {
                field: "lease_ms",
                ..
            })
        ));
        assert!(matches!(
            WalkieGroup::parse(&json!({"version": 1, "max_talk_ms": 10_000_000})),
            Err(ProtocolError::OutOfRange {
                field: "max_talk_ms",
                ..
            })
        ));
        assert!(WalkieGroup::parse(&json!({"version": 1, "recordings": "fax"})).is_err());
        assert!(WalkieGroup::parse(&json!({})).is_err());
        assert!(WalkieGroup::parse(&json!("x")).is_err());
    }

    #[test]
    fn consent_state_keys() {
        let k = ConsentStateKey::parse("_@alice:example.org_ALICEDEV").unwrap();
        assert_eq!(k.user_id.as_str(), "@alice:example.org");
        assert_eq!(k.device_id.as_str(), "ALICEDEV");
        assert_eq!(k.to_string(), "_@alice:example.org_ALICEDEV");
        assert_eq!(
            ConsentStateKey::format(&k.user_id, &k.device_id),
            k.to_string()
        );
        // underscores in the localpart and in the device id
        let k = ConsentStateKey::parse("_@a_b:example.org:8448_DEV_1").unwrap();
        assert_eq!(k.user_id.as_str(), "@a_b:example.org:8448");
        assert_eq!(k.device_id.as_str(), "DEV_1");
        let k = ConsentStateKey::parse("_@x:[::1]:8448_D").unwrap();
        assert_eq!(k.user_id.as_str(), "@x:[::1]:8448");
        for bad in [
            "",
            "@alice:example.org_DEV",
            "_@alice:example.org",
            "_@alice:example.org_",
            "_alice:example.org_DEV",
            "_@alice_DEV",
        ] {
            assert!(ConsentStateKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn consent_content() {
        assert_eq!(
            ConsentContent::parse(&json!({})),
            Ok(ConsentContent::Revoked)
        );
        assert_eq!(
            ConsentContent::parse(&json!({"receive": true, "talk": true, "expires_ts": 5})),
            Ok(ConsentContent::Granted(Consent {
                receive: true,
                talk: true,
                expires_ts: Some(5)
            }))
        );
        assert_eq!(
            ConsentContent::parse(&json!({"receive": true})),
            Ok(ConsentContent::Granted(Consent {
                receive: true,
                talk: false,
                expires_ts: None
            }))
        );
        assert_eq!(
            ConsentContent::parse(&json!({"talk": true})),
            Err(ProtocolError::TalkWithoutReceive)
        );
        assert_eq!(
            ConsentContent::parse(&json!({"receive": false})),
            Ok(ConsentContent::Revoked)
        );
        assert!(ConsentContent::parse(&json!({"receive": "yes"})).is_err());
        assert!(ConsentContent::parse(&json!([])).is_err());
        let c = ConsentContent::Granted(Consent {
            receive: true,
            talk: false,
            expires_ts: None,
        });
        assert_eq!(ConsentContent::parse(&c.to_content()), Ok(c));
        assert_eq!(ConsentContent::Revoked.to_content(), json!({}));
    }

    #[test]
    fn chunk_parses_and_round_trips() {
        let (u, d) = alice();
        let c = ValidatedChunk::parse(&chunk_json(), &u, &d).unwrap();
        assert_eq!(c.frames(), &[vec![1, 2, 3], vec![4, 5, 6]]);
        assert_eq!(c.header().seq, 3);
        assert_eq!(c.sender(), &u);
        assert_eq!(c.sender_device(), &d);
        let back = c.header().to_content(c.room_id(), c.frames()).unwrap();
        assert_eq!(ValidatedChunk::parse(&back, &u, &d).unwrap(), c);
        // padded base64 is accepted, output is unpadded
        let mut v = chunk_json();
        v["frames"] = json!(["AQ=="]);
        assert_eq!(
            ValidatedChunk::parse(&v, &u, &d).unwrap().frames(),
            &[vec![1]]
        );
        let out = c.header().to_content(c.room_id(), &[vec![1]]).unwrap();
        assert_eq!(out["frames"], json!(["AQ"]));
        // claim with no frames, unknown keys ignored
        let mut v = chunk_json();
        v.as_object_mut().unwrap().remove("frames");
        v["seq"] = json!(0);
        v["future_key"] = json!(true);
        assert!(ValidatedChunk::parse(&v, &u, &d)
            .unwrap()
            .frames()
            .is_empty());
    }

    #[test]
    fn chunk_rejections() {
        let (u, d) = alice();
        let with = |k: &str, val: Value| {
            let mut v = chunk_json();
            v[k] = val;
            ValidatedChunk::parse(&v, &u, &d)
        };
        assert_eq!(
            with("frame_ms", json!(40)),
            Err(ProtocolError::UnsupportedFrameMs(40))
        );
        assert_eq!(
            with("frames", json!(vec!["AQID"; 11])),
            Err(ProtocolError::TooManyFrames(11))
        );
        let big = FRAME_B64.encode(vec![0u8; 1276]);
        assert!(matches!(
            with("frames", json!([big])),
            Err(ProtocolError::BadFrameSize {
                index: 0,
                len: 1276
            })
        ));
        let max = FRAME_B64.encode(vec![0u8; 1275]);
        assert!(with("frames", json!([max])).is_ok());
        let huge = "A".repeat(100_000);
        assert!(matches!(
            with("frames", json!([huge])),
            Err(ProtocolError::BadFrameSize { .. })
        ));
        assert!(matches!(
            with("frames", json!([""])),
            Err(ProtocolError::BadFrameSize { .. })
        ));
        assert_eq!(
            with("frames", json!(["!!!"])),
            Err(ProtocolError::BadBase64(0))
        );
        assert!(matches!(
            with("ts", json!(999)),
            Err(ProtocolError::TimestampBeforeStart { .. })
        ));
        assert!(matches!(
            with("ts", json!(1000 + MAX_TALK_LIMIT_MS + 1001)),
            Err(ProtocolError::OutOfRange { .. })
        ));
        assert!(matches!(
            with("seq", json!(MAX_SEQ + 1)),
            Err(ProtocolError::OutOfRange { .. })
        ));
        assert!(matches!(
            with("seq", json!(-1)),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            with("room_id", json!("room")),
            Err(ProtocolError::InvalidRoomId(_))
        ));
        assert!(matches!(
            with("session_id", json!("x")),
            Err(ProtocolError::InvalidSessionId(_))
        ));
        assert!(matches!(
            with("end", json!("yes")),
            Err(ProtocolError::Malformed(_))
        ));
        assert_eq!(
            ValidatedChunk::parse_received(&chunk_json(), &u, &d, false),
            Err(ProtocolError::Unencrypted)
        );
        assert!(ValidatedChunk::parse_received(&chunk_json(), &u, &d, true).is_ok());
        let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_CHUNK_CONTENT_BYTES));
        assert!(matches!(
            ValidatedChunk::parse_str(&long, &u, &d),
            Err(ProtocolError::TooLarge(_))
        ));
        assert!(ValidatedChunk::parse_str(&chunk_json().to_string(), &u, &d).is_ok());
        // outgoing validation mirrors incoming
        let h = ChunkHeader {
            session_id: sid(),
            seq: 0,
            start_ts: 10,
            ts: 5,
            end: false,
        };
        let room = RoomId::parse("!r:x").unwrap();
        assert!(h.to_content(&room, &[]).is_err());
        let h = ChunkHeader { ts: 10, ..h };
        assert!(h.to_content(&room, &[vec![]]).is_err());
        assert!(h.to_content(&room, &vec![vec![1]; 11]).is_err());
    }

    #[test]
    fn worst_case_chunk_fits_size_budget() {
        let h = ChunkHeader {
            session_id: SessionId::parse(&"a".repeat(32)).unwrap(),
            seq: MAX_SEQ,
            start_ts: u64::MAX / 2,
            ts: u64::MAX / 2 + MAX_TALK_LIMIT_MS,
            end: true,
        };
        let room = RoomId::parse(&format!("!{}:example.org", "r".repeat(200))).unwrap();
        let frames = vec![vec![0xffu8; MAX_OPUS_PACKET_BYTES]; MAX_FRAMES_PER_CHUNK];
        let s = h.to_content(&room, &frames).unwrap().to_string();
        assert!(s.len() < MAX_CHUNK_CONTENT_BYTES, "{}", s.len());
        // Olm: base64 of (content + ~1.5 KiB event envelope) stays under 64 KiB
        assert!((s.len() + 1536) * 4 / 3 + 1024 < 64 * 1024);
    }

    #[test]
    fn talk_reference() {
        let mut content = json!({"msgtype": "m.audio", "body": "Voice message"});
        assert!(TalkReference::from_message_content(&content).is_none());
        let r = TalkReference { session_id: sid() };
        r.insert_into(&mut content);
        assert_eq!(
            content[TALK_REFERENCE_KEY],
            json!({"session_id": "abcdefghijklmnop"})
        );
        assert_eq!(TalkReference::from_message_content(&content), Some(Ok(r)));
        content[TALK_REFERENCE_KEY] = json!({"session_id": "bad"});
        assert!(matches!(
            TalkReference::from_message_content(&content),
            Some(Err(_))
        ));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,20}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("room_id".to_string()),
                        Just("session_id".to_string()),
                        Just("seq".to_string()),
                        Just("ts".to_string()),
                        Just("start_ts".to_string()),
                        Just("frames".to_string()),
                        Just("frame_ms".to_string()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_json_never_panics(v in arb_json()) {
            let (u, d) = alice();
            let _ = ValidatedChunk::parse(&v, &u, &d);
            let _ = WalkieGroup::parse(&v);
            let _ = ConsentContent::parse(&v);
            let _ = TalkReference::from_message_content(&v);
        }

        #[test]
        fn valid_chunks_round_trip(
            seq in 0..=MAX_SEQ,
            start in 0u64..=u64::MAX / 2,
            dt in 0u64..=MAX_TALK_LIMIT_MS,
            end in any::<bool>(),
            frames in prop::collection::vec(
                prop::collection::vec(any::<u8>(), 1..=MAX_OPUS_PACKET_BYTES), 0..=MAX_FRAMES_PER_CHUNK),
        ) {
            let (u, d) = alice();
            let h = ChunkHeader { session_id: sid(), seq, start_ts: start, ts: start + dt, end };
            let room = RoomId::parse("!r:example.org").unwrap();
            let content = h.to_content(&room, &frames).unwrap();
            prop_assert!(content.to_string().len() <= MAX_CHUNK_CONTENT_BYTES);
            let c = ValidatedChunk::parse_str(&content.to_string(), &u, &d).unwrap();
            prop_assert_eq!(c.header(), &h);
            prop_assert_eq!(c.frames(), &frames[..]);
        }

        #[test]
        fn state_keys_round_trip(local in "[a-z0-9._=/+-]{1,20}", host in "[a-z0-9-]{1,10}(\\.[a-z]{2,5})?",
                                 port in proptest::option::of(1u16..), dev in "[A-Za-z0-9_]{1,16}") {
            let server = match port { Some(p) => format!("{host}:{p}"), None => host };
            let u = UserId::parse(&format!("@{local}:{server}")).unwrap();
            let d = DeviceId::parse(&dev).unwrap();
            let k = ConsentStateKey::parse(&ConsentStateKey::format(&u, &d)).unwrap();
            prop_assert_eq!(k.user_id, u);
            prop_assert_eq!(k.device_id, d);
        }
    }
}
