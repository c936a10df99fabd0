//! Sealed fan-out of live audio (`org.matrix.msc4002.audio.sealed`): the
//! per-talk keys a talker announces over Olm ([`TalkKeys`],
//! [`KeyAnnouncement`]), a batch sealed once for every receiver
//! ([`TalkKeys::seal`]), and the receiver's [`TalkKeyRing`], the only way a
//! sealed batch becomes a [`ValidatedChunk`]. Randomness and time are passed
//! in; no I/O.
//!
//! A sealed batch is `{session_id, epoch, seq, nonce, ciphertext,
//! signature}`: the ciphertext is the ordinary audio content (as it would go
//! over Olm) sealed with XChaCha20-Poly1305 under the epoch's media key, with
//! the header bound as associated data; the signature is the talk key's
//! Ed25519 signature over header, nonce and ciphertext. The media key and
//! the talk's public key reach each receiver only inside an Olm-encrypted
//! audio message of the same session (its `keys` field), so they are bound
//! to the device Olm authenticated. See `docs/protocol.md`, "Sealed fan-out".

use std::collections::HashMap;

use base64::Engine as _;
use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    audio::FRAME_B64, error::malformed, ChunkHeader, DeviceId, ProtocolError, RoomId, SessionId,
    UserId, ValidatedChunk, MAX_CHUNK_CONTENT_BYTES, MAX_TALK_LIMIT_MS,
};

/// Event type of a sealed audio batch (a plaintext to-device message whose
/// content is sealed by the talk's keys).
pub const SEALED_AUDIO_EVENT_TYPE: &str = "org.matrix.msc4002.audio.sealed";
/// Field of an Olm-encrypted audio content that carries a [`KeyAnnouncement`].
pub const KEYS_FIELD: &str = "keys";
/// Cap on a sealed content's serialised size: the sealed audio content in
/// base64 plus the header.
pub const MAX_SEALED_CONTENT_BYTES: usize = MAX_CHUNK_CONTENT_BYTES.div_ceil(3) * 4 + 1024;
/// Epochs of one session a receiver keeps (reordering across a rotation).
const EPOCHS_KEPT: usize = 4;
/// Sessions a receiver keeps keys for, per sending device (its current talk
/// and the one before) and in all.
const SESSIONS_PER_DEVICE: usize = 2;
const SESSIONS_KEPT: usize = 256;
/// How long keys are kept after they were learnt: no talk lasts longer than
/// [`MAX_TALK_LIMIT_MS`]; the margin covers delivery across federation.
const KEY_LIFETIME_MS: u64 = MAX_TALK_LIMIT_MS + 30_000;
/// Associated data prefix (domain separation from every other signature).
const AAD_PREFIX: &[u8] = b"org.matrix.msc4002.audio.sealed\0";

