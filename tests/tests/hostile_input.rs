//! Hostile input from another room member: a consent naming another user,
//! unencrypted walkie to-device messages, malformed and oversize content,
//! replayed sequence numbers. Each is dropped with a log line (a `dropped`
//! event on the listener's stdout), nothing panics, and the listener still
//! receives a genuine talk afterwards.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use walkie_audio::codec::OpusEncoder;
use walkie_core::{
    engine::now_ms,
    matrix_sdk::{
        config::SyncSettings,
        ruma::{serde::Raw, OwnedDeviceId, OwnedUserId},
    },
    protocol::{ChunkHeader, RoomId, SessionId, AUDIO_EVENT_TYPE, CONSENT_EVENT_TYPE},
};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_dropped_and_the_listener_keeps_working() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (a, b, c, m) = (
        hs.register("alice").await?,
        hs.register("bob").await?,
        hs.register("carol").await?,
        hs.register("mallory").await?,
    );
    let (alice, bob, carol, mallory) = (
        Cli::new(root.path(), "alice"),
        Cli::new(root.path(), "bob"),
        Cli::new(root.path(), "carol"),
        Cli::new(root.path(), "mallory"),
    );
    for (cli, r) in [(&alice, &a), (&bob, &b), (&carol, &c), (&mallory, &m)] {
        login(&hs, cli, r)?;
    }
    let room = group(
        &alice,
        &[
            (&bob, &b.user_id),
            (&carol, &c.user_id),
            (&mallory, &m.user_id),
        ],
        &[],
    )?;
    for cli in [&alice, &bob, &mallory] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let (mut listener, rx) = bob.listen(&[
        &room,
        "--out",
        root.path().join("out").to_str().unwrap_or_default(),
        "--timeout",
        "60",
    ])?;

    // Mallory acts from a matrix-sdk client of her own device.
    let account = restore(&hs, &mallory).await?;
    let client = account.client().clone();
    let token = client.access_token().context("token")?;
    client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await?;
    let bob_id = OwnedUserId::try_from(b.user_id.as_str())?;
    let bob_device: OwnedDeviceId = bob.ok(&["status", &room])?["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["user_id"] == b.user_id.as_str())
        .and_then(|d| d["device_id"].as_str())
        .context("bob's device in status")?
        .into();
    client.encryption().request_user_identity(&bob_id).await?;
    let device = client
        .encryption()
        .get_device(&bob_id, &bob_device)
        .await?
        .context("bob's device keys")?;
    let send = |content: Value| {
        let client = client.clone();
        let device = device.clone();
        async move {
            let raw = Raw::new(&content)?.cast_unchecked();
            client
                .encryption()
                .encrypt_and_send_raw_to_device(
                    vec![&device],
                    AUDIO_EVENT_TYPE,
                    raw,
                    Default::default(),
                )
                .await?;
            anyhow::Ok(())
        }
    };

    // 1. A consent whose state key names carol's device, sent by mallory.
    let forged_key = format!("_{}_CAROLPHONE", c.user_id);
    let (http, _) = raw_api(
        &hs,
        Method::PUT,
        &token,
        &format!("/_matrix/client/v3/rooms/{room}/state/{CONSENT_EVENT_TYPE}/{forged_key}"),
        json!({"receive": true, "talk": true}),
    )
    .await?;
    ensure!(
        http.is_success(),
        "the homeserver refused the forged consent: {http}"
    );
    // 2. An unencrypted walkie to-device message.
    let plain = json!({"messages": {b.user_id.clone(): {bob_device.to_string(): {"room_id": room, "session_id": "AAAAAAAAAAAAAAAAAAAAAA", "seq": 0, "start_ts": now_ms(), "ts": now_ms(), "frame_ms": 20, "frames": [], "end": false}}}});
    let (http, _) = raw_api(
        &hs,
        Method::PUT,
        &token,
        &format!("/_matrix/client/v3/sendToDevice/{AUDIO_EVENT_TYPE}/plain1"),
        plain,
    )
    .await?;
    ensure!(http.is_success(), "plain to-device refused: {http}");
    // 3. Malformed and oversize content, Olm-encrypted.
    send(json!({"garbage": true})).await?;
    send(json!({"room_id": room, "session_id": "BBBBBBBBBBBBBBBBBBBBBB", "seq": "zero", "frames": 7})).await?;
    let huge = "A".repeat(30_000);
    send(json!({"room_id": room, "session_id": "CCCCCCCCCCCCCCCCCCCCCC", "seq": 0, "start_ts": now_ms(), "ts": now_ms(), "frame_ms": 20, "frames": [huge], "end": false})).await?;
    // 4. A valid talk from mallory, then its replays.
    let packet = OpusEncoder::new()?.encode(&[0i16; 960])?;
    let room_id = RoomId::parse(&room)?;
    let session = SessionId::parse("MMMMMMMMMMMMMMMMMMMMMM")?;
    let start = now_ms();
    let claim = ChunkHeader {
        session_id: session.clone(),
        seq: 0,
        start_ts: start,
        ts: start,
        end: false,
    }
    .to_content(&room_id, std::slice::from_ref(&packet))?;
    let end = ChunkHeader {
        session_id: session,
        seq: 1,
        start_ts: start,
        ts: start + 20,
        end: true,
    }
    .to_content(&room_id, &[packet])?;
    send(claim.clone()).await?;
    send(claim).await?;
    send(end.clone()).await?;
    send(end).await?;

    // Everything bad was dropped with a reason; the listener is alive. The
    // two invalid contents are one report (one per sender and kind a
    // minute).
    let expected = [
        "unencrypted",
        "invalid walkie audio",
        "oversize",
        "duplicate",
        "ended",
    ];
    let mut dropped = Vec::new();
    while dropped.len() < expected.len() {
        let (e, _) = wait_for(&rx, Duration::from_secs(20), |e| e["event"] == "dropped")?;
        dropped.push(e["reason"].as_str().unwrap_or_default().to_owned());
    }
    eprintln!("dropped: {dropped:#?}");
    for want in [
        "unencrypted",
        "invalid walkie audio",
        "duplicate",
        "session already ended",
    ] {
        assert!(
            dropped.iter().any(|r| r.contains(want)),
            "nothing dropped as {want:?}: {dropped:?}"
        );
    }
    assert!(
        dropped
            .iter()
            .any(|r| r.contains("oversize") || r.contains("too") || r.contains("size")),
        "oversize not dropped: {dropped:?}"
    );

    // The forged consent grants carol's device nothing.
    let status = alice.ok(&["status", &room])?;
    let listed: Vec<&str> = status["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["device_id"].as_str())
        .collect();
    assert!(
        !listed.contains(&"CAROLPHONE"),
        "forged consent accepted: {status}"
    );

    // A genuine talk still gets through.
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;
    let talk = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    let (saved, _) = wait_for(&rx, Duration::from_secs(20), |e| {
        e["event"] == "saved" && e["session_id"] == talk["session_id"]
    })?;
    assert!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "saved: {saved}"
    );
    ensure!(listener.try_wait()?.is_none(), "the listener died");
    let _ = listener.kill();
    Ok(())
}

