//! The Synapse harness itself: a server that cannot start fails loudly with
//! its own log, and a started one registers users and stops on drop.
#![recursion_limit = "256"]

use anyhow::Result;
use serde_json::json;
use walkie_tests::Synapse;

#[tokio::test]
async fn a_synapse_that_cannot_start_fails_with_its_log() {
    // An unknown database engine makes Synapse exit during start-up.
    let err = match Synapse::start_with(json!({"database": {"name": "no-such-engine"}})).await {
        Ok(_) => panic!("Synapse started with a broken configuration"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("exited during start-up"),
        "unexpected error: {err}"
    );
    assert!(err.contains("--- synapse log ---"), "no log in: {err}");
    assert!(
        err.contains("no-such-engine"),
        "the log does not name the cause: {err}"
    );
}

#[tokio::test]
async fn registers_users_and_stops_when_dropped() -> Result<()> {
    let hs = Synapse::start().await?;
    let carol = hs.register("carol").await?;
    assert_eq!(carol.user_id, "@carol:localhost");
    let whoami = hs
        .get_json("/_matrix/client/v3/account/whoami", &carol.access_token)
        .await?;
    assert_eq!(whoami["user_id"], "@carol:localhost");
    let url = hs.url();
    drop(hs);
    // Stopped: nothing answers on its port any more.
    let gone = reqwest::get(format!("{url}/_matrix/client/versions")).await;
    assert!(gone.is_err(), "Synapse still answers after drop");
    Ok(())
}