/// Why a sealed batch or a key announcement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no keys for session {0} (no Olm claim from a trusted device seen)")]
    UnknownSession(String),
    #[error("no key for epoch {epoch} of session {session}")]
    UnknownEpoch { session: String, epoch: u32 },
    #[error("bad signature on a sealed batch of session {0}")]
    BadSignature(String),
    #[error("sealed batch of session {0} does not decrypt")]
    Undecryptable(String),
    #[error("sealed batch header does not match its content ({0})")]
    HeaderMismatch(&'static str),
    #[error("session {0} is announced by another device than its first")]
    SessionHijack(String),
    #[error("talk key of session {0} changed")]
    TalkKeyChanged(String),
    #[error("invalid key announcement: {0}")]
    BadAnnouncement(&'static str),
    #[error("sealed content is {0} bytes (max {MAX_SEALED_CONTENT_BYTES})")]
    TooLarge(usize),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl SealError {
    /// A short name of the reason, one per kind (for rate-limited logs).
    pub fn kind(&self) -> &'static str {
        match self {
            SealError::UnknownSession(_) => "sealed: unknown session",
            SealError::UnknownEpoch { .. } => "sealed: unknown epoch",
            SealError::BadSignature(_) => "sealed: bad signature",
            SealError::Undecryptable(_) => "sealed: undecryptable",
            SealError::HeaderMismatch(what) => what,
            SealError::SessionHijack(_) => "sealed: session hijack",
            SealError::TalkKeyChanged(_) => "sealed: talk key changed",
            SealError::BadAnnouncement(_) => "sealed: bad announcement",
            SealError::TooLarge(_) => "sealed: too large",
            SealError::Protocol(_) => "sealed: malformed",
        }
    }
}

/// The talker's keys for one talk: the epoch's media key and the talk's
/// Ed25519 signing key.
pub struct TalkKeys {
    epoch: u32,
    media_key: [u8; 32],
    signing: SigningKey,
}

impl TalkKeys {
    /// Keys from fresh randomness (32 bytes each, from the OS RNG).
    pub fn new(media_key: [u8; 32], signing_seed: [u8; 32]) -> Self {
        Self {
            epoch: 0,
            media_key,
            signing: SigningKey::from_bytes(&signing_seed),
        }
    }

    /// A new epoch with a fresh media key (a receiver stopped consenting:
    /// it must read nothing sent after). The talk key stays.
    pub fn rotate(&mut self, media_key: [u8; 32]) {
        self.epoch += 1;
        self.media_key = media_key;
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// What goes, inside an Olm-encrypted audio message, to each receiver.
    pub fn announcement(&self) -> KeyAnnouncement {
        KeyAnnouncement {
            epoch: self.epoch,
            media_key: self.media_key,
            talk_key: self.signing.verifying_key(),
        }
    }

    /// Seals the audio content of `header` + `frames` once for every
    /// receiver. `nonce` must be fresh randomness.
    pub fn seal(
        &self,
        room_id: &RoomId,
        header: &ChunkHeader,
        frames: &[Vec<u8>],
        nonce: [u8; 24],
    ) -> Result<Value, SealError> {
        let plain = serde_json::to_vec(&header.to_content(room_id, frames)?)
            .map_err(|e| ProtocolError::Malformed(e.to_string()))?;
        let aad = associated_data(&header.session_id, self.epoch, header.seq);
        let cipher = XChaCha20Poly1305::new(&self.media_key.into());
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Undecryptable(header.session_id.to_string()))?;
        let signature = self.signing.sign(&signed_bytes(&aad, &nonce, &ciphertext));
        let sealed = RawSealed {
            session_id: header.session_id.to_string(),
            epoch: self.epoch,
            seq: header.seq,
            nonce: FRAME_B64.encode(nonce),
            ciphertext: FRAME_B64.encode(&ciphertext),
            signature: FRAME_B64.encode(signature.to_bytes()),
        };
        serde_json::to_value(sealed).map_err(|e| ProtocolError::Malformed(e.to_string()).into())
    }
}

/// A talk's keys as announced to a receiver: the epoch, its media key and
/// the talk's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyAnnouncement {
    pub epoch: u32,
    media_key: [u8; 32],
    talk_key: VerifyingKey,
}

#[derive(Deserialize, Serialize)]
struct RawAnnouncement {
    epoch: u32,
    media_key: String,
    talk_key: String,
}

