//! The live audio to-device message `org.matrix.msc4002.audio`: its wire
//! shape, the header the floor reads, and [`ValidatedChunk`], the only way
//! untrusted JSON becomes audio.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{error::malformed, group::check_range, *};

/// Longest base64 string that can hold a valid packet (padded, plus slack).
const MAX_FRAME_B64_LEN: usize = MAX_OPUS_PACKET_BYTES.div_ceil(3) * 4 + 4;

/// Base64 for Opus packets: standard alphabet, unpadded on output (the Matrix
/// convention), padding accepted on input.
pub(crate) const FRAME_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

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
            frame_ms: FRAME_MS as u32,
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
        if u64::from(raw.frame_ms) != FRAME_MS {
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
