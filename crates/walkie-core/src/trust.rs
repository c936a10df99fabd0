//! Trust in devices and identities, through matrix-sdk's cross-signing:
//! setting up the account's identity at first sign-in (with a recovery
//! key), verifying this device (recovery key here, emoji in `verification`),
//! resetting the identity, and the verdict on whether another device may
//! hear or be heard: it must be signed by its owner's identity, and that
//! identity must not have changed without the local user accepting it.
//! The per-device consent signature (`signing_payload` of the protocol) is
//! made with this device's Ed25519 key ([`ConsentSigner`]) and checked
//! against the other device's published key.

use std::{collections::HashSet, path::Path};

use matrix_sdk::{
    encryption::{identities::Device, vodozemac},
    ruma::{
        api::client::uiaa::{AuthData, Password, UserIdentifier},
        OwnedDeviceId, OwnedUserId,
    },
    Client, SqliteCryptoStore,
};
use matrix_sdk_base::crypto::{olm::Account as OlmAccount, store::CryptoStore};
use serde::Serialize;
use thiserror::Error;

/// What went wrong setting up or checking trust.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error("the homeserver refused the cross-signing keys: {0}")]
    CrossSigning(String),
    #[error("setting up recovery failed: {0}")]
    Recovery(String),
    #[error("that recovery key does not open this account's secret storage: {0}")]
    WrongRecoveryKey(String),
    #[error("the recovery key was accepted, but this device is still not signed by the account's identity")]
    StillUnverified,
    #[error("the crypto store: {0}")]
    Store(String),
    #[error("this device has no Olm account in its store")]
    NoAccount,
}

/// This device's standing in its own account, as the panel and
/// `walkie verify` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnDeviceState {
    /// Signed by the account's identity: others' clients will talk to it.
    Verified,
    /// The account has an identity but has not signed this device: verify
    /// it with the recovery key or with emoji against another device.
    Unverified,
    /// The account has no cross-signing identity yet.
    NoIdentity,
}

/// Why a device that consents will not hear (or be heard by) this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// No device keys known for it (yet).
    NoKeys,
    /// Its owner's identity has not signed it (a device the homeserver or a
    /// thief added, or one its owner has not verified yet).
    NotSignedByOwner,
    /// Its owner's identity changed since this device first saw it, and the
    /// local user has not accepted the change.
    IdentityChanged,
    /// Its consent entry is not signed by that device's own key.
    BadConsentSignature,
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NoKeys => "no keys known for this device",
            Self::NotSignedByOwner => "not signed by its owner",
            Self::IdentityChanged => "its owner's identity changed",
            Self::BadConsentSignature => "its consent is not signed by the device",
        })
    }
}

/// Sets up trust right after a password sign-in: if the account has no
/// cross-signing identity, creates one (the password answers the
/// homeserver's interactive auth) and turns on recovery, returning the
/// recovery key, shown to the user once. If it has one, returns `None`; the
/// device then stays unverified until [`recover`] or an emoji verification.
pub async fn set_up_at_sign_in(
    client: &Client,
    password: &str,
) -> Result<Option<String>, TrustError> {
    let encryption = client.encryption();
    encryption.wait_for_e2ee_initialization_tasks().await;
    let Some(user) = client.user_id().map(ToOwned::to_owned) else {
        return Err(TrustError::CrossSigning("not signed in".into()));
    };
    let identity = encryption
        .request_user_identity(&user)
        .await
        .map_err(|e| TrustError::CrossSigning(e.to_string()))?;
    if identity.is_some() {
        return Ok(None);
    }
    if let Err(e) = encryption.bootstrap_cross_signing(None).await {
        let Some(uiaa) = e.as_uiaa_response() else {
            return Err(TrustError::CrossSigning(e.to_string()));
        };
        let mut auth = Password::new(UserIdentifier::from(&user), password.to_owned());
        auth.session = uiaa.session.clone();
        encryption
            .bootstrap_cross_signing(Some(AuthData::Password(auth)))
            .await
            .map_err(|e| TrustError::CrossSigning(e.to_string()))?;
    }
    let key = encryption
        .recovery()
        .enable()
        .await
        .map_err(|e| TrustError::Recovery(e.to_string()))?;
    tracing::info!(user = %user, "created the account's cross-signing identity and recovery");
    Ok(Some(key))
}

/// This device's standing (asks the homeserver for the own identity).
pub async fn own_device_state(client: &Client) -> Result<OwnDeviceState, TrustError> {
    let encryption = client.encryption();
    let Some(user) = client.user_id() else {
        return Ok(OwnDeviceState::NoIdentity);
    };
    let identity = encryption
        .request_user_identity(user)
        .await
        .map_err(|e| TrustError::CrossSigning(e.to_string()))?;
    if identity.is_none() {
        return Ok(OwnDeviceState::NoIdentity);
    }
    let device = encryption
        .get_own_device()
        .await
        .map_err(|e| TrustError::Store(e.to_string()))?;
    Ok(match device {
        Some(d) if d.is_cross_signed_by_owner() => OwnDeviceState::Verified,
        _ => OwnDeviceState::Unverified,
    })
}

