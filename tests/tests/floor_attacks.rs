//! A hostile member against the floor, through a real Synapse (issue 12).
//! Mallory consents like everyone and acts from a matrix-sdk client of her
//! own (cross-signed) device, sending crafted walkie content Olm-encrypted
//! to the devices she picks:
//!
//! - a claim back-dated to just before alice's, 5.5 s into alice's talk
//!   (past the 5 s collision window), to alice only, kept alive;
//! - the same to bob only (to deafen him);
//! - in a group whose longest talk is 2 s, a new session every second,
//!   never ended, to everyone.
//!
//! Alice's talk is heard whole by bob and posted; mallory's chained hold
//! ends at bob within `max_talk + 500` ms of her first claim, her claims
//! during the cool-down are dropped, and alice, pressing then, talks.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use walkie_core::{
    engine::now_ms,
    live_talk::{Input, LiveTalkError, TalkOptions},
    matrix_sdk::{
        config::SyncSettings,
        encryption::identities::Device,
        ruma::{serde::Raw, OwnedDeviceId, OwnedUserId},
        Client,
    },
    protocol::{ChunkHeader, RoomId, SessionId, AUDIO_EVENT_TYPE},
    Engine, EngineError, EngineEvent, Station,
};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

/// Mallory's device, sending walkie content of her choosing.
struct Rogue {
    client: Client,
    room: RoomId,
}

impl Rogue {
    async fn start(hs: &Synapse, cli: &Cli, room: &str) -> Result<Self> {
        let account = restore(hs, cli).await?;
        let client = account.client().clone();
        client
            .sync_once(SyncSettings::default().timeout(Duration::ZERO))
            .await?;
        Ok(Self {
            client,
            room: RoomId::parse(room)?,
        })
    }

    /// The device `device_id` of `user_id`, keys queried.
    async fn device(&self, user_id: &str, device_id: &str) -> Result<Device> {
        let user = OwnedUserId::try_from(user_id)?;
        self.client
            .encryption()
            .request_user_identity(&user)
            .await?;
        let device: OwnedDeviceId = device_id.into();
        self.client
            .encryption()
            .get_device(&user, &device)
            .await?
            .context("device keys")
    }

    /// Sends one frameless message of session `session` to `to`, Olm-encrypted.
    async fn send(&self, to: &[&Device], session: &str, seq: u32, start_ts: u64) -> Result<()> {
        let content = ChunkHeader {
            session_id: SessionId::parse(session)?,
            seq,
            start_ts,
            ts: now_ms().max(start_ts),
            end: false,
        }
        .to_content(&self.room, &[])?;
        let raw = Raw::new(&content)?.cast_unchecked();
        self.client
            .encryption()
            .encrypt_and_send_raw_to_device(to.to_vec(), AUDIO_EVENT_TYPE, raw, Default::default())
            .await?;
        Ok(())
    }

