//! Unit tests of sealed fan-out: round trip, and each forgery a receiver,
//! the homeserver or a stranger could try.

use serde_json::Value;

use super::*;

fn ids() -> (RoomId, UserId, DeviceId) {
    (
        RoomId::parse("!room:example.org").expect("room id"),
        UserId::parse("@alice:example.org").expect("user id"),
        DeviceId::parse("ALICEDEV").expect("device id"),
    )
}

fn header(session: &str, seq: u32) -> ChunkHeader {
    ChunkHeader {
        session_id: SessionId::parse(session).expect("session id"),
        seq,
        start_ts: 1_000_000,
        ts: 1_000_000 + u64::from(seq) * 20,
        end: false,
    }
}

const SESSION: &str = "sessionAAAAAAAAAAAA";

fn frames() -> Vec<Vec<u8>> {
    vec![vec![0xfc, 1, 2, 3], vec![0xfc, 4, 5]]
}

/// The claim as the receiver gets it over Olm: the audio content with the
/// keys, parsed with the Olm-authenticated sender.
fn claim_with_keys(
    keys: &TalkKeys,
    user: &UserId,
    device: &DeviceId,
) -> (ValidatedChunk, KeyAnnouncement) {
    let (room, _, _) = ids();
    let mut content = header(SESSION, 0).to_content(&room, &[]).expect("content");
    content[KEYS_FIELD] = keys.announcement().to_json();
    let chunk = ValidatedChunk::parse(&content, user, device).expect("claim parses with keys");
    let ann = KeyAnnouncement::from_content(&content)
        .expect("has keys")
        .expect("keys parse");
    (chunk, ann)
}

fn talk() -> TalkKeys {
    TalkKeys::new([7; 32], [9; 32])
}

fn ring_with(keys: &TalkKeys) -> TalkKeyRing {
    let (_, user, device) = ids();
    let mut ring = TalkKeyRing::new();
    let (claim, ann) = claim_with_keys(keys, &user, &device);
    ring.learn(&claim, ann, 5_000).expect("learn");
    ring
}

#[test]
fn a_sealed_batch_opens_as_the_announcing_device() {
    let (room, user, device) = ids();
    let keys = talk();
    let ring = ring_with(&keys);
    let sealed = keys
        .seal(&room, &header(SESSION, 3), &frames(), [1; 24])
        .expect("seal");
    let chunk = ring.open(&sealed, user.as_str()).expect("opens");
    assert_eq!(chunk.sender(), &user);
    assert_eq!(chunk.sender_device(), &device);
    assert_eq!(chunk.header(), &header(SESSION, 3));
    assert_eq!(chunk.frames(), frames().as_slice());
    assert!(sealed.to_string().len() < MAX_SEALED_CONTENT_BYTES);
}

#[test]
fn a_receiver_holding_the_media_key_cannot_forge_audio() {
    let (room, user, _) = ids();
    let keys = talk();
    let ring = ring_with(&keys);
    // Same media key (every receiver has it), another signing key.
    let forger = TalkKeys::new([7; 32], [10; 32]);
    let sealed = forger
        .seal(&room, &header(SESSION, 3), &frames(), [1; 24])
        .expect("seal");
    assert!(matches!(
        ring.open(&sealed, user.as_str()),
        Err(SealError::BadSignature(_))
    ));
}

#[test]
fn tampering_with_header_ciphertext_or_sender_is_refused() {
    let (room, user, _) = ids();
    let keys = talk();
    let ring = ring_with(&keys);
    let sealed = keys
        .seal(&room, &header(SESSION, 3), &frames(), [1; 24])
        .expect("seal");

    let mut moved = sealed.clone();
    moved["seq"] = Value::from(4);
    assert!(matches!(
        ring.open(&moved, user.as_str()),
        Err(SealError::BadSignature(_))
    ));

    let mut flipped = sealed.clone();
    let ct = flipped["ciphertext"]
        .as_str()
        .expect("ciphertext")
        .to_owned();
    let mut bytes = FRAME_B64.decode(ct).expect("b64");
    bytes[0] ^= 1;
    flipped["ciphertext"] = Value::from(FRAME_B64.encode(bytes));
    assert!(matches!(
        ring.open(&flipped, user.as_str()),
        Err(SealError::BadSignature(_))
    ));

    assert!(matches!(
        ring.open(&sealed, "@mallory:example.org"),
        Err(SealError::HeaderMismatch("to-device sender"))
    ));

    let mut epoch = sealed;
    epoch["epoch"] = Value::from(1);
    assert!(matches!(
        ring.open(&epoch, user.as_str()),
        Err(SealError::UnknownEpoch { .. })
    ));
}

