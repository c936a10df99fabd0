//! The access token is revoked on the server (issue 13): bob's listener is
//! signed out from another client (`/logout` with its token). The listener
//! says so (`signed_out`) and exits with the CLI's not-signed-in code; it
//! does not retry (a handful of /sync requests after the revocation, no
//! loop); a later command exits the same way at once.
#![recursion_limit = "256"]

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use walkie_tests::Synapse;

mod common;
use common::*;

/// The CLI's exit code for "not signed in" (`walkie_cli::exit`).
const NOT_SIGNED_IN: i32 = 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_signs_the_cli_out_without_retrying() -> Result<()> {
    let hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let Pair { bob, room, .. } = pair_in_group(&hs, root.path(), &[]).await?;
    let out = root.path().join("out");
    let (mut listener, rx) = bob.listen(&[
        &room,
        "--out",
        out.to_str().unwrap_or_default(),
        "--timeout",
        "120",
    ])?;

    // Signed out from elsewhere: the token is gone on the server.
    let log_before = revoke_token(&hs, &access_token(&bob)?).await?;
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
        "listener: {event} after {} ms, exit {exit}",
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