/// Sealed fan-out under attack: mallory, a consenting member, receives
/// alice's talk keys like every listener. A batch she seals with alice's
/// media key for alice's session (signed with a key of her own) is dropped
/// by bob: the homeserver stamps her as its to-device sender, and the
/// session's keys came from alice. (A homeserver that forges the sender
/// meets the talk-key signature instead: `walkie_protocol::sealed` unit
/// tests.) A sealed batch for a session no Olm message announced (what a
/// stranger can send) is dropped too; alice's talk still plays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_cannot_forge_sealed_audio_of_another_talker() -> Result<()> {
    use walkie_core::matrix_sdk::deserialized_responses::ProcessedToDeviceEvent;
    use walkie_core::protocol::{sealed::KEYS_FIELD, TalkKeys, SEALED_AUDIO_EVENT_TYPE};

    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (a, b, m) = (
        hs.register("alice").await?,
        hs.register("bob").await?,
        hs.register("mallory").await?,
    );
    let (alice, bob, mallory) = (
        Cli::new(root.path(), "alice"),
        Cli::new(root.path(), "bob"),
        Cli::new(root.path(), "mallory"),
    );
    for (cli, r) in [(&alice, &a), (&bob, &b), (&mallory, &m)] {
        login(&hs, cli, r)?;
    }
    let room = group(&alice, &[(&bob, &b.user_id), (&mallory, &m.user_id)], &[])?;
    for cli in [&alice, &bob, &mallory] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let bob_device = bob.ok(&["status", &room])?["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["user_id"] == b.user_id.as_str())
        .and_then(|d| d["device_id"].as_str())
        .context("bob's device in status")?
        .to_owned();
    let (mut listener, rx) = bob.listen(&[
        &room,
        "--out",
        root.path().join("out").to_str().unwrap_or_default(),
        "--timeout",
        "60",
    ])?;
    // Mallory's own consenting device, as a matrix-sdk client.
    let account = restore(&hs, &mallory).await?;
    let client = account.client().clone();
    let token = client.access_token().context("token")?;
    let mut settings = SyncSettings::default().timeout(Duration::ZERO);
    let first = client.sync_once(settings.clone()).await?;
    settings = settings
        .token(first.next_batch)
        .timeout(Duration::from_secs(2));

    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 4.0)?;
    let mut talk = alice
        .command()
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .stdout(std::process::Stdio::piped())
        .spawn()?;

    // Alice's claim reaches mallory over Olm, with the talk's keys.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let claim = loop {
        ensure!(
            std::time::Instant::now() < deadline,
            "no keyed claim reached mallory"
        );
        let response = client.sync_once(settings.clone()).await?;
        settings = settings.token(response.next_batch);
        let found = response
            .to_device
            .into_iter()
            .find_map(|event| match event {
                ProcessedToDeviceEvent::Decrypted { raw, .. } => {
                    let v: Value = raw.deserialize_as_unchecked().ok()?;
                    (v["type"] == AUDIO_EVENT_TYPE && v["content"].get(KEYS_FIELD).is_some())
                        .then(|| v["content"].clone())
                }
                _ => None,
            });
        if let Some(content) = found {
            break content;
        }
    };
    let media_key: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        claim[KEYS_FIELD]["media_key"]
            .as_str()
            .context("media_key")?,
    )?
    .try_into()
    .map_err(|_| anyhow::anyhow!("media key length"))?;
    let session = SessionId::parse(claim["session_id"].as_str().context("session")?)?;
    let start_ts = claim["start_ts"].as_u64().context("start_ts")?;
    let room_id = RoomId::parse(&room)?;
    let packet = OpusEncoder::new()?.encode(&[0i16; 960])?;
    let forge = |session: &SessionId, seq: u32, signing_seed: [u8; 32]| {
        let header = ChunkHeader {
            session_id: session.clone(),
            seq,
            start_ts,
            ts: now_ms().max(start_ts),
            end: false,
        };
        TalkKeys::new(media_key, signing_seed).seal(
            &room_id,
            &header,
            std::slice::from_ref(&packet),
            [seq as u8; 24],
        )
    };
    let stranger = SessionId::parse("SSSSSSSSSSSSSSSSSSSSSS")?;
    for (txn, content) in [
        ("forged1", forge(&session, 900, [0x42; 32])?),
        ("forged2", forge(&stranger, 0, [0x43; 32])?),
    ] {
        let body = json!({"messages": {b.user_id.clone(): {bob_device.clone(): content}}});
        let (http, _) = raw_api(
            &hs,
            Method::PUT,
            &token,
            &format!("/_matrix/client/v3/sendToDevice/{SEALED_AUDIO_EVENT_TYPE}/{txn}"),
            body,
        )
        .await?;
        ensure!(http.is_success(), "sealed to-device refused: {http}");
    }
    let mut dropped = Vec::new();
    while dropped.len() < 2 {
        let (e, _) = wait_for(&rx, Duration::from_secs(20), |e| e["event"] == "dropped")?;
        dropped.push(e["reason"].as_str().unwrap_or_default().to_owned());
    }
    eprintln!("dropped: {dropped:#?}");
    assert!(
        dropped
            .iter()
            .any(|r| r.contains("to-device sender") || r.contains("bad signature")),
        "the forged batch was not refused: {dropped:?}"
    );
    assert!(
        dropped.iter().any(|r| r.contains("no keys for session")),
        "the unannounced session was not refused: {dropped:?}"
    );
    ensure!(talk.wait()?.success(), "alice's talk failed");
    let (saved, _) = wait_for(&rx, Duration::from_secs(20), |e| {
        e["event"] == "saved" && e["session_id"] == session.as_str()
    })?;
    // 4 s of speech at 48 kHz, whole: nothing forged was added to it.
    let samples = saved["samples"].as_u64().unwrap_or(0);
    assert!((180_000..=200_000).contains(&samples), "saved: {saved}");
    ensure!(listener.try_wait()?.is_none(), "the listener died");
    let _ = listener.kill();
    Ok(())
}