#[test]
fn a_stranger_session_without_an_olm_claim_is_refused() {
    let (room, user, _) = ids();
    let ring = TalkKeyRing::new();
    let sealed = talk()
        .seal(&room, &header(SESSION, 0), &frames(), [1; 24])
        .expect("seal");
    assert!(matches!(
        ring.open(&sealed, user.as_str()),
        Err(SealError::UnknownSession(_))
    ));
}

#[test]
fn another_device_cannot_take_over_a_session_or_change_its_talk_key() {
    let (_, user, device) = ids();
    let keys = talk();
    let mut ring = ring_with(&keys);
    let other = DeviceId::parse("MALLORY").expect("device id");
    let (claim, ann) = claim_with_keys(&TalkKeys::new([1; 32], [2; 32]), &user, &other);
    assert!(matches!(
        ring.learn(&claim, ann, 5_001),
        Err(SealError::SessionHijack(_))
    ));
    let (claim, ann) = claim_with_keys(&TalkKeys::new([7; 32], [2; 32]), &user, &device);
    assert!(matches!(
        ring.learn(&claim, ann, 5_001),
        Err(SealError::TalkKeyChanged(_))
    ));
}

#[test]
fn after_a_rotation_the_new_epoch_opens_and_the_old_key_cannot_seal_it() {
    let (room, user, device) = ids();
    let mut keys = talk();
    let mut ring = ring_with(&keys);
    keys.rotate([8; 32]);
    // A device that lost consent kept epoch 0's key only: it cannot read
    // epoch 1 (the AEAD fails under the old key).
    let sealed = keys
        .seal(&room, &header(SESSION, 9), &frames(), [2; 24])
        .expect("seal");
    assert!(matches!(
        ring.open(&sealed, user.as_str()),
        Err(SealError::UnknownEpoch { .. })
    ));
    let (claim, ann) = claim_with_keys(&keys, &user, &device);
    ring.learn(&claim, ann, 6_000).expect("learn epoch 1");
    assert_eq!(
        ring.open(&sealed, user.as_str())
            .expect("opens")
            .header()
            .seq,
        9
    );
    // Relabelled as epoch 0 (whose key a removed device holds): refused.
    let mut relabelled = sealed;
    relabelled["epoch"] = Value::from(0);
    assert!(matches!(
        ring.open(&relabelled, user.as_str()),
        Err(SealError::BadSignature(_))
    ));
}

#[test]
fn keys_are_bounded_per_device_and_in_time() {
    let (room, user, device) = ids();
    let mut ring = TalkKeyRing::new();
    for (i, session) in [
        "sessionAAAAAAAAAAA1",
        "sessionAAAAAAAAAAA2",
        "sessionAAAAAAAAAAA3",
    ]
    .iter()
    .enumerate()
    {
        let keys = talk();
        let mut content = header(session, 0).to_content(&room, &[]).expect("content");
        content[KEYS_FIELD] = keys.announcement().to_json();
        let chunk = ValidatedChunk::parse(&content, &user, &device).expect("chunk");
        ring.learn(&chunk, keys.announcement(), 1_000 + i as u64)
            .expect("learn");
    }
    assert_eq!(ring.len(), SESSIONS_PER_DEVICE);
    ring.prune(1_003 + KEY_LIFETIME_MS);
    assert!(ring.is_empty());
}

#[test]
fn malformed_announcements_are_typed_errors() {
    for keys in [
        serde_json::json!("nope"),
        serde_json::json!({"epoch": 0, "media_key": "AAAA", "talk_key": "AAAA"}),
        serde_json::json!({"epoch": 0, "media_key": FRAME_B64.encode([0u8; 32]), "talk_key": FRAME_B64.encode([0u8; 32])}),
    ] {
        let content = serde_json::json!({ KEYS_FIELD: keys });
        assert!(KeyAnnouncement::from_content(&content)
            .expect("has keys")
            .is_err());
    }
    assert!(KeyAnnouncement::from_content(&serde_json::json!({})).is_none());
}

#[test]
fn malformed_sealed_content_is_a_typed_error() {
    let (_, user, _) = ids();
    let ring = ring_with(&talk());
    for content in [
        serde_json::json!({}),
        serde_json::json!({"session_id": SESSION, "epoch": 0, "seq": 1, "nonce": "", "ciphertext": "", "signature": ""}),
        serde_json::json!({"session_id": "short", "epoch": 0, "seq": 1, "nonce": "", "ciphertext": "", "signature": ""}),
    ] {
        assert!(ring.open(&content, user.as_str()).is_err());
    }
}
