//! Two federating homeservers (issue 13): alice on one, bob on the other,
//! each server's federation listener behind a TCP proxy that delays every
//! byte by the given one-way time (`walkie_tests::delay_proxy`). The room is
//! created on alice's server and joined from bob's; bob's consent crosses
//! over; alice's live talk reaches bob's device whole (the saved talk
//! matches her speech by correlation, as the device tests judge it).
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use walkie_audio::{similarity::normalised_cross_correlation, wav};
use walkie_tests::{
    delay_proxy::DelayProxy,
    speech_wav,
    synapse::{Federation, Synapse},
};

mod common;
use common::*;

/// Two Synapses that federate, each dialled through a delay proxy.
struct Pair {
    a: Synapse,
    b: Synapse,
    _proxies: [DelayProxy; 2],
}

async fn federated_pair(one_way: Duration) -> Result<Pair> {
    let (mut fa, mut fb) = (
        Federation::on_free_port(None)?,
        Federation::on_free_port(None)?,
    );
    let pa = DelayProxy::start(fa.listen_port, one_way).await?;
    let pb = DelayProxy::start(fb.listen_port, one_way).await?;
    fa.server_name = format!("127.0.0.1:{}", pa.port());
    fb.server_name = format!("127.0.0.1:{}", pb.port());
    let a = Synapse::start_federating(&fa).await?;
    let b = Synapse::start_federating(&fb).await?;
    Ok(Pair {
        a,
        b,
        _proxies: [pa, pb],
    })
}

/// Retries `f` until it succeeds or `limit` passes (federation settles in
/// its own time: an invite, a join, a state event crossing over).
fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("{what} within {limit:?}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// alice (server A) talks 4 s to bob (server B); returns how long the
/// talk took to reach bob's device (first frame) and checks it whole.
async fn live_talk_across(one_way: Duration) -> Result<()> {
    let pair = federated_pair(one_way).await?;
    let root = tempfile::tempdir()?;
    let (a, b) = (
        pair.a.register("alice").await?,
        pair.b.register("bob").await?,
    );
    let (alice, bob) = (Cli::new(root.path(), "alice"), Cli::new(root.path(), "bob"));
    login(&pair.a, &alice, &a)?;
    login(&pair.b, &bob, &b)?;
    let room = alice.ok(&["create", "Across servers", "--invite", &b.user_id])?;
    let room = room["room_id"].as_str().context("room id")?.to_owned();
    let limit = Duration::from_secs(60) + one_way * 20;
    until(limit, "bob joins over federation", || {
        bob.ok(&["join", &room])
    })?;
    alice.ok(&["consent", &room, "--for", "1h"])?;
    bob.ok(&["consent", &room, "--for", "1h"])?;
    // Bob's consent crossed over: alice's client counts his device.
    until(limit, "bob's consent reaches alice", || {
        let status = alice.ok(&["status", &room])?;
        let counted = status["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d["user_id"] == b.user_id.as_str());
        ensure!(counted, "not yet: {status}");
        Ok(())
    })?;

    let out = root.path().join("out");
    let listener = CountingListener::start(&bob, &room, &out)?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 4.0)?;
    let talk = alice.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    let (saved, seen) = wait_for(&listener.rx, limit, |e| {
        e["event"] == "saved" && e["session_id"] == talk["session_id"]
    })?;
    let started = seen
        .iter()
        .find(|e| e["event"] == "talk_started")
        .context("no talk_started")?;
    let claim_ms = started["received_ms"].as_u64().unwrap_or(0) as i64
        - started["start_ts"].as_u64().unwrap_or(0) as i64;
    for e in seen.iter().filter(|e| e["event"] == "dropped") {
        eprintln!("bob dropped: {e}");
    }
    let first_frame = seen
        .iter()
        .filter(|e| e["event"] == "audio")
        .map(|e| e["frame_index"].as_u64().unwrap_or(0))
        .min();
    eprintln!("first frame bob accepted: {first_frame:?}");
    let heard = wav::read_wav_mono_48k(saved["path"].as_str().context("path")?)?;
    let source = wav::read_wav_mono_48k(&speech)?;
    let (corr, lag) = normalised_cross_correlation(&source, &heard, 48_000);
    eprintln!(
        "one-way {} ms: press -> claim at bob {claim_ms} ms; saved {} samples, correlation {corr:.3} at lag {lag}",
        one_way.as_millis(),
        heard.len()
    );
    ensure!(
        heard.len() as f64 >= 0.97 * source.len() as f64,
        "bob saved {} of {} samples",
        heard.len(),
        source.len()
    );
    ensure!(
        corr >= 0.9,
        "bob's talk does not match alice's speech: {corr:.3}"
    );
    listener.stop()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_talk_crosses_two_homeservers() -> Result<()> {
    live_talk_across(Duration::ZERO).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_talk_crosses_two_homeservers_one_second_apart() -> Result<()> {
    live_talk_across(Duration::from_secs(1)).await
}
