//! Secrets in the OS keyring (the Secret Service on Linux: gnome-keyring,
//! KWallet): the 256-bit key that encrypts unplayed talks at rest, and any
//! other small secret Walkie keeps. Nothing here is written to a plain file.
//! Calls block on D-Bus; async callers wrap them in `spawn_blocking`.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use thiserror::Error;

/// The keyring service name every Walkie entry is filed under.
pub const SERVICE: &str = "walkie";

/// Keyring failures.
#[derive(Debug, Error)]
pub enum SecretError {
    /// No Secret Service is running, or it refused (locked, no D-Bus).
    #[error("the OS keyring is not available: {0}")]
    Unavailable(String),
    /// The stored value is not what Walkie wrote.
    #[error("keyring entry {name:?} is malformed: {reason}")]
    Malformed { name: String, reason: String },
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// Walkie's entries in the OS keyring.
#[derive(Debug, Clone)]
pub struct Keyring {
    service: String,
}

impl Default for Keyring {
    fn default() -> Self {
        Self::new(SERVICE)
    }
}

impl Keyring {
    /// Entries under `service`.
    pub fn new(service: &str) -> Self {
        Self {
            service: service.to_owned(),
        }
    }

    fn entry(&self, name: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(&self.service, name)
            .map_err(|e| SecretError::Unavailable(e.to_string()))
    }

    /// The secret stored as `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<String>, SecretError> {
        match self.entry(name)?.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(SecretError::Unavailable(e.to_string())),
        }
    }

    /// Stores (or replaces) `name`.
    pub fn set(&self, name: &str, secret: &str) -> Result<(), SecretError> {
        self.entry(name)?
            .set_password(secret)
            .map_err(|e| SecretError::Unavailable(e.to_string()))
    }

    /// Removes `name` (absent is fine).
    pub fn delete(&self, name: &str) -> Result<(), SecretError> {
        match self.entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(SecretError::Unavailable(e.to_string())),
        }
    }

    /// The 256-bit key stored as `name`, created (from the OS's randomness)
    /// and stored on first use.
    pub fn key_256(&self, name: &str) -> Result<[u8; 32], SecretError> {
        if let Some(stored) = self.get(name)? {
            let bytes = B64
                .decode(stored.trim())
                .map_err(|e| SecretError::Malformed {
                    name: name.to_owned(),
                    reason: e.to_string(),
                })?;
            return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| SecretError::Malformed {
                name: name.to_owned(),
                reason: format!("{} bytes, expected 32", bytes.len()),
            });
        }
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| SecretError::Random(e.to_string()))?;
        self.set(name, &B64.encode(key))?;
        Ok(key)
    }
}

/// Why the unplayed-talks store could not be opened.
#[derive(Debug, Error)]
pub enum UnplayedStoreError {
    #[error(transparent)]
    Keyring(#[from] SecretError),
    #[error("the keyring lookup did not finish: {0}")]
    Join(String),
    #[error("cannot open the unplayed-talks store: {0}")]
    Store(String),
}

/// The encrypted store of unplayed talks of one account directory
/// (`<dir>/unplayed`), keyed by a 256-bit key kept in the OS keyring under
/// a name derived from the directory. The app and the CLI both use it.
pub async fn unplayed_store(
    account_dir: &std::path::Path,
) -> Result<walkie_audio::queue_store::QueueStore, UnplayedStoreError> {
    let name = format!("unplayed-talks-key {}", account_dir.display());
    let key = tokio::task::spawn_blocking(move || Keyring::default().key_256(&name))
        .await
        .map_err(|e| UnplayedStoreError::Join(e.to_string()))??;
    walkie_audio::queue_store::QueueStore::open(account_dir.join("unplayed"), &key)
        .map_err(|e| UnplayedStoreError::Store(e.to_string()))
}
