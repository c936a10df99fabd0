//! Unplayed talks are kept encrypted with a key from the OS keyring: with a
//! real Secret Service (gnome-keyring on a private bus), `walkie listen
//! --play --keep-unplayed` creates the key in the keyring (never in a file),
//! opens the same store again after a restart, and refuses with a clear
//! error when the keyring holds another key.
#![recursion_limit = "256"]

use anyhow::{Context, Result};
use walkie_tests::{secret_service::SecretService, Synapse};

mod common;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_key_lives_in_the_keyring_and_survives_restarts() -> Result<()> {
    let hs = Synapse::start().await?;
    let secrets = SecretService::start()?;
    let root = tempfile::tempdir()?;
    let people = users(&hs, root.path(), &["bob"]).await?;
    let (bob, _) = &people[0];
    let out = root.path().join("out");
    let args = [
        "--play",
        "--keep-unplayed",
        "--out",
        out.to_str().unwrap_or_default(),
        "--timeout",
        "60",
    ];
    let start = || {
        let mut cmd = bob.command();
        cmd.envs(secrets.env());
        spawn_listener(cmd, &args)
    };
    let (mut first, _) = start()?;
    let name = format!("unplayed-talks-key {}", bob.dir.display());
    let key = secrets
        .lookup(&[("service", "walkie"), ("username", &name)])?
        .context("no key in the keyring")?;
    assert_eq!(key.len(), 44, "a base64 256-bit key: {key:?}");
    assert!(bob.dir.join("unplayed/key-check").exists());
    // The key is nowhere on disk in the clear.
    for entry in walkie_tests::files_under(&bob.dir)? {
        let bytes = std::fs::read(&entry)?;
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
            "key found in {}",
            entry.display()
        );
    }
    first.kill()?;
    first.wait()?;

    // A restart opens the same store with the same key.
    let (mut second, _) = start()?;
    assert_eq!(
        secrets.lookup(&[("service", "walkie"), ("username", &name)])?,
        Some(key)
    );
    second.kill()?;
    second.wait()?;

    // Another key in the keyring: refused, saying why, nothing touched.
    let mut store = secrets.command("secret-tool");
    store.args([
        "store",
        "--label=walkie",
        "service",
        "walkie",
        "username",
        &name,
    ]);
    store.stdin(std::process::Stdio::piped());
    let mut child = store.spawn()?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("secret-tool stdin")?;
        stdin.write_all(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")?;
    }
    assert!(child.wait()?.success());
    let mut cmd = bob.command();
    let output = cmd.envs(secrets.env()).arg("listen").args(args).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "listen started with the wrong key"
    );
    assert!(
        stderr.contains("key does not open"),
        "unclear error: {stderr}"
    );
    assert!(bob.dir.join("unplayed/key-check").exists());
    Ok(())
}
