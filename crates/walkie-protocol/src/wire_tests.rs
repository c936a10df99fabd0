//! Unit tests of the wire types: identifiers, group marker, consent
//! content, audio chunks, talk reference.

use crate::{audio::FRAME_B64, *};
use base64::Engine as _;
use proptest::prelude::*;
use serde_json::json;
use serde_json::Value;

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
fn consent_owner_is_the_state_key_and_must_be_the_sender() {
    let (alice, _) = alice();
    assert_eq!(
        consent_owner("@alice:example.org", &alice),
        Ok(alice.clone())
    );
    let odd = UserId::parse("@a_b:[::1]:8448").unwrap();
    assert_eq!(consent_owner("@a_b:[::1]:8448", &odd), Ok(odd.clone()));

    // Another user's key: the homeserver should have refused it; ignored.
    let e = consent_owner("@bob:example.org", &alice).unwrap_err();
    assert_eq!(
        e,
        ConsentError::ForeignStateKey {
            state_key: "@bob:example.org".into(),
            named: UserId::parse("@bob:example.org").unwrap(),
            sender: alice.clone(),
        }
    );
    assert!(e.to_string().contains("@bob:example.org"));

    // Not a user id (the old `_@user:server_DEVICE` form included).
    for bad in [
        "",
        "_@alice:example.org_ALICEDEV",
        "alice",
        "@alice",
        "@alice:example.org ",
        "!room:example.org",
    ] {
        assert_eq!(
            consent_owner(bad, &alice),
            Err(ConsentError::StateKey(ProtocolError::InvalidStateKey(
                bad.into()
            ))),
            "{bad:?}"
        );
    }
}

fn signed(receive: bool, talk: bool, expires_ts: Option<u64>, granted_ts: u64) -> SignedConsent {
    SignedConsent {
        consent: Consent {
            receive,
            talk,
            expires_ts,
        },
        granted_ts,
        signature: format!("sig{granted_ts}"),
    }
}