impl KeyAnnouncement {
    /// The value of the `keys` field.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "epoch": self.epoch,
            "media_key": FRAME_B64.encode(self.media_key),
            "talk_key": FRAME_B64.encode(self.talk_key.to_bytes()),
        })
    }

    /// The announcement in an Olm-decrypted audio content, if it has one.
    pub fn from_content(content: &Value) -> Option<Result<Self, SealError>> {
        let keys = content.get(KEYS_FIELD)?;
        Some(Self::parse(keys))
    }

    fn parse(keys: &Value) -> Result<Self, SealError> {
        let raw = RawAnnouncement::deserialize(keys).map_err(malformed)?;
        let media_key = decode_fixed::<32>(&raw.media_key).ok_or(SealError::BadAnnouncement(
            "media_key is not 32 bytes of base64",
        ))?;
        let talk_key = decode_fixed::<32>(&raw.talk_key)
            .and_then(|k| VerifyingKey::from_bytes(&k).ok())
            .ok_or(SealError::BadAnnouncement("talk_key is not an Ed25519 key"))?;
        if talk_key.is_weak() {
            return Err(SealError::BadAnnouncement("talk_key is a weak key"));
        }
        Ok(Self {
            epoch: raw.epoch,
            media_key,
            talk_key,
        })
    }
}

/// The wire shape of a sealed batch (untrusted).
#[derive(Deserialize, Serialize)]
struct RawSealed {
    session_id: String,
    epoch: u32,
    seq: u32,
    nonce: String,
    ciphertext: String,
    signature: String,
}

fn associated_data(session: &SessionId, epoch: u32, seq: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + session.as_str().len() + 9);
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(session.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad.extend_from_slice(&seq.to_be_bytes());
    aad
}

fn signed_bytes(aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(aad.len() + nonce.len() + ciphertext.len());
    bytes.extend_from_slice(aad);
    bytes.extend_from_slice(nonce);
    bytes.extend_from_slice(ciphertext);
    bytes
}

fn decode_fixed<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() > N.div_ceil(3) * 4 + 4 {
        return None;
    }
    FRAME_B64.decode(s).ok()?.try_into().ok()
}

/// One session's keys at a receiver, and whom Olm said announced them.
struct SessionKeys {
    room_id: RoomId,
    sender: UserId,
    sender_device: DeviceId,
    talk_key: VerifyingKey,
    /// Newest last; at most [`EPOCHS_KEPT`].
    epochs: Vec<(u32, [u8; 32])>,
    learnt_ms: u64,
}

/// A receiver's keys of the talks announced to it, bounded in count (per
/// sending device and in all) and in time.
#[derive(Default)]
pub struct TalkKeyRing {
    sessions: HashMap<SessionId, SessionKeys>,
}

