//! The CLI's failures against a real Synapse: each has a clear message and
//! its own exit code (wrong password 4, unknown room 5, not a walkie group 6,
//! not signed in 9, homeserver unreachable 3).
#![recursion_limit = "256"]

use anyhow::Result;
use walkie_tests::Synapse;

mod common;
use common::*;

fn code_and_message(cli: &Cli, args: &[&str]) -> Result<(Option<i32>, String)> {
    let out = cli.command().args(args).output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_have_clear_messages_and_distinct_exit_codes() -> Result<()> {
    let mut hs = Synapse::start().await?;
    let root = tempfile::tempdir()?;
    let a = hs.register("alice").await?;
    let alice = Cli::new(root.path(), "alice");

    let (code, msg) = code_and_message(&alice, &["status", "!x:localhost"])?;
    assert_eq!(code, Some(9), "{msg}");
    assert!(msg.contains("walkie login"), "{msg}");

    // A wrong password, piped in on standard input.
    let mut wrong = alice
        .command()
        .args(["login", "--homeserver", &hs.url(), "--user", "alice"])
        .env_remove("WALKIE_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = wrong.stdin.take() {
        use std::io::Write;
        stdin.write_all(b"wrong\n")?;
    }
    let out = wrong.wait_with_output()?;
    let (code, msg) = (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert_eq!(code, Some(4), "{msg}");
    assert!(msg.contains("wrong user name or password"), "{msg}");

    let dead = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let out = alice
        .command()
        .env("WALKIE_PASSWORD", "x")
        .args([
            "login",
            "--homeserver",
            &format!("http://127.0.0.1:{dead}"),
            "--user",
            "alice",
        ])
        .output()?;
    let msg = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{msg}");

    // The command line takes no password (other local users can read it).
    let (code, msg) = code_and_message(
        &alice,
        &["login", "--user", "@alice:localhost", "--password", "x"],
    )?;
    assert_eq!(code, Some(2), "{msg}");
    assert!(msg.contains("--password"), "{msg}");

    login(&hs, &alice, &a)?;
    let (code, msg) = code_and_message(&alice, &["enable", "!unknown:localhost"])?;
    assert_eq!(code, Some(5), "{msg}");
    assert!(msg.contains("unknown room"), "{msg}");

    // An encrypted room that is not a walkie group.
    let (status, created) = raw_api(
        &hs,
        reqwest::Method::POST,
        &a.access_token,
        "/_matrix/client/v3/createRoom",
        serde_json::json!({"preset": "private_chat", "initial_state": [{
            "type": "m.room.encryption", "state_key": "",
            "content": {"algorithm": "m.megolm.v1.aes-sha2"}
        }]}),
    )
    .await?;
    anyhow::ensure!(status.is_success(), "createRoom: {status}");
    let room = created["room_id"].as_str().unwrap_or_default().to_owned();
    let (code, msg) = code_and_message(&alice, &["consent", &room, "--for", "15m"])?;
    assert_eq!(code, Some(6), "{msg}");
    assert!(msg.contains("not a walkie group"), "{msg}");

    // Enabling it makes it one; then consent works and status shows it.
    alice.ok(&["enable", &room])?;
    alice.ok(&["consent", &room, "--for", "15m"])?;
    let status = alice.ok(&["status", &room])?;
    let remaining = status["devices"][0]["remaining_ms"].as_u64().unwrap_or(0);
    assert!(
        (14 * 60_000..=15 * 60_000).contains(&remaining),
        "status: {status}"
    );
    alice.ok(&["consent", &room, "--revoke"])?;
    let status = alice.ok(&["status", &room])?;
    assert_eq!(
        status["devices"].as_array().map(Vec::len),
        Some(0),
        "status: {status}"
    );

    // The homeserver down: a command says so at once, it does not hang.
    hs.kill()?;
    let (code, msg) = code_and_message(&alice, &["status", &room])?;
    assert_eq!(code, Some(3), "{msg}");
    assert!(msg.contains("cannot be reached"), "{msg}");
    hs.restart().await?;

    // Sign out: the local data is gone, and we are signed out.
    alice.ok(&["logout"])?;
    assert!(!alice.dir.exists());
    let (code, _) = code_and_message(&alice, &["rooms"])?;
    assert_eq!(code, Some(9));
    Ok(())
}
