//! A listening device's syncs that change nothing leave its Olm account on
//! disk alone: the matrix-sdk-crypto fix Walkie carries
//! (`third_party/README.md`). During a later talk the listener runs a
//! `/sync` response through matrix-sdk for every 20 ms message; matrix-sdk
//! 0.18.0 as published re-encrypted and rewrote the account for each one
//! (and re-derived the public half of every one-time key to do it).
//! Olm-encrypted messages (a talk's keys, a room key) still take the
//! account, as upstream does.

use std::{path::Path, time::Duration};

use anyhow::{ensure, Context, Result};
use walkie_tests::Synapse;

mod common;
use common::*;

/// The crypto store's file under a CLI's data directory.
fn crypto_store(dir: &Path) -> Result<std::path::PathBuf> {
    walkie_tests::files_under(dir)?
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == "matrix-sdk-crypto.sqlite3")
        })
        .context("no matrix-sdk-crypto.sqlite3 under the data directory")
}

/// The Olm account's row as stored (a passphrase-encrypted pickle with a
/// fresh nonce each time it is written).
fn stored_account(store: &Path) -> Result<Vec<u8>> {
    let db = rusqlite::Connection::open(store)?;
    Ok(
        db.query_row("SELECT value FROM kv WHERE key = 'account'", [], |row| {
            row.get(0)
        })?,
    )
}

fn log_lines(hs: &Synapse) -> Result<usize> {
    Ok(std::fs::read_to_string(hs.dir().join("homeserver.log"))?
        .lines()
        .count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listeners_syncs_during_a_talk_leave_its_olm_account_unwritten() -> Result<()> {
    const SAVED: Duration = Duration::from_secs(60);
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (
        Pair {
            alice, bob, room, ..
        },
        listener,
        speech,
    ) = pair_listening(&hs, root.path(), 3.0).await?;
    let speech = speech.to_str().unwrap_or_default();

    // The first talk sets up the Olm session: alice claims one of bob's
    // one-time keys, so his account changes (and makes a new key).
    let first = alice.ok(&["talk", &room, "--wav", speech])?;
    wait_for(&listener.rx, SAVED, |e| {
        e["event"] == "saved" && e["session_id"] == first["session_id"]
    })?;

    // The second talk: the account is read from disk every 50 ms while it
    // lasts. Olm messages still take it (the talk's keys, a room key), a
    // sync that only carries sealed audio must not.
    let store = crypto_store(&bob.dir)?;
    let log_before = log_lines(&hs)?;
    let mut talk = alice
        .command()
        .args(["talk", &room, "--wav", speech])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let (mut samples, mut writes) = (0, 0);
    let mut last = stored_account(&store)?;
    while talk.try_wait()?.is_none() {
        // A sampling period, not a wait for an event.
        std::thread::sleep(Duration::from_millis(50));
        let now = stored_account(&store)?;
        samples += 1;
        if now != last {
            writes += 1;
            last = now;
        }
    }
    let second = last_json_line(&talk.wait_with_output()?.stdout)?;
    wait_for(&listener.rx, SAVED, |e| {
        e["event"] == "saved" && e["session_id"] == second["session_id"]
    })?;
    let bobs_syncs = sync_requests_since(&hs, log_before)?
        .iter()
        .filter(|l| l.contains("{@bob:"))
        .count();
    eprintln!(
        "bob's account written between {writes} of {samples} reads 50 ms apart, \
         during {bobs_syncs} /sync responses"
    );
    ensure!(
        samples >= 40 && bobs_syncs >= 50,
        "a 3 s talk gave {samples} reads and {bobs_syncs} syncs of bob's"
    );
    // As published, matrix-sdk-crypto wrote it for every sync: a change
    // between nearly every two reads.
    ensure!(
        writes * 5 <= samples,
        "bob's Olm account was written between {writes} of {samples} reads"
    );
    listener.stop()
}