impl TalkKeyRing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of sessions with keys (for tests and status).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Records the keys announced in an Olm-decrypted audio message.
    /// `chunk` is that message, validated, so its sender and device are the
    /// ones Olm authenticated; the engine calls this only for trusted
    /// senders. A session first announced by one device cannot be taken
    /// over by another, and its talk key cannot change.
    pub fn learn(
        &mut self,
        chunk: &ValidatedChunk,
        keys: KeyAnnouncement,
        now: u64,
    ) -> Result<(), SealError> {
        self.prune(now);
        let session = chunk.header().session_id.clone();
        if let Some(known) = self.sessions.get_mut(&session) {
            if known.sender != *chunk.sender()
                || known.sender_device != *chunk.sender_device()
                || known.room_id != *chunk.room_id()
            {
                return Err(SealError::SessionHijack(session.to_string()));
            }
            if known.talk_key != keys.talk_key {
                return Err(SealError::TalkKeyChanged(session.to_string()));
            }
            if !known.epochs.iter().any(|(e, _)| *e == keys.epoch) {
                known.epochs.push((keys.epoch, keys.media_key));
                known.epochs.sort_by_key(|(e, _)| *e);
                if known.epochs.len() > EPOCHS_KEPT {
                    known.epochs.remove(0);
                }
            }
            return Ok(());
        }
        self.make_room_for(chunk.sender(), chunk.sender_device());
        self.sessions.insert(
            session,
            SessionKeys {
                room_id: chunk.room_id().clone(),
                sender: chunk.sender().clone(),
                sender_device: chunk.sender_device().clone(),
                talk_key: keys.talk_key,
                epochs: vec![(keys.epoch, keys.media_key)],
                learnt_ms: now,
            },
        );
        Ok(())
    }

    /// Opens a sealed batch: finds its session's keys, checks the signature
    /// with the talk key, decrypts with the epoch's media key and validates
    /// the audio content inside as if it had come over Olm from the device
    /// that announced the keys. `to_device_sender` is the homeserver's
    /// `sender` of the to-device event; it must be the announcing user.
    pub fn open(
        &self,
        content: &Value,
        to_device_sender: &str,
    ) -> Result<ValidatedChunk, SealError> {
        let raw = RawSealed::deserialize(content).map_err(malformed)?;
        let session = SessionId::parse(&raw.session_id)?;
        let keys = self
            .sessions
            .get(&session)
            .ok_or_else(|| SealError::UnknownSession(session.to_string()))?;
        if keys.sender.as_str() != to_device_sender {
            return Err(SealError::HeaderMismatch("to-device sender"));
        }
        let media_key = keys
            .epochs
            .iter()
            .find(|(e, _)| *e == raw.epoch)
            .map(|(_, k)| k)
            .ok_or_else(|| SealError::UnknownEpoch {
                session: session.to_string(),
                epoch: raw.epoch,
            })?;
        let bad_sig = || SealError::BadSignature(session.to_string());
        let nonce = decode_fixed::<24>(&raw.nonce).ok_or_else(bad_sig)?;
        let signature = decode_fixed::<64>(&raw.signature)
            .map(|s| Signature::from_bytes(&s))
            .ok_or_else(bad_sig)?;
        if raw.ciphertext.len() > MAX_SEALED_CONTENT_BYTES {
            return Err(SealError::TooLarge(raw.ciphertext.len()));
        }
        let ciphertext = FRAME_B64
            .decode(&raw.ciphertext)
            .map_err(|_| SealError::Undecryptable(session.to_string()))?;
        let aad = associated_data(&session, raw.epoch, raw.seq);
        keys.talk_key
            .verify_strict(&signed_bytes(&aad, &nonce, &ciphertext), &signature)
            .map_err(|_| bad_sig())?;
        let plain = XChaCha20Poly1305::new(media_key.into())
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Undecryptable(session.to_string()))?;
        let inner = std::str::from_utf8(&plain)
            .map_err(|_| SealError::HeaderMismatch("content is not UTF-8"))?;
        let chunk = ValidatedChunk::parse_str(inner, &keys.sender, &keys.sender_device)?;
        if chunk.header().session_id != session {
            return Err(SealError::HeaderMismatch("session_id"));
        }
        if chunk.header().seq != raw.seq {
            return Err(SealError::HeaderMismatch("seq"));
        }
        if *chunk.room_id() != keys.room_id {
            return Err(SealError::HeaderMismatch("room_id"));
        }
        Ok(chunk)
    }

    /// Drops keys older than [`KEY_LIFETIME_MS`].
    pub fn prune(&mut self, now: u64) {
        self.sessions
            .retain(|_, k| now.saturating_sub(k.learnt_ms) < KEY_LIFETIME_MS);
    }

    /// Keeps at most [`SESSIONS_PER_DEVICE`] sessions of a device (its
    /// oldest go) and [`SESSIONS_KEPT`] in all (the oldest go).
    fn make_room_for(&mut self, sender: &UserId, device: &DeviceId) {
        let mut own: Vec<(u64, SessionId)> = self
            .sessions
            .iter()
            .filter(|(_, k)| k.sender == *sender && k.sender_device == *device)
            .map(|(s, k)| (k.learnt_ms, s.clone()))
            .collect();
        own.sort();
        while own.len() >= SESSIONS_PER_DEVICE {
            let (_, oldest) = own.remove(0);
            self.sessions.remove(&oldest);
        }
        while self.sessions.len() >= SESSIONS_KEPT {
            let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, k)| k.learnt_ms)
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            self.sessions.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests;
