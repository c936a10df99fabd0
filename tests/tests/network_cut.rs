//! The network to one client drops for 10 s during a talk (issue 13): that
//! client reaches the homeserver through a proxy (`delay_proxy`) that is
//! cut mid-talk and restored 10 s later.
//! - A listener cut off (bob, 2 s into alice's 6 s talk) reconnects by
//!   itself (its sync loop backs off while the link is down: the
//!   connections it tries in the outage are counted and bounded; it
//!   reports `offline` and `online` again) and saves alice's next talk;
//!   nothing is posted twice.
//! - The talker cut off (alice, 2 s into her 10 s talk): everyone else sees
//!   her talk end by its lease and the floor free, and carol talks in the
//!   outage; alice reconnects, her recording is posted exactly once, and
//!   her next talk is heard.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use walkie_tests::{delay_proxy::DelayProxy, speech_wav, Synapse};

mod common;
use common::*;

/// Connections a client may open to a homeserver it cannot reach in 10 s:
/// its backoff (250 ms doubling to 8 s) makes about six tries; this allows
/// each a second request (the outbox, a key upload) and some slack.
const MAX_TRIES_IN_OUTAGE: u64 = 15;

/// A link to `hs` that the test can cut.
async fn link_to(hs: &Synapse) -> Result<DelayProxy> {
    let port: u16 = hs
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("homeserver port")?;
    DelayProxy::start(port, Duration::ZERO).await
}

/// Signs `cli` in through `link`: every request of its goes over it.
fn login_via(link: &DelayProxy, cli: &Cli, user: &walkie_tests::Registered) -> Result<()> {
    let mut cmd = cli.command();
    cmd.env("WALKIE_PASSWORD", &user.password);
    ok_output(
        cmd,
        &[
            "login",
            "--homeserver",
            &format!("http://127.0.0.1:{}", link.port()),
            "--user",
            &user.user_id,
        ],
    )?;
    Ok(())
}