fn dev(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

#[test]
fn consent_content_round_trip() {
    let content = json!({ "devices": {
        "ALICEDEV": { "receive": true, "talk": true, "expires_ts": 1767225600000u64,
                      "granted_ts": 1767220000000u64, "signature": "c2lnbmF0dXJl" },
        "PHONE": { "receive": true, "talk": false, "granted_ts": 5, "signature": "AAAA" }
    }});
    let parsed = ConsentContent::parse(&content).unwrap();
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    let mut expected = ConsentContent::default();
    expected.devices.insert(
        dev("ALICEDEV"),
        SignedConsent {
            consent: Consent {
                receive: true,
                talk: true,
                expires_ts: Some(1_767_225_600_000),
            },
            granted_ts: 1_767_220_000_000,
            signature: "c2lnbmF0dXJl".into(),
        },
    );
    expected.devices.insert(
        dev("PHONE"),
        SignedConsent {
            consent: Consent {
                receive: true,
                talk: false,
                expires_ts: None,
            },
            granted_ts: 5,
            signature: "AAAA".into(),
        },
    );
    assert_eq!(parsed.content, expected);
    // The inverse: the same JSON (`expires_ts` omitted when unset).
    assert_eq!(expected.to_content(), content);
    assert_eq!(
        ConsentContent::parse(&expected.to_content()),
        Ok(ParsedConsents {
            content: expected,
            rejected: vec![]
        })
    );
}

#[test]
fn empty_consent_contents_grant_nothing() {
    for empty in [
        json!({}),
        json!({"devices": {}}),
        json!({"other": 1}),
        json!({"devices": {"OFF": {"receive": false, "talk": false}}}),
        json!({"devices": {"OFF": {"receive": false, "granted_ts": 1, "signature": "x"}}}),
        json!({"devices": {"OFF": {}}}),
    ] {
        assert_eq!(
            ConsentContent::parse(&empty),
            Ok(ParsedConsents::default()),
            "{empty}"
        );
    }
    assert_eq!(
        ConsentContent::default().to_content(),
        json!({"devices": {}})
    );
    for bad in [
        json!([]),
        json!("x"),
        json!(null),
        json!({"devices": []}),
        json!({"devices": "ALICEDEV"}),
        json!({"devices": null}),
    ] {
        assert!(ConsentContent::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn malformed_consent_entries_are_listed_and_the_valid_ones_kept() {
    let ok = json!({ "receive": true, "talk": true, "granted_ts": 1, "signature": "s" });
    let content = json!({ "devices": {
        "GOOD": ok,
        "GOOD2": { "receive": true, "granted_ts": 2, "signature": "t", "unknown": [1] },
        "": ok,
        "BAD DEV": ok,
        "NOTOBJ": true,
        "TALKONLY": { "talk": true, "granted_ts": 1, "signature": "s" },
        "STRRECV": { "receive": "yes", "granted_ts": 1, "signature": "s" },
        "NEGEXP": { "receive": true, "expires_ts": -1, "granted_ts": 1, "signature": "s" },
        "STREXP": { "receive": true, "expires_ts": "soon", "granted_ts": 1, "signature": "s" },
        "NOSIG": { "receive": true, "granted_ts": 1 },
        "EMPTYSIG": { "receive": true, "granted_ts": 1, "signature": "" },
        "NUMSIG": { "receive": true, "granted_ts": 1, "signature": 7 },
        "NOGRANTED": { "receive": true, "signature": "s" },
        "FLOATGRANTED": { "receive": true, "granted_ts": 1.5, "signature": "s" },
        "OFF": { "receive": false, "talk": false }
    }});
    let parsed = ConsentContent::parse(&content).unwrap();
    assert_eq!(
        parsed.content.devices.keys().cloned().collect::<Vec<_>>(),
        vec![dev("GOOD"), dev("GOOD2")]
    );
    let rejected: Vec<&str> = parsed.rejected.iter().map(|(k, _)| k.as_str()).collect();
    let mut expected = vec![
        "",
        "BAD DEV",
        "NOTOBJ",
        "TALKONLY",
        "STRRECV",
        "NEGEXP",
        "STREXP",
        "NOSIG",
        "EMPTYSIG",
        "NUMSIG",
        "NOGRANTED",
        "FLOATGRANTED",
    ];
    expected.sort_unstable();
    let mut rejected_sorted = rejected.clone();
    rejected_sorted.sort_unstable();
    assert_eq!(rejected_sorted, expected);
    let why = |key: &str| {
        parsed
            .rejected
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| e.clone())
            .unwrap()
    };
    assert_eq!(why("TALKONLY"), ProtocolError::TalkWithoutReceive);
    assert!(matches!(why(""), ProtocolError::InvalidDeviceId(_)));
    assert!(matches!(why("BAD DEV"), ProtocolError::InvalidDeviceId(_)));
    assert!(matches!(why("NOSIG"), ProtocolError::Malformed(_)));
}

#[test]
fn with_device_sets_or_removes_one_entry_and_keeps_the_others() {
    let mut content = ConsentContent::default();
    content
        .devices
        .insert(dev("LAPTOP"), signed(true, true, None, 1));
    content
        .devices
        .insert(dev("PHONE"), signed(true, false, Some(9), 2));

    let updated = content.with_device(&dev("PHONE"), Some(signed(true, true, None, 3)));
    assert_eq!(updated.devices.len(), 2);
    assert_eq!(updated.devices[&dev("LAPTOP")], signed(true, true, None, 1));
    assert_eq!(updated.devices[&dev("PHONE")], signed(true, true, None, 3));

    let added = content.with_device(&dev("TABLET"), Some(signed(true, false, None, 4)));
    assert_eq!(added.devices.len(), 3);
    assert_eq!(added.devices[&dev("LAPTOP")], signed(true, true, None, 1));

    let removed = content.with_device(&dev("PHONE"), None);
    assert_eq!(
        removed.devices.keys().cloned().collect::<Vec<_>>(),
        vec![dev("LAPTOP")]
    );
    assert_eq!(content.with_device(&dev("ABSENT"), None), content);
    // The original is untouched.
    assert_eq!(
        content.devices[&dev("PHONE")],
        signed(true, false, Some(9), 2)
    );
}

#[test]
fn signing_payload_is_canonical_json_binding_room_user_and_device() {
    let room = RoomId::parse("!walkie:example.org").unwrap();
    let (user, device) = alice();
    let consent = Consent {
        receive: true,
        talk: true,
        expires_ts: Some(1_767_225_600_000),
    };
    let payload = signing_payload(&room, &user, &device, &consent, 1_767_220_000_000);
    assert_eq!(
        payload,
        r#"{"device_id":"ALICEDEV","expires_ts":1767225600000,"granted_ts":1767220000000,"receive":true,"room_id":"!walkie:example.org","talk":true,"type":"org.matrix.msc4002.consent","user_id":"@alice:example.org"}"#
    );
    // Valid JSON with exactly these fields.
    assert_eq!(
        serde_json::from_str::<Value>(&payload).unwrap(),
        json!({
            "device_id": "ALICEDEV", "expires_ts": 1_767_225_600_000u64,
            "granted_ts": 1_767_220_000_000u64, "receive": true,
            "room_id": "!walkie:example.org", "talk": true,
            "type": CONSENT_EVENT_TYPE, "user_id": "@alice:example.org"
        })
    );

    let until_revoked = Consent {
        receive: true,
        talk: false,
        expires_ts: None,
    };
    assert_eq!(
        signing_payload(&room, &user, &device, &until_revoked, 7),
        r#"{"device_id":"ALICEDEV","granted_ts":7,"receive":true,"room_id":"!walkie:example.org","talk":false,"type":"org.matrix.msc4002.consent","user_id":"@alice:example.org"}"#
    );

    // Every bound field changes the payload.
    let other_room = RoomId::parse("!other:example.org").unwrap();
    let bob = UserId::parse("@bob:example.org").unwrap();
    let variants = [
        signing_payload(&other_room, &user, &device, &consent, 1_767_220_000_000),
        signing_payload(&room, &bob, &device, &consent, 1_767_220_000_000),
        signing_payload(&room, &user, &dev("PHONE"), &consent, 1_767_220_000_000),
        signing_payload(&room, &user, &device, &until_revoked, 1_767_220_000_000),
        signing_payload(&room, &user, &device, &consent, 1_767_220_000_001),
    ];
    for v in &variants {
        assert_ne!(v, &payload);
    }

    // Characters JSON must escape still yield the JSON serde_json reads back.
    let odd = DeviceId::parse("D\"\\é").unwrap();
    let p = signing_payload(&room, &user, &odd, &until_revoked, 7);
    assert_eq!(
        serde_json::from_str::<Value>(&p).unwrap()["device_id"],
        json!("D\"\\é")
    );
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
                    Just("devices".to_string()),
                    Just("receive".to_string()),
                    Just("talk".to_string()),
                    Just("granted_ts".to_string()),
                    Just("signature".to_string()),
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
    fn consent_contents_round_trip(
        entries in prop::collection::btree_map(
            "[A-Za-z0-9_]{1,16}",
            (any::<bool>(), proptest::option::of(any::<u64>()), any::<u64>(), "[A-Za-z0-9+/]{1,86}"),
            0..6,
        ),
    ) {
        let mut content = ConsentContent::default();
        for (device, (talk, expires_ts, granted_ts, signature)) in entries {
            content.devices.insert(DeviceId::parse(&device).unwrap(), SignedConsent {
                consent: Consent { receive: true, talk, expires_ts },
                granted_ts,
                signature,
            });
        }
        let parsed = ConsentContent::parse(&content.to_content()).unwrap();
        prop_assert!(parsed.rejected.is_empty());
        prop_assert_eq!(parsed.content, content);
    }
}
