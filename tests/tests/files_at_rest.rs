//! At rest (issue 10): after sign-in, a group, consent and a talk, every
//! directory under each CLI's data directory is 0700 and every file 0600 —
//! the matrix-sdk store with the device's keys, the session file, the
//! outbox journal — so another local user cannot copy the device; and the
//! crypto store itself does not open without its passphrase (here in the
//! CLI's 0600 fallback file, as on a machine without a Secret Service).
//! With a Secret Service (gnome-keyring on a private bus) the CLI keeps its
//! session and store passphrase there: after sign-in, a talk, a killed
//! listener and sign-out, no file under its data directory holds the access
//! token, the store passphrase, the recovery key its first sign-in showed
//! or a recording's plaintext.
#![recursion_limit = "256"]

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{ensure, Context, Result};
use walkie_tests::{secret_service::SecretService, speech_wav, Synapse};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_keyring_no_secret_or_audio_is_in_a_file() -> Result<()> {
    let hs = Synapse::start().await?;
    let secrets = SecretService::start()?;
    let root = tempfile::tempdir()?;
    let (a, b) = (hs.register("alice").await?, hs.register("bob").await?);
    let alice = Cli::new(root.path(), "alice");
    let bob = Cli::new(root.path(), "bob");
    login(&hs, &bob, &b)?;
    let with_keyring = || {
        let mut cmd = alice.command();
        cmd.envs(secrets.env());
        cmd
    };
    let mut cmd = with_keyring();
    cmd.env("WALKIE_PASSWORD", &a.password);
    let signed_in = ok_output(
        cmd,
        &["login", "--homeserver", &hs.url(), "--user", &a.user_id],
    )?;
    // The first sign-in made alice's identity and showed its recovery key
    // once; it must not be in any file, spaced as shown or not.
    let recovery_key = signed_in["recovery_key"]
        .as_str()
        .context("the first sign-in shows no recovery key")?
        .to_owned();
    let recovery_key_unspaced: String = recovery_key.split_whitespace().collect();
    let dir = alice.dir.canonicalize()?;
    let lookup = |name: String| secrets.lookup(&[("service", "walkie"), ("username", &name)]);
    let saved = lookup(format!("cli-session {}", dir.display()))?
        .context("the session is not in the keyring")?;
    let saved: serde_json::Value = serde_json::from_str(&saved)?;
    let token = saved["session"]["tokens"]["access_token"]
        .as_str()
        .or_else(|| saved["session"]["access_token"].as_str())
        .context("no access token in the saved session")?
        .to_owned();
    let passphrase = lookup(format!("store-passphrase {}", alice.dir.display()))?
        .context("the store passphrase is not in the keyring")?;
    ensure!(!alice.dir.join("session.json").exists(), "a session file");

    // A group; bob's talk reaches alice's listener, which is then killed
    // (a crash); alice talks.
    let room = ok_output(
        with_keyring(),
        &["create", "At rest", "--invite", &b.user_id],
    )?;
    let room = room["room_id"].as_str().context("no room id")?.to_owned();
    bob.ok(&["join", &room])?;
    ok_output(with_keyring(), &["consent", &room, "--for", "1h"])?;
    bob.ok(&["consent", &room, "--for", "1h"])?;
    let out = root.path().join("out");
    let (mut listener, rx) = spawn_listener(
        with_keyring(),
        &[&room, "--out", out.to_str().unwrap_or_default()],
    )?;
    let speech = root.path().join("speech.wav");
    speech_wav(&speech, 1.0)?;
    let bobs = bob.ok(&["talk", &room, "--wav", speech.to_str().unwrap_or_default()])?;
    wait_for(&rx, std::time::Duration::from_secs(60), |e| {
        e["event"] == "saved" && e["session_id"] == bobs["session_id"]
    })?;
    listener.kill()?;
    listener.wait()?;
    let talked = ok_output(
        with_keyring(),
        &["talk", &room, "--wav", speech.to_str().unwrap_or_default()],
    )?;
    ensure!(talked["session_id"].is_string(), "alice's talk: {talked}");

    let secrets_and_audio: Vec<&[u8]> = [
        token.as_bytes(),
        passphrase.as_bytes(),
        recovery_key.as_bytes(),
        recovery_key_unspaced.as_bytes(),
    ]
    .into_iter()
    .chain(PLAINTEXT_AUDIO)
    .collect();
    // (The listener's saved talks are WAV files by request, in `--out`,
    // outside the data directory.)
    let leaks = files_holding(&alice.dir, &secrets_and_audio)?;
    ensure!(leaks.is_empty(), "in alice's data directory: {leaks:#?}");

    // Sign-out takes the keyring entries and the directory away.
    ok_output(with_keyring(), &["logout"])?;
    ensure!(!alice.dir.exists(), "the data directory is still there");
    ensure!(
        lookup(format!("cli-session {}", dir.display()))?.is_none(),
        "the session is still in the keyring"
    );
    Ok(())
}
