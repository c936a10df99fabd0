//! Recordings out of the chat (issue 14, MSC4002's "could litter chat
//! history"): alice sets her group's recordings to `thread`, which posts the
//! thread's root once (setting it again reuses it). Three talks, alice's
//! and bob's, are posted into that thread: read back from the homeserver,
//! every voice message carries an `m.thread` relation to the root (in the
//! clear, as the homeserver and Element see it), the homeserver's thread
//! list holds that root with three replies, and nothing else encrypted is
//! left in the main timeline but the root itself.
#![recursion_limit = "256"]

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_talks_in_thread_mode_are_all_in_one_thread() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = pair_in_group(&hs, root.path(), &[]).await?;
    let set = alice.ok(&["recordings", &room, "thread"])?;
    ensure!(set["recordings"] == "thread", "set: {set}");
    let thread = set["thread_root"]
        .as_str()
        .context("no thread root")?
        .to_owned();
    let again = alice.ok(&["recordings", &room, "thread"])?;
    ensure!(
        again["thread_root"] == thread.as_str(),
        "a second root: {again}"
    );

    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 1.0)?;
    let wav = speech.to_str().unwrap_or_default();
    let mut sessions = Vec::new();
    for cli in [&alice, &bob, &alice] {
        let talk = cli.ok(&["talk", &room, "--wav", wav])?;
        ensure!(
            talk["recording"]["posted"] == true,
            "not posted at once: {talk}"
        );
        sessions.push(talk["session_id"].clone());
    }

    // The room as the homeserver serves it to bob's device.
    let token = access_token(&bob)?;
    let (status, page) = raw_api(
        &hs,
        reqwest::Method::GET,
        &token,
        &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=200"),
        Value::Null,
    )
    .await?;
    ensure!(status.is_success(), "messages: {status}");
    let encrypted: Vec<&Value> = page["chunk"]
        .as_array()
        .context("no chunk")?
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .collect();
    let (in_thread, outside): (Vec<&Value>, Vec<&Value>) = encrypted.iter().partition(|e| {
        let rel = &e["content"]["m.relates_to"];
        rel["rel_type"] == "m.thread" && rel["event_id"] == thread.as_str()
    });
    ensure!(
        in_thread.len() == 3,
        "{} events in the thread: {in_thread:#?}",
        in_thread.len()
    );
    let outside: Vec<&&Value> = outside
        .iter()
        .filter(|e| e["event_id"] != thread.as_str())
        .collect();
    ensure!(
        outside.is_empty(),
        "encrypted events in the main timeline: {outside:#?}"
    );

    // The homeserver's thread list: the one root, three replies.
    let (status, threads) = raw_api(
        &hs,
        reqwest::Method::GET,
        &token,
        &format!("/_matrix/client/v1/rooms/{room}/threads"),
        Value::Null,
    )
    .await?;
    ensure!(status.is_success(), "threads: {status}");
    let roots = threads["chunk"].as_array().context("no threads")?;
    ensure!(roots.len() == 1, "threads: {threads:#}");
    ensure!(
        roots[0]["event_id"] == thread.as_str(),
        "root: {}",
        roots[0]
    );
    let count = &roots[0]["unsigned"]["m.relations"]["m.thread"]["count"];
    ensure!(count == 3, "thread count {count}");

    // The three voice messages are the three talks (decrypted as bob).
    let posted = voice_messages(&hs, &bob, &room).await?;
    let mut found: Vec<Value> = posted
        .iter()
        .map(|(c, _)| c["org.matrix.msc4002.talk"]["session_id"].clone())
        .collect();
    found.sort_by_key(|v| v.to_string());
    sessions.sort_by_key(|v| v.to_string());
    ensure!(
        found == sessions,
        "voice messages {found:?} for talks {sessions:?}"
    );
    eprintln!("thread {thread}: 3 talks in it, none in the main timeline");
    Ok(())
}
