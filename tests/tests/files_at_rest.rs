//! At rest (issue 10): after sign-in, a group, consent and a talk, every
//! directory under each CLI's data directory is 0700 and every file 0600 —
//! the matrix-sdk store with the device's keys, the session file, the
//! outbox journal — so another local user cannot copy the device; and the
//! crypto store itself does not open without its passphrase (here in the
//! CLI's 0600 fallback file, as on a machine without a Secret Service).
#![recursion_limit = "256"]

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{ensure, Context, Result};
use walkie_tests::{speech_wav, Synapse};

mod common;
use common::*;

/// Every path under `dir` (and `dir` itself) whose mode lets anyone but
/// the owner in.
fn open_to_others(dir: &Path) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            found.push(format!(
                "{:o} {}",
                meta.permissions().mode() & 0o777,
                path.display()
            ));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_walkie_writes_is_private_to_the_user() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair {
        alice, bob, room, ..
    } = &pair_in_group(&hs, root.path(), &[]).await?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 1.0)?;
    alice.ok(&["talk", room, "--wav", speech.to_str().unwrap_or_default()])?;
    for cli in [alice, bob] {
        let open = open_to_others(&cli.dir)?;
        assert!(
            open.is_empty(),
            "readable by others under {}: {open:#?}",
            cli.dir.display()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crypto_store_does_not_open_without_its_passphrase() -> Result<()> {
    use matrix_sdk_base::crypto::store::CryptoStore;
    use walkie_core::matrix_sdk::SqliteCryptoStore;

    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let (alice, _) = users(&hs, root.path(), &["alice"])
        .await?
        .pop()
        .context("alice")?;
    let store = alice.dir.join("matrix-store");
    let file = walkie_core::store_key::file_path(&alice.dir);
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    let passphrase = std::fs::read_to_string(&file)?;

    // With its passphrase the device's Olm account loads…
    let opened = SqliteCryptoStore::open(&store, Some(passphrase.trim())).await?;
    ensure!(
        opened.load_account().await?.is_some(),
        "no account in the store"
    );
    drop(opened);
    // …with another, the store refuses to open; with none, nothing in it
    // reads as an account.
    assert!(
        SqliteCryptoStore::open(&store, Some("not the passphrase"))
            .await
            .is_err(),
        "the store opened with a wrong passphrase"
    );
    let without = match SqliteCryptoStore::open(&store, None).await {
        Err(_) => None,
        Ok(s) => s.load_account().await.ok().flatten(),
    };
    assert!(
        without.is_none(),
        "the device's keys read without a passphrase"
    );
    Ok(())
}