/// How many voice messages in `posted` are the recording of `talk`.
fn times_posted(posted: &[(serde_json::Value, Vec<u8>)], talk: &serde_json::Value) -> usize {
    posted
        .iter()
        .filter(|(c, _)| c["org.matrix.msc4002.talk"]["session_id"] == talk["session_id"])
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_for_10_s_reconnects_and_hears_the_next_talk() -> Result<()> {
    let hs = Synapse::start().await?;
    let link = link_to(&hs).await?;
    let root = tempfile::tempdir()?;
    let (a, b) = (hs.register("alice").await?, hs.register("bob").await?);
    let (alice, bob) = (Cli::new(root.path(), "alice"), Cli::new(root.path(), "bob"));
    login(&hs, &alice, &a)?;
    login_via(&link, &bob, &b)?;
    let room = group(&alice, &[(&bob, &b.user_id)], &[])?;
    for cli in [&alice, &bob] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let out = root.path().join("out");
    let listener = CountingListener::start(&bob, &room, &out)?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 6.0)?;
    let talk = alice
        .command()
        .args(["talk", &room, "--wav", speech.to_str().unwrap_or_default()])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "audio" && e["frame_index"].as_u64().is_some_and(|i| i >= 100)
    })?;
    link.cut();
    let cut = Instant::now();
    // Bob's client notices and says so (the app shows it as "offline").
    wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "offline"
    })?;
    let to_offline = cut.elapsed();
    // The rest of the outage (a fault of fixed length).
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed())).await;
    link.restore();
    let restored = Instant::now();
    // What bob's client tried while the link was down: its sync loop backs
    // off (250 ms doubling to 8 s: about six tries in 10 s), where a client
    // retrying in a loop would open thousands of connections.
    let tries = link.refused();
    wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "online"
    })?;
    eprintln!(
        "bob's client: offline {} ms after the cut, {tries} connections tried in the 10 s outage, online again {} ms after the link came back",
        to_offline.as_millis(),
        restored.elapsed().as_millis()
    );
    assert!(
        (1..=MAX_TRIES_IN_OUTAGE).contains(&tries),
        "{tries} connections tried in a 10 s outage (backoff allows {MAX_TRIES_IN_OUTAGE})"
    );
    let first = talk.wait_with_output()?;
    anyhow::ensure!(first.status.success(), "alice's first talk failed");
    let first = last_json_line(&first.stdout).context("alice's summary")?;

    // Alice talks again: bob's client, back by itself, saves it.
    let short = root.path().join("short.wav");
    speech_wav(&short, 2.0)?;
    let next = alice.ok(&["talk", &room, "--wav", short.to_str().unwrap_or_default()])?;
    let (saved, _) = wait_for(&listener.rx, Duration::from_secs(60), |e| {
        e["event"] == "saved" && e["session_id"] == next["session_id"]
    })?;
    eprintln!(
        "bob saved alice's next talk {} ms after the link came back",
        restored.elapsed().as_millis()
    );
    assert!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "saved: {saved}"
    );
    // Each talk posted exactly once.
    let posted = voice_messages(&hs, &alice, &room).await?;
    for talk in [&first, &next] {
        let n = times_posted(&posted, talk);
        assert_eq!(n, 1, "talk {} posted {n} times", talk["session_id"]);
    }
    listener.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_talker_cut_off_loses_the_floor_by_its_lease_and_comes_back() -> Result<()> {
    let hs = Synapse::start().await?;
    let link = link_to(&hs).await?;
    let root = tempfile::tempdir()?;
    let (a, b, c) = (
        hs.register("alice").await?,
        hs.register("bob").await?,
        hs.register("carol").await?,
    );
    let alice = Cli::new(root.path(), "alice");
    let (bob, carol) = (Cli::new(root.path(), "bob"), Cli::new(root.path(), "carol"));
    login_via(&link, &alice, &a)?;
    login(&hs, &bob, &b)?;
    login(&hs, &carol, &c)?;
    let room = group(&alice, &[(&bob, &b.user_id), (&carol, &c.user_id)], &[])?;
    for cli in [&alice, &bob, &carol] {
        cli.ok(&["consent", &room, "--for", "1h"])?;
    }
    let listener = CountingListener::start(&bob, &room, &root.path().join("out"))?;
    let long = root.path().join("long.wav");
    speech_wav(&long, 10.0)?;
    let talk = alice
        .command()
        .args(["talk", &room, "--wav", long.to_str().unwrap_or_default()])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let (started, _) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "audio" && e["frame_index"].as_u64().is_some_and(|i| i >= 100)
    })?;
    let session = started["session_id"].clone();
    link.cut();
    let cut = Instant::now();

    // Elsewhere the floor is freed by the lease, and carol can talk.
    let (ended, _) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "talk_ended" && e["session_id"] == session
    })?;
    let freed = cut.elapsed();
    assert_eq!(ended["reason"], "lease_expired", "ended: {ended}");
    let short = root.path().join("short.wav");
    speech_wav(&short, 2.0)?;
    // Carol's client starts now and may still see alice's last messages as
    // fresh for one lease: her press is refused as busy, and she presses
    // again, as a person would.
    let mut busy = 0;
    let carols = loop {
        let out = carol
            .command()
            .args(["talk", &room, "--wav", short.to_str().unwrap_or_default()])
            .output()?;
        if out.status.code() == Some(8) && busy < 5 {
            busy += 1;
            continue;
        }
        anyhow::ensure!(
            out.status.success(),
            "carol's talk: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        break last_json_line(&out.stdout)?;
    };
    let (saved, _) = wait_for(&listener.rx, Duration::from_secs(30), |e| {
        e["event"] == "saved" && e["session_id"] == carols["session_id"]
    })?;
    assert!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "carol's talk in the outage: {saved}"
    );
    // The rest of the outage (a fault of fixed length).
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(cut.elapsed())).await;
    link.restore();
    let restored = Instant::now();
    let first = talk.wait_with_output()?;
    let first = last_json_line(&first.stdout).context("alice's summary")?;
    eprintln!("alice's cut talk: {first}");

    // Alice, back, is heard again.
    let next = alice.ok(&["talk", &room, "--wav", short.to_str().unwrap_or_default()])?;
    let (saved, _) = wait_for(&listener.rx, Duration::from_secs(60), |e| {
        e["event"] == "saved" && e["session_id"] == next["session_id"]
    })?;
    assert!(
        saved["samples"].as_u64().unwrap_or(0) >= 90_000,
        "saved: {saved}"
    );
    eprintln!(
        "talker cut: her talk ended elsewhere {} ms after the cut (lease); \
         carol's press refused as busy {busy} time(s); \
         bob heard her next talk {} ms after the link came back",
        freed.as_millis(),
        restored.elapsed().as_millis()
    );
    listener.stop()?;
    // Every talk posted exactly once: alice's cut one from her outbox.
    let posted = voice_messages(&hs, &bob, &room).await?;
    for talk in [&first, &carols, &next] {
        let n = times_posted(&posted, talk);
        assert_eq!(n, 1, "talk {} posted {n} times", talk["session_id"]);
    }
    Ok(())
}
