//! [`ProtocolError`]: why a piece of walkie data was refused.

use crate::{MAX_CHUNK_CONTENT_BYTES, MAX_FRAMES_PER_CHUNK, MAX_OPUS_PACKET_BYTES};

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
    #[error("invalid consent state key {0:?} (expected the owner's user id)")]
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

pub(crate) fn malformed(e: serde_json::Error) -> ProtocolError {
    ProtocolError::Malformed(e.to_string())
}