/// A stranger who shares no room with bob sends him 2000 walkie to-device
/// messages (sealed-looking plaintext, the kind anyone can send). Bob's
/// listener receives every one (its to-device debug log counts them) and
/// its log holds at most a handful of other lines about them; it still
/// works afterwards. Before the rate limit each produced a WARN line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_flood_leaves_a_handful_of_log_lines() -> Result<()> {
    use walkie_core::protocol::SEALED_AUDIO_EVENT_TYPE;
    const FLOOD: usize = 2000;
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (a, b, eve) = (
        hs.register("alice").await?,
        hs.register("bob").await?,
        hs.register("eve").await?,
    );
    let (alice, bob) = (Cli::new(root.path(), "alice"), Cli::new(root.path(), "bob"));
    for (cli, r) in [(&alice, &a), (&bob, &b)] {
        login(&hs, cli, r)?;
    }
    let room = group(&alice, &[(&bob, &b.user_id)], &[])?;
    for cli in [&alice, &bob] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let bob_device = bob.ok(&["status", &room])?["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["user_id"] == b.user_id.as_str())
        .and_then(|d| d["device_id"].as_str())
        .context("bob's device in status")?
        .to_owned();
    let out = root.path().join("out");
    let listener = CountingListener::start(&bob, &room, &out)?;

    let http = reqwest::Client::new();
    for i in 0..FLOOD {
        let content = json!({"room_id": room, "session_id": "EEEEEEEEEEEEEEEEEEEEEE", "epoch": 0, "seq": i, "ciphertext": "AAAA", "sig": "AAAA"});
        let body = json!({"messages": {b.user_id.clone(): {bob_device.clone(): content}}});
        let resp = http
            .put(format!(
                "{}/_matrix/client/v3/sendToDevice/{SEALED_AUDIO_EVENT_TYPE}/flood{i}",
                hs.url()
            ))
            .bearer_auth(&eve.access_token)
            .json(&body)
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "flood message {i}: {}",
            resp.status()
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while listener.received()? < FLOOD {
        ensure!(
            std::time::Instant::now() < deadline,
            "bob received {} of {FLOOD} messages",
            listener.received()?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = listener.log()?;
    let about_eve: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&eve.user_id) && !l.contains("walkie to-device message received"))
        .collect();
    eprintln!(
        "{FLOOD} messages from a stranger, {} log lines about them: {about_eve:#?}",
        about_eve.len()
    );
    assert!(about_eve.len() <= 5, "{} lines", about_eve.len());

    // The listener still works: alice's talk is saved whole.
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 2.0)?;
    let talk = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    let (saved, _) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "saved" && e["session_id"] == talk["session_id"]
    })?;
    assert!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "saved: {saved}"
    );
    listener.stop()
}
