//! Two real matrix-sdk clients through a real Synapse: an Olm-encrypted
//! custom to-device event and a Megolm-encrypted room message from alice
//! reach bob decrypted, while what the homeserver stored and relayed is
//! ciphertext (`m.room.encrypted`), read back through its own API.
#![recursion_limit = "256"]

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use walkie_core::matrix_sdk::{
    config::SyncSettings,
    deserialized_responses::ProcessedToDeviceEvent,
    ruma::{
        api::client::room::{create_room::v3::Request as CreateRoomRequest, Visibility},
        events::{
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
            InitialStateEvent,
        },
        serde::Raw,
        OwnedRoomId, UserId,
    },
    Client, RoomState,
};
use walkie_tests::{init_tracing, Synapse};

const TO_DEVICE_TYPE: &str = "org.matrix.msc4002.test";
const TO_DEVICE_SECRET: &str = "to-device secret: the eagle lands at noon";
const ROOM_SECRET: &str = "room secret: bring the blue thermos";
/// Upper bound on sync round trips while waiting for one expected change.
const MAX_SYNCS: usize = 30;

/// One /sync with a short long-poll; returns the response.
async fn sync(client: &Client) -> Result<walkie_core::matrix_sdk::sync::SyncResponse> {
    Ok(client
        .sync_once(SyncSettings::default().timeout(Duration::from_millis(500)))
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn olm_to_device_and_megolm_message_arrive_decrypted_and_relay_only_ciphertext() -> Result<()>
{
    init_tracing();
    let hs = Synapse::start().await?;
    let stores = tempfile::tempdir()?;
    let alice_reg = hs.register("alice").await?;
    let bob_reg = hs.register("bob").await?;
    let alice = hs.sign_in(&alice_reg, &stores.path().join("alice")).await?;
    let bob = hs.sign_in(&bob_reg, &stores.path().join("bob")).await?;
    let (a, b) = (alice.client(), bob.client());
    let bob_id = UserId::parse(&bob_reg.user_id)?;
    let bob_token = b.access_token().context("bob has no access token")?;

    // First syncs upload both devices' identity and one-time keys.
    sync(a).await?;
    sync(b).await?;

    // Alice creates an encrypted private room and invites bob.
    let mut create = CreateRoomRequest::new();
    create.visibility = Visibility::Private;
    create.invite = vec![bob_id.clone()];
    create.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let room = a.create_room(create).await?;
    let room_id: OwnedRoomId = room.room_id().to_owned();

    // Bob sees the invite and joins.
    let mut invited = false;
    for _ in 0..MAX_SYNCS {
        sync(b).await?;
        if b.get_room(&room_id)
            .is_some_and(|r| r.state() == RoomState::Invited)
        {
            invited = true;
            break;
        }
    }
    ensure!(invited, "bob never saw the invite to {room_id}");
    b.join_room_by_id(&room_id).await?;

    // Alice learns that bob joined and downloads his device keys.
    let mut bob_device = None;
    for _ in 0..MAX_SYNCS {
        sync(a).await?;
        let joined = room.get_member_no_sync(&bob_id).await?.is_some_and(|m| {
            m.membership()
                == &walkie_core::matrix_sdk::ruma::events::room::member::MembershipState::Join
        });
        let device = a
            .encryption()
            .get_device(&bob_id, b.device_id().context("bob device")?)
            .await?;
        if joined && device.is_some() {
            bob_device = device;
            break;
        }
    }
    let bob_device = bob_device.context("alice never saw bob join with his device keys")?;

    // Bob's position in the to-device stream before anything is sent to him.
    let before = sync(b).await?.next_batch;

    // Megolm room message (shares the room key with bob over Olm first).
    let sent = room
        .send(RoomMessageEventContent::text_plain(ROOM_SECRET))
        .await?;
    let event_id = sent.response.event_id;
    ensure!(
        sent.encryption_info.is_some(),
        "the room message was sent unencrypted"
    );

    // Olm-encrypted custom to-device event to bob's one device.
    let content = Raw::new(&json!({ "text": TO_DEVICE_SECRET, "seq": 1 }))?.cast_unchecked();
    let failed = a
        .encryption()
        .encrypt_and_send_raw_to_device(
            vec![&bob_device],
            TO_DEVICE_TYPE,
            content,
            Default::default(),
        )
        .await?;
    ensure!(failed.is_empty(), "encryption failed for {failed:?}");

    // What the homeserver relays to bob's device: read through the raw
    // client-server API from bob's previous position (this does not
    // acknowledge anything, so bob's own client still receives it next).
    let filter = r#"{"room":{"rooms":[]},"presence":{"not_types":["*"]}}"#;
    let raw_sync = hs
        .get_json(
            &format!(
                "/_matrix/client/v3/sync?since={before}&timeout=10000&filter={}",
                urlencode(filter)
            ),
            &bob_token,
        )
        .await?;
    let relayed = raw_sync["to_device"]["events"]
        .as_array()
        .context("no to_device events")?;
    ensure!(
        !relayed.is_empty(),
        "the homeserver relayed no to-device event to bob"
    );
    for ev in relayed {
        ensure!(ev["type"] == "m.room.encrypted", "relayed in clear: {ev}");
        ensure!(
            ev["content"]["algorithm"] == "m.olm.v1.curve25519-aes-sha2",
            "not Olm: {ev}"
        );
        let text = ev.to_string();
        ensure!(
            !text.contains(TO_DEVICE_SECRET) && !text.contains(TO_DEVICE_TYPE),
            "plaintext leaked: {ev}"
        );
    }

    // Bob's client decrypts the custom event.
    let mut got = None;
    for _ in 0..MAX_SYNCS {
        let response = b
            .sync_once(
                SyncSettings::default()
                    .token(before.clone())
                    .timeout(Duration::from_millis(500)),
            )
            .await?;
        for ev in response.to_device {
            match ev {
                ProcessedToDeviceEvent::Decrypted {
                    raw,
                    encryption_info,
                } => {
                    let value: serde_json::Value = raw.deserialize_as_unchecked()?;
                    if value["type"] == TO_DEVICE_TYPE {
                        got = Some((value, encryption_info));
                    }
                }
                ProcessedToDeviceEvent::UnableToDecrypt { utd_info, .. } => {
                    bail!("bob could not decrypt a to-device event: {utd_info:?}")
                }
                _ => {}
            }
        }
        if got.is_some() {
            break;
        }
    }
    let (value, info) = got.context("bob never received the custom to-device event")?;
    assert_eq!(value["content"]["text"], TO_DEVICE_SECRET);
    assert_eq!(value["content"]["seq"], 1);
    assert_eq!(value["sender"], alice_reg.user_id.as_str());
    assert_eq!(info.sender.as_str(), alice_reg.user_id);
    assert_eq!(
        info.sender_device.as_deref().map(|d| d.as_str()),
        a.device_id().map(|d| d.as_str())
    );

    // The room message as the homeserver stores it: Megolm ciphertext.
    let stored = hs
        .get_json(
            &format!("/_matrix/client/v3/rooms/{room_id}/event/{event_id}"),
            &bob_token,
        )
        .await?;
    assert_eq!(
        stored["type"], "m.room.encrypted",
        "stored in clear: {stored}"
    );
    assert_eq!(stored["content"]["algorithm"], "m.megolm.v1.aes-sha2");
    assert!(
        !stored.to_string().contains(ROOM_SECRET),
        "plaintext stored: {stored}"
    );

    // Bob's client decrypts it with the room key alice shared over Olm.
    let bob_room = b.get_room(&room_id).context("bob has no room")?;
    let event = bob_room.event(&event_id, None).await?;
    let decrypted = event
        .encryption_info()
        .context("bob got the room message undecrypted")?;
    assert_eq!(decrypted.sender.as_str(), alice_reg.user_id);
    let clear: serde_json::Value = event.raw().deserialize_as_unchecked()?;
    assert_eq!(clear["type"], "m.room.message");
    assert_eq!(clear["content"]["body"], ROOM_SECRET);
    Ok(())
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
