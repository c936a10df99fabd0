//! Emoji (SAS) verification of this device against another device of the
//! same user (another Walkie, Element): one side requests, the other
//! accepts, both show the same seven emoji, the user confirms on both, and
//! the side that holds the account's self-signing key signs the other.
//! Needs the engine's sync loop running: the steps arrive as to-device
//! messages. matrix-sdk runs the protocol; this module only sequences it.

use futures_util::StreamExt;
use matrix_sdk::{
    encryption::verification::{SasState, SasVerification, Verification, VerificationRequestState},
    ruma::{
        events::key::verification::request::ToDeviceKeyVerificationRequestEvent, OwnedDeviceId,
    },
    Client,
};
use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

/// Why a verification did not complete.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("not signed in")]
    NotSignedIn,
    #[error("no device {0} is known on this account")]
    UnknownDevice(String),
    #[error("the verification was cancelled: {0}")]
    Cancelled(String),
    #[error("the other device does not offer emoji verification")]
    NoEmoji,
    #[error("the emoji did not match: the verification was cancelled")]
    Mismatch,
    #[error(transparent)]
    Matrix(#[from] matrix_sdk::Error),
    #[error("the verification flow ended early")]
    Ended,
}

/// One of the seven emoji to compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Emoji {
    pub symbol: String,
    pub description: String,
}

/// Asks this user's device `device` to verify this one; returns once the
/// emoji exchange has started.
pub async fn request(client: &Client, device: &str) -> Result<SasVerification, VerifyError> {
    let user = client.user_id().ok_or(VerifyError::NotSignedIn)?.to_owned();
    let device_id = OwnedDeviceId::from(device);
    let other = client
        .encryption()
        .get_device(&user, &device_id)
        .await
        .map_err(|e| VerifyError::Matrix(e.into()))?
        .ok_or_else(|| VerifyError::UnknownDevice(device.to_owned()))?;
    let request = other.request_verification().await?;
    let mut changes = request.changes();
    loop {
        match request.state() {
            VerificationRequestState::Ready { .. } => break,
            VerificationRequestState::Cancelled(info) => {
                return Err(VerifyError::Cancelled(info.reason().to_owned()))
            }
            VerificationRequestState::Done => return Err(VerifyError::Ended),
            _ => {}
        }
        if changes.next().await.is_none() {
            return Err(VerifyError::Ended);
        }
    }
    request.start_sas().await?.ok_or(VerifyError::NoEmoji)
}

/// Waits for another device of this user to ask for verification, and
/// accepts it; returns once the emoji exchange has started. `listening` is
/// called once a request will be seen: tell the user to ask from the other
/// device then.
///
/// matrix-sdk ignores a request from a device whose keys it has not fetched
/// yet (a device signed in since this one last synced), so this device's
/// list of its own user's devices is fetched first (`/keys/query`).
pub async fn accept_next(
    client: &Client,
    listening: impl FnOnce(),
) -> Result<SasVerification, VerifyError> {
    let user = client.user_id().ok_or(VerifyError::NotSignedIn)?.to_owned();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handle = client.add_event_handler(move |ev: ToDeviceKeyVerificationRequestEvent| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((
                ev.sender,
                ev.content.from_device,
                ev.content.transaction_id.to_string(),
            ));
        }
    });
    if let Err(e) = client.encryption().request_user_identity(&user).await {
        tracing::warn!(error = %e, "this account's devices were not fetched; a request from a new one may be missed");
    }
    listening();
    let found = loop {
        let Some((sender, from_device, flow)) = rx.recv().await else {
            break None;
        };
        if sender != user {
            tracing::info!(%sender, "ignoring a verification request from another user");
            continue;
        }
        match client
            .encryption()
            .get_verification_request(&sender, &flow)
            .await
        {
            Some(request) => break Some(request),
            None => tracing::warn!(
                device = %from_device,
                "a verification request matrix-sdk dropped (that device's keys were not known yet): ask again from it"
            ),
        }
    };
    client.remove_event_handler(handle);
    let request = found.ok_or(VerifyError::Ended)?;
    request.accept().await?;
    let mut changes = request.changes();
    loop {
        match request.state() {
            VerificationRequestState::Transitioned {
                verification: Verification::SasV1(sas),
            } => {
                sas.accept().await?;
                return Ok(sas);
            }
            VerificationRequestState::Transitioned { .. } => return Err(VerifyError::NoEmoji),
            VerificationRequestState::Cancelled(info) => {
                return Err(VerifyError::Cancelled(info.reason().to_owned()))
            }
            VerificationRequestState::Done => return Err(VerifyError::Ended),
            _ => {}
        }
        if changes.next().await.is_none() {
            return Err(VerifyError::Ended);
        }
    }
}

/// Waits until both sides have exchanged keys and returns the emoji to show.
pub async fn emoji(sas: &SasVerification) -> Result<Vec<Emoji>, VerifyError> {
    let mut changes = sas.changes();
    loop {
        match sas.state() {
            SasState::KeysExchanged { .. } => {
                let emoji = sas.emoji().ok_or(VerifyError::NoEmoji)?;
                return Ok(emoji
                    .iter()
                    .map(|e| Emoji {
                        symbol: e.symbol.to_owned(),
                        description: e.description.to_owned(),
                    })
                    .collect());
            }
            SasState::Cancelled(info) => {
                return Err(VerifyError::Cancelled(info.reason().to_owned()))
            }
            SasState::Done { .. } | SasState::Confirmed => return Err(VerifyError::Ended),
            _ => {}
        }
        if changes.next().await.is_none() {
            return Err(VerifyError::Ended);
        }
    }
}

/// Confirms (the user saw the same emoji on both devices) or refuses, and
/// waits for the other side: `Ok` once both confirmed.
pub async fn finish(sas: &SasVerification, matches: bool) -> Result<(), VerifyError> {
    if !matches {
        sas.mismatch().await?;
        return Err(VerifyError::Mismatch);
    }
    let mut changes = sas.changes();
    sas.confirm().await?;
    loop {
        match sas.state() {
            SasState::Done { .. } => return Ok(()),
            SasState::Cancelled(info) => {
                return Err(VerifyError::Cancelled(info.reason().to_owned()))
            }
            _ => {}
        }
        if changes.next().await.is_none() {
            return Err(VerifyError::Ended);
        }
    }
}