/// Verifies this device with the account's recovery key: fetches the
/// cross-signing keys from secret storage and signs this device.
pub async fn recover(client: &Client, recovery_key: &str) -> Result<(), TrustError> {
    let encryption = client.encryption();
    encryption.wait_for_e2ee_initialization_tasks().await;
    encryption
        .recovery()
        .recover(recovery_key.trim())
        .await
        .map_err(|e| TrustError::WrongRecoveryKey(e.to_string()))?;
    match own_device_state(client).await? {
        OwnDeviceState::Verified => Ok(()),
        _ => Err(TrustError::StillUnverified),
    }
}

/// Replaces the account's cross-signing identity with a new one (lost
/// recovery key, compromised keys) and returns the new recovery key. Every
/// other device of the account becomes unverified, and other users see
/// "identity changed" until they accept it.
pub async fn reset_identity(client: &Client, password: &str) -> Result<String, TrustError> {
    let recovery = client.encryption().recovery();
    let Some(user) = client.user_id().map(ToOwned::to_owned) else {
        return Err(TrustError::CrossSigning("not signed in".into()));
    };
    if let Some(handle) = recovery
        .reset_identity()
        .await
        .map_err(|e| TrustError::CrossSigning(e.to_string()))?
    {
        let mut auth = Password::new(UserIdentifier::from(&user), password.to_owned());
        if let matrix_sdk::encryption::CrossSigningResetAuthType::Uiaa(uiaa) = handle.auth_type() {
            auth.session = uiaa.session.clone();
        }
        handle
            .reset(Some(AuthData::Password(auth)))
            .await
            .map_err(|e| TrustError::CrossSigning(e.to_string()))?;
    }
    recovery
        .enable()
        .await
        .map_err(|e| TrustError::Recovery(e.to_string()))
}

/// Accepts `user`'s changed identity (pins the new one): their signed
/// devices hear and are heard again.
pub async fn accept_identity(client: &Client, user: &str) -> Result<bool, TrustError> {
    let user: OwnedUserId = user
        .try_into()
        .map_err(|e: matrix_sdk::IdParseError| TrustError::CrossSigning(e.to_string()))?;
    let identity = client
        .encryption()
        .get_user_identity(&user)
        .await
        .map_err(|e| TrustError::Store(e.to_string()))?;
    let Some(identity) = identity else {
        return Ok(false);
    };
    if identity.has_verification_violation() {
        identity
            .withdraw_verification()
            .await
            .map_err(|e| TrustError::Store(e.to_string()))?;
    }
    identity
        .pin()
        .await
        .map_err(|e| TrustError::Store(e.to_string()))?;
    Ok(true)
}

/// The device of `user` if it may hear and be heard, else why not.
/// `identity_changed` are the users whose identity changed unaccepted (from
/// matrix-sdk's identity status of the room).
pub async fn device_verdict(
    client: &Client,
    identity_changed: &HashSet<String>,
    user: &str,
    device: &str,
) -> Result<Device, Exclusion> {
    let (Ok(user_id), device_id) = (OwnedUserId::try_from(user), OwnedDeviceId::from(device))
    else {
        return Err(Exclusion::NoKeys);
    };
    let found = client.encryption().get_device(&user_id, &device_id).await;
    let Ok(Some(found)) = found else {
        return Err(Exclusion::NoKeys);
    };
    let own = client.user_id() == Some(user_id.as_ref())
        && client.device_id() == Some(device_id.as_ref());
    if !own && !found.is_cross_signed_by_owner() {
        return Err(Exclusion::NotSignedByOwner);
    }
    if identity_changed.contains(user) {
        return Err(Exclusion::IdentityChanged);
    }
    let identity = client.encryption().get_user_identity(&user_id).await;
    if let Ok(Some(identity)) = identity {
        if identity.has_verification_violation() {
            return Err(Exclusion::IdentityChanged);
        }
    }
    Ok(found)
}

/// Whether `signature` (unpadded base64) is `device`'s Ed25519 signature of
/// `payload`.
pub fn signed_by(device: &Device, payload: &str, signature: &str) -> bool {
    let (Some(key), Ok(signature)) = (
        device.ed25519_key(),
        vodozemac::Ed25519Signature::from_base64(signature),
    ) else {
        return false;
    };
    key.verify(payload.as_bytes(), &signature).is_ok()
}

/// Signs consent entries with this device's own Ed25519 identity key (the
/// key in its published device keys, so every client can check them).
/// matrix-sdk does not expose signing with it, so the Olm account is read
/// from the device's own (encrypted) crypto store.
pub struct ConsentSigner {
    account: OlmAccount,
}

impl std::fmt::Debug for ConsentSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentSigner").finish_non_exhaustive()
    }
}

impl ConsentSigner {
    /// Loads the Olm account from the crypto store in `store_dir`.
    pub async fn open(store_dir: &Path, passphrase: &str) -> Result<Self, TrustError> {
        let store = SqliteCryptoStore::open(store_dir, Some(passphrase))
            .await
            .map_err(|e| TrustError::Store(e.to_string()))?;
        let account = store
            .load_account()
            .await
            .map_err(|e| TrustError::Store(e.to_string()))?
            .ok_or(TrustError::NoAccount)?;
        Ok(Self { account })
    }

    /// The unpadded base64 Ed25519 signature of `payload`.
    pub fn sign(&self, payload: &str) -> String {
        self.account.sign(payload).to_base64()
    }
}
