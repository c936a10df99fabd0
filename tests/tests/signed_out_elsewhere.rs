//! The access token is revoked on the server (issue 13), in both ways a
//! user does it from another client: bob's listener is signed out with its
//! own token (`/logout`), or its device is deleted from bob's other session
//! (the session list, password re-entered). The listener says so
//! (`signed_out`) and exits with the CLI's not-signed-in code; it does not
//! retry (a handful of /sync requests after the revocation, no loop); a
//! later command exits the same way at once.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use walkie_tests::{Registered, Synapse};

mod common;
use common::*;

/// The CLI's exit code for "not signed in" (`walkie_cli::exit`).
const NOT_SIGNED_IN: i32 = 9;

/// How bob's listener loses its access token.
#[derive(Clone, Copy, Debug)]
enum Revocation {
    /// Signed out with its own token.
    Logout,
    /// Its device deleted from another session of bob's.
    DeviceDeleted,
}

/// Deletes `cli`'s device from bob's other session (`other`: the session
/// registration made), answering the password challenge as a user does.
/// Returns how many lines Synapse's log had before, as [`revoke_token`].
async fn delete_device_elsewhere(hs: &Synapse, cli: &Cli, other: &Registered) -> Result<usize> {
    let (_, me) = raw_api(
        hs,
        Method::GET,
        &access_token(cli)?,
        "/_matrix/client/v3/account/whoami",
        json!({}),
    )
    .await?;
    let device = me["device_id"].as_str().context("whoami names no device")?;
    ensure!(device != other.device_id, "two sessions expected");
    let before = homeserver_log_lines(hs)?;
    let path = format!("/_matrix/client/v3/devices/{device}");
    let (status, challenge) =
        raw_api(hs, Method::DELETE, &other.access_token, &path, json!({})).await?;
    ensure!(
        status == StatusCode::UNAUTHORIZED,
        "deleting a device asks for the password first, got {status}"
    );
    let auth = json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": other.user_id},
        "password": other.password,
        "session": challenge["session"],
    });
    let (status, _) = raw_api(
        hs,
        Method::DELETE,
        &other.access_token,
        &path,
        json!({ "auth": auth }),
    )
    .await?;
    ensure!(status.is_success(), "device deletion: {status}");
    Ok(before)
}

async fn signed_out_elsewhere(how: Revocation) -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair {
        bob, bob_r, room, ..
    } = pair_in_group(&hs, root.path(), &[]).await?;
    let out = root.path().join("out");
    let (mut listener, rx) = bob.listen(&[
        &room,
        "--out",
        out.to_str().unwrap_or_default(),
        "--timeout",
        "120",
    ])?;

    // Signed out from elsewhere: the token is gone on the server.
    let log_before = match how {
        Revocation::Logout => revoke_token(&hs, &access_token(&bob)?).await?,
        Revocation::DeviceDeleted => delete_device_elsewhere(&hs, &bob, &bob_r).await?,
    };
    let revoked = Instant::now();

    let (event, _) = wait_for(&rx, Duration::from_secs(60), |e| e["event"] == "signed_out")?;
    let waited = revoked.elapsed();
    let exit = loop {
        if let Some(status) = listener.try_wait()? {
            break status;
        }
        ensure!(
            revoked.elapsed() < Duration::from_secs(70),
            "the listener did not exit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "{how:?}: listener: {event} after {} ms, exit {exit}",
        waited.as_millis()
    );
    assert_eq!(exit.code(), Some(NOT_SIGNED_IN), "listener exit: {exit}");
    // No retry loop: the requests the listener made with the dead token.
    let after = sync_requests_since(&hs, log_before)?;
    eprintln!("/sync requests after the revocation: {}", after.len());
    assert!(
        after.len() <= 3,
        "{} /sync requests: {after:#?}",
        after.len()
    );

    // A later command says the same at once.
    let started = Instant::now();
    let out = bob.command().args(["status", &room]).output()?;
    eprintln!(
        "status after sign-out: exit {:?} in {} ms",
        out.status.code(),
        started.elapsed().as_millis()
    );
    assert_eq!(
        out.status.code(),
        Some(NOT_SIGNED_IN),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_signs_the_cli_out_without_retrying() -> Result<()> {
    signed_out_elsewhere(Revocation::Logout).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_device_signs_the_cli_out_without_retrying() -> Result<()> {
    signed_out_elsewhere(Revocation::DeviceDeleted).await
}
