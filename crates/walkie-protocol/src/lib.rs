//! The pure rules of Walkie's MSC4002 implementation (unstable prefix
//! `org.matrix.msc4002`): no I/O, no clock, no async. Time is passed in as
//! milliseconds since the Unix epoch.
//!
//! - [`ids`]: validated user, device, room and session identifiers;
//! - [`group`]: the group marker (`org.matrix.msc4002.walkie` state);
//! - [`consent`]: consent state (state key = the owner's user id, content =
//!   the owner's devices' signed grants, the payload each device signs) and
//!   [`consent::ConsentSet`], who may talk and receive at an instant (it
//!   holds grants the engine has verified; no crypto here);
//! - [`audio`]: the live audio to-device message, validated from untrusted
//!   JSON only through [`audio::ValidatedChunk::parse`];
//! - [`sealed`]: sealed fan-out: per-talk keys announced over Olm, batches
//!   sealed once for every receiver, the receiver's key ring;
//! - [`talk_reference`]: the key added to a talk's recording;
//! - [`floor`]: floor arbitration (quinn-proto-shaped state machine);
//! - [`room`]: [`room::RoomMachine`], one walkie room: group marker,
//!   consents and floor together, with the admission rules for received
//!   audio and local presses.
//!
//! A separate crate so the compiler, not review, keeps I/O out of the rules:
//! `cargo tree -p walkie-protocol -e normal` shows serde, serde_json,
//! base64, thiserror and two pure crypto crates (chacha20poly1305,
//! ed25519-dalek) only; randomness is passed in.
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

pub mod audio;
pub mod consent;
mod error;
pub mod floor;
pub mod group;
pub mod ids;
pub mod room;
pub mod sealed;
pub mod talk_reference;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod wire_tests;

pub use audio::{ChunkHeader, ValidatedChunk};
pub use consent::{
    consent_owner, signing_payload, Consent, ConsentChange, ConsentContent, ConsentError,
    ConsentSet, ParsedConsents, SignedConsent,
};
pub use error::ProtocolError;
pub use group::{Recordings, WalkieGroup};
pub use ids::{DeviceId, RoomId, SessionId, UserId};
pub use sealed::{KeyAnnouncement, SealError, TalkKeyRing, TalkKeys, SEALED_AUDIO_EVENT_TYPE};
pub use talk_reference::TalkReference;

/// Event type of the group marker (room state, state key `""`).
pub const GROUP_EVENT_TYPE: &str = "org.matrix.msc4002.walkie";
/// Event type of a user's devices' consents (room state, state key: that
/// user's id).
pub const CONSENT_EVENT_TYPE: &str = "org.matrix.msc4002.consent";
/// Event type of a live audio chunk (Olm-encrypted to-device message).
pub const AUDIO_EVENT_TYPE: &str = "org.matrix.msc4002.audio";
/// Key added to the recording's `m.room.message` content.
pub const TALK_REFERENCE_KEY: &str = "org.matrix.msc4002.talk";

/// The only protocol version this implementation speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Duration of one Opus frame, the only value accepted in `frame_ms`.
pub const FRAME_MS: u64 = 20;
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

/// Frames (of [`FRAME_MS`]) in `ms` milliseconds, rounded to the nearest.
pub const fn frames_in(ms: u64) -> u64 {
    (ms + FRAME_MS / 2) / FRAME_MS
}

/// Milliseconds of `frames` frames.
pub const fn frames_ms(frames: u64) -> u64 {
    frames * FRAME_MS
}
