//! `walkie server-info` against a real Synapse: a homeserver URL resolves
//! and lists its versions; a dead address exits with the "unreachable" code.
#![recursion_limit = "256"]

use std::process::Command;

use anyhow::{ensure, Result};
use walkie_tests::Synapse;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_info_lists_versions_of_a_real_homeserver() -> Result<()> {
    let hs = Synapse::start().await?;
    let out = Command::new(walkie_tests::cli_binary()?)
        .args(["server-info", &hs.url()])
        .output()?;
    ensure!(
        out.status.success(),
        "walkie failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        info["homeserver"].as_str().map(|s| s.trim_end_matches('/')),
        Some(hs.url().as_str())
    );
    let versions = info["versions"].as_array().cloned().unwrap_or_default();
    assert!(
        versions.iter().any(|v| v == "v1.1"),
        "no v1.1 in {versions:?}"
    );
    Ok(())
}

#[test]
fn unreachable_homeserver_exits_with_code_3_and_says_why() -> Result<()> {
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = Command::new(walkie_tests::cli_binary()?)
        .args(["server-info", &format!("http://127.0.0.1:{port}")])
        .output()?;
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1"), "unhelpful error: {err}");
    Ok(())
}
