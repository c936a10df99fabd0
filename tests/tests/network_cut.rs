//! The network to one client drops for 10 s during a talk (issue 13). Bob's
//! listener reaches the homeserver through a proxy (`delay_proxy`) that is
//! cut 2 s into alice's 6 s talk and restored 10 s later. Bob's client
//! reconnects by itself (its sync loop backs off while the link is down)
//! and saves alice's next talk; nothing is posted twice.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use walkie_tests::{delay_proxy::DelayProxy, speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_off_for_10_s_reconnects_and_hears_the_next_talk() -> Result<()> {
    let hs = Synapse::start().await?;
    let port: u16 = hs
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("homeserver port")?;
    let link = DelayProxy::start(port, Duration::ZERO).await?;
    let root = tempfile::tempdir()?;
    let (a, b) = (hs.register("alice").await?, hs.register("bob").await?);
    let (alice, bob) = (Cli::new(root.path(), "alice"), Cli::new(root.path(), "bob"));
    login(&hs, &alice, &a)?;
    // Bob signs in through the proxy: every request of his goes over it.
    let mut cmd = bob.command();
    cmd.env("WALKIE_PASSWORD", &b.password);
    ok_output(
        cmd,
        &[
            "login",
            "--homeserver",
            &format!("http://127.0.0.1:{}", link.port()),
            "--user",
            &b.user_id,
        ],
    )?;
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
    // The outage itself (a fault of fixed length, not a wait for an event).
    tokio::time::sleep(Duration::from_secs(10)).await;
    link.restore();
    let restored = Instant::now();
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
        let n = posted
            .iter()
            .filter(|(c, _)| c["org.matrix.msc4002.talk"]["session_id"] == talk["session_id"])
            .count();
        assert_eq!(n, 1, "talk {} posted {n} times", talk["session_id"]);
    }
    listener.stop()
}