    /// A claim back-dated to `start_ts`, then a keep-alive every 500 ms
    /// for `hold`.
    async fn claim_and_hold(
        &self,
        to: &[&Device],
        session: &str,
        start_ts: u64,
        hold: Duration,
    ) -> Result<()> {
        let until = Instant::now() + hold;
        let mut seq = 0;
        loop {
            self.send(to, session, seq, start_ts).await?;
            seq += 1;
            if Instant::now() >= until {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// alice, bob and mallory in a group, all consenting; with `extra` for
/// `walkie create`. Returns the room and each one's device ID.
fn setup(
    hs_users: [(&Cli, &walkie_tests::Registered); 3],
    extra: &[&str],
) -> Result<(String, Vec<String>)> {
    let [(alice, _), (bob, b), (mallory, m)] = hs_users;
    let room = group(alice, &[(bob, &b.user_id), (mallory, &m.user_id)], extra)?;
    for cli in [alice, bob, mallory] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let status = alice.ok(&["status", &room])?;
    let mut devices = Vec::new();
    for (_, r) in hs_users {
        let device = status["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| d["user_id"] == r.user_id.as_str())
            .and_then(|d| d["device_id"].as_str())
            .with_context(|| format!("{}'s device in {status}", r.user_id))?;
        devices.push(device.to_owned());
    }
    Ok((room, devices))
}

/// Lines of a log file that say a walkie message from `user` arrived.
fn received_from(log: &std::path::Path, user: &str) -> Result<usize> {
    Ok(std::fs::read_to_string(log)?
        .lines()
        .filter(|l| l.contains("walkie to-device message received") && l.contains(user))
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_dated_claims_after_the_window_neither_cut_alice_nor_deafen_bob() -> Result<()> {
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
    let (room, devices) = setup([(&alice, &a), (&bob, &b), (&mallory, &m)], &[])?;
    let out = root.path().join("out");
    let listener = CountingListener::start(&bob, &room, &out)?;
    let rogue = Rogue::start(&hs, &mallory, &room).await?;
    let alice_device = rogue.device(&a.user_id, &devices[0]).await?;
    let bob_device = rogue.device(&b.user_id, &devices[1]).await?;

    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 10.0)?;
    let alice_log = root.path().join("alice-talk.log");
    let talk = alice
        .command()
        .env("RUST_LOG", "warn,walkie_core=info,walkie_to_device=debug")
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&alice_log)?)
        .spawn()?;
    let (started, _) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "talk_started" && e["user_id"] == a.user_id.as_str()
    })?;
    let start_ts = started["start_ts"].as_u64().context("start_ts")?;
    // 5.5 s into alice's talk (her clock), past the collision window.
    let attack_at = start_ts + walkie_core::protocol::floor::COLLISION_WINDOW_MS + 500;
    tokio::time::sleep(Duration::from_millis(attack_at.saturating_sub(now_ms()))).await;
    let hold = Duration::from_secs(3);
    let (only_alice, only_bob) = ([&alice_device], [&bob_device]);
    let (to_alice, to_bob) = tokio::join!(
        rogue.claim_and_hold(&only_alice, "MALLORYCUTSALICE000000", start_ts - 1, hold),
        rogue.claim_and_hold(&only_bob, "MALLORYDEAFENSBOB00000", start_ts - 1, hold),
    );
    to_alice?;
    to_bob?;

    let done = talk.wait_with_output()?;
    ensure!(
        done.status.success(),
        "alice's talk failed: {}",
        std::fs::read_to_string(&alice_log).unwrap_or_default()
    );
    let summary = last_json_line(&done.stdout).context("alice's talk summary")?;
    let (saved, seen) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "saved" && e["session_id"] == summary["session_id"]
    })?;
    // The attacks reached their targets, and changed nothing.
    ensure!(
        received_from(&alice_log, &m.user_id)? >= 6,
        "mallory's claim did not reach alice"
    );
    ensure!(
        listener
            .log()?
            .lines()
            .filter(|l| l.contains("walkie to-device message received") && l.contains(&m.user_id))
            .count()
            >= 6,
        "mallory's claim did not reach bob"
    );
    assert!(
        !seen
            .iter()
            .any(|e| e["event"] == "talk_started" && e["user_id"] == m.user_id.as_str()),
        "bob switched to mallory: {seen:?}"
    );
    let samples = saved["samples"].as_u64().unwrap_or(0);
    assert!(
        (10 * 48_000 - 4_800..=10 * 48_000 + 4_800).contains(&samples),
        "bob saved {samples} samples of alice's 10 s: {saved}"
    );
    // Posted: bob reads a 10 s voice message.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let posted = voice_messages(&hs, &bob, &room).await?;
        if let Some((content, _)) = posted.first() {
            let ms = content["info"]["duration"].as_u64().unwrap_or(0);
            assert!((9_500..=10_500).contains(&ms), "posted {content}");
            break;
        }
        ensure!(Instant::now() < deadline, "alice's talk was not posted");
    }
    listener.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_sessions_cannot_hold_the_floor_past_the_cap() -> Result<()> {
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
    // Longest talk 2 s; lease 3 s (the default).
    let (room, devices) = setup(
        [(&alice, &a), (&bob, &b), (&mallory, &m)],
        &["--max-talk", "2"],
    )?;
    let out = root.path().join("out");
    let listener = CountingListener::start(&bob, &room, &out)?;
    let rogue = Rogue::start(&hs, &mallory, &room).await?;
    let alice_device = rogue.device(&a.user_id, &devices[0]).await?;
    let bob_device = rogue.device(&b.user_id, &devices[1]).await?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 1.5)?;
    // Alice's client runs throughout, as the app does (a fresh process
    // would know nothing of mallory's hold so far).
    let alice_account = restore(&hs, &alice).await?;
    let (alice_engine, alice_tasks, mut alice_events) = Engine::start(&alice_account)?;
    loop {
        match alice_events.recv().await {
            Some(EngineEvent::Ready) => break,
            Some(_) => continue,
            None => anyhow::bail!("alice's engine stopped before its first sync"),
        }
    }
    tokio::spawn(async move { while alice_events.recv().await.is_some() {} });
    let station = Station::new(alice_engine.clone(), None);

    // A new session every second for 10 s, none ended, to alice and bob
    // (its own task: the checks below block their thread).
    let first_claim = now_ms();
    let attack = tokio::spawn(async move {
        for i in 0..10 {
            let start = now_ms();
            rogue
                .claim_and_hold(
                    &[&alice_device, &bob_device],
                    &format!("MALLORYCHAINS{i:09}"),
                    start,
                    Duration::from_millis(900),
                )
                .await?;
            let spent = now_ms().saturating_sub(start);
            tokio::time::sleep(Duration::from_millis(1_000u64.saturating_sub(spent))).await;
        }
        anyhow::Ok(())
    });
    // Bob ends mallory's hold at the cap (her sessions before supersede
    // each other) ...
    let (ended, _) = wait_for(&listener.rx, Duration::from_secs(20), |e| {
        e["event"] == "talk_ended"
            && e["user_id"] == m.user_id.as_str()
            && e["reason"] == "max_talk"
    })?;
    let capped_after = now_ms() - first_claim;
    eprintln!("bob ended mallory's hold {capped_after} ms after her first claim: {ended}");
    assert!(
        capped_after <= 2_000 + 500 + 1_000,
        "mallory held the floor at bob for {capped_after} ms"
    );
    // ... and alice, pressing from then on (as a user would, again while
    // busy), gets the floor within max_talk + lease of mallory's first
    // claim while mallory keeps claiming, and is heard whole.
    let input = Input::Wav(speech.clone());
    let (pressed_after, outcome) = loop {
        let tried = now_ms() - first_claim;
        match station
            .talk(
                &room,
                &input,
                &TalkOptions::default(),
                std::future::pending(),
                |_| {},
            )
            .await
        {
            Ok(outcome) => break (tried, outcome),
            Err(LiveTalkError::Engine(EngineError::FloorBusy { holder })) if tried < 6_000 => {
                eprintln!("alice's press {tried} ms after mallory's first claim: busy ({holder})");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!("alice's talk {tried} ms after mallory's first claim: {e}"),
        }
    };
    eprintln!("alice got the floor {pressed_after} ms after mallory's first claim");
    assert!(
        pressed_after <= 2_000 + 3_000,
        "alice could talk only {pressed_after} ms after mallory's first claim"
    );
    let (saved, seen) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "saved" && e["session_id"] == outcome.summary.session_id.as_str()
    })?;
    let samples = saved["samples"].as_u64().unwrap_or(0);
    assert!(
        (66_000..=78_000).contains(&samples),
        "bob saved {samples} samples of alice's 1.5 s: {saved} after {seen:?}"
    );
    attack.await??;
    drop(station);
    alice_tasks.stop().await;
    // Mallory's claims in her cool-down were dropped as such.
    let log = listener.log()?;
    assert!(
        log.contains("cooling down"),
        "no claim of mallory was refused as cooling down"
    );
    listener.stop()
}
