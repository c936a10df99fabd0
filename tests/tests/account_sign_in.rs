//! `walkie_core::Account` against a real Synapse: signing in again from the
//! same data directory reuses the device (and its keys) instead of piling up
//! devices, and a wrong password is reported as such.
#![recursion_limit = "256"]

use anyhow::Result;
use walkie_core::{store_key::Fallback, Account, AccountError, SignInRequest};
use walkie_tests::Synapse;

fn request(hs: &Synapse, user: &str, password: &str) -> SignInRequest {
    SignInRequest {
        server: hs.url(),
        user: user.to_owned(),
        password: password.to_owned(),
        device_display_name: "walkie test".to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_again_from_the_same_store_keeps_the_device() -> Result<()> {
    let hs = Synapse::start().await?;
    let dave = hs.register("dave").await?;
    let store = tempfile::tempdir()?;
    let first = Account::sign_in(
        store.path(),
        &request(&hs, &dave.user_id, &dave.password),
        Fallback::File,
    )
    .await?;
    let device = first.device_id();
    let token = first.client().access_token().unwrap_or_default();
    drop(first);

    let second = Account::sign_in(
        store.path(),
        &request(&hs, &dave.user_id, &dave.password),
        Fallback::File,
    )
    .await?;
    assert_eq!(
        second.device_id(),
        device,
        "a second sign-in made a new device"
    );
    assert_eq!(second.user_id(), "@dave:localhost");

    // The homeserver lists the registration's device and exactly one of ours.
    let devices = hs
        .get_json("/_matrix/client/v3/devices", &dave.access_token)
        .await?;
    let ours: Vec<_> = devices["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["device_id"] != dave.device_id.as_str())
        .collect();
    assert_eq!(ours.len(), 1, "devices: {devices}");
    assert_eq!(ours[0]["device_id"], device.as_str());
    assert!(!token.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_says_so() -> Result<()> {
    let hs = Synapse::start().await?;
    let erin = hs.register("erin").await?;
    let store = tempfile::tempdir()?;
    match Account::sign_in(
        store.path(),
        &request(&hs, "erin", "not-the-password"),
        Fallback::File,
    )
    .await
    {
        Err(AccountError::WrongPassword { user }) => assert_eq!(user, "erin"),
        other => panic!("expected WrongPassword, got {other:?}"),
    }
    // And the right one still works afterwards.
    let account = Account::sign_in(
        store.path(),
        &request(&hs, "erin", &erin.password),
        Fallback::File,
    )
    .await?;
    assert_eq!(account.user_id(), erin.user_id);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_homeserver_is_reported_as_unreachable() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let store = tempfile::tempdir()?;
    let req = SignInRequest {
        server: format!("http://127.0.0.1:{port}"),
        user: "frank".into(),
        password: "pw".into(),
        device_display_name: "walkie test".into(),
    };
    let err = Account::sign_in(store.path(), &req, Fallback::File)
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(AccountError::Unreachable { .. } | AccountError::Http(_))
        ),
        "expected unreachable, got {err:?}"
    );
    Ok(())
}
