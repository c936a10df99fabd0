//! The passphrase that encrypts an account's matrix-sdk store (crypto keys,
//! Olm sessions, room state) at rest: where it is kept and how it is made.
//!
//! It lives in the OS keyring under a name derived from the account
//! directory. A headless CLI on a machine without a Secret Service may keep
//! it instead in `<account dir>/store-passphrase` (mode 0600), only when its
//! shell allows that ([`Fallback::File`]); `walkie --help` says so. A file
//! that already exists wins, so the desktop app opens an account directory
//! the CLI created on a headless machine. A passphrase is only ever created
//! together with a new store: if the store exists and its passphrase cannot
//! be found, that is an error, never a fresh passphrase that would lock the
//! store.

use std::path::{Path, PathBuf};

use base64::{engine::general_purpose::STANDARD_NO_PAD as B64, Engine as _};
use thiserror::Error;

use crate::secrets::{Keyring, SecretError};

/// Where a new passphrase may go when the OS keyring is not available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Only the OS keyring (the desktop app).
    KeyringOnly,
    /// The keyring, else a 0600 file in the account directory (the CLI).
    File,
}

/// Why the store passphrase could not be had.
#[derive(Debug, Error)]
pub enum StoreKeyError {
    #[error("the store in {dir} is encrypted, but its passphrase is in neither the OS keyring nor {file}: {keyring}")]
    Lost {
        dir: PathBuf,
        file: PathBuf,
        keyring: String,
    },
    #[error("no OS keyring to keep the store passphrase in: {0}")]
    NoKeyring(#[source] SecretError),
    #[error("store passphrase file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no randomness for a new passphrase: {0}")]
    Random(String),
    #[error("the keyring lookup did not finish: {0}")]
    Join(String),
}

/// The file a headless CLI keeps the passphrase in.
pub fn file_path(account_dir: &Path) -> PathBuf {
    account_dir.join("store-passphrase")
}

fn keyring_name(account_dir: &Path) -> String {
    format!("store-passphrase {}", account_dir.display())
}

/// The passphrase of the store in `store_dir` (inside `account_dir`),
/// created if the store does not exist yet.
pub async fn passphrase(
    account_dir: &Path,
    store_dir: &Path,
    fallback: Fallback,
) -> Result<String, StoreKeyError> {
    let (account_dir, store_exists) = (account_dir.to_owned(), store_dir.exists());
    tokio::task::spawn_blocking(move || blocking(&account_dir, store_exists, fallback))
        .await
        .map_err(|e| StoreKeyError::Join(e.to_string()))?
}

fn blocking(
    account_dir: &Path,
    store_exists: bool,
    fallback: Fallback,
) -> Result<String, StoreKeyError> {
    let file = file_path(account_dir);
    let io = |source| StoreKeyError::Io {
        path: file.clone(),
        source,
    };
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let keyring = Keyring::default();
    let name = keyring_name(account_dir);
    let stored = keyring.get(&name);
    if let Ok(Some(p)) = &stored {
        return Ok(p.clone());
    }
    if store_exists {
        return Err(StoreKeyError::Lost {
            dir: account_dir.to_owned(),
            file,
            keyring: match stored {
                Ok(_) => "no entry".into(),
                Err(e) => e.to_string(),
            },
        });
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| StoreKeyError::Random(e.to_string()))?;
    let new = B64.encode(bytes);
    let kept = match stored {
        Ok(None) => keyring.set(&name, &new),
        Ok(Some(_)) => Ok(()),
        Err(e) => Err(e),
    };
    match (kept, fallback) {
        (Ok(()), _) => Ok(new),
        (Err(e), Fallback::KeyringOnly) => Err(StoreKeyError::NoKeyring(e)),
        (Err(e), Fallback::File) => {
            tracing::info!(error = %e, file = %file.display(), "no OS keyring: the store passphrase goes in a 0600 file");
            std::fs::create_dir_all(account_dir).map_err(io)?;
            write_private(&file, new.as_bytes()).map_err(io)?;
            Ok(new)
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Forgets the passphrase of an account directory (sign-out deletes the
/// store it opens).
pub async fn forget(account_dir: &Path) {
    let name = keyring_name(account_dir);
    let _ = std::fs::remove_file(file_path(account_dir));
    let _ = tokio::task::spawn_blocking(move || Keyring::default().delete(&name)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    // No Secret Service in unit tests (no D-Bus session here), so these
    // exercise the file fallback and the refusals around it.
    fn no_bus() {
        std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
    }

    #[test]
    fn a_new_store_gets_a_private_file_and_keeps_it() {
        no_bus();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("matrix-store");
        let first = blocking(dir.path(), store.exists(), Fallback::File).unwrap();
        assert!(first.len() >= 43);
        std::fs::create_dir(&store).unwrap();
        let again = blocking(dir.path(), true, Fallback::File).unwrap();
        assert_eq!(first, again);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_existing_store_without_its_passphrase_is_an_error_not_a_new_key() {
        no_bus();
        let dir = tempfile::tempdir().unwrap();
        let e = blocking(dir.path(), true, Fallback::File).unwrap_err();
        assert!(matches!(e, StoreKeyError::Lost { .. }), "{e}");
        assert!(!file_path(dir.path()).exists());
    }

    #[test]
    fn keyring_only_refuses_a_file() {
        no_bus();
        let dir = tempfile::tempdir().unwrap();
        let e = blocking(dir.path(), false, Fallback::KeyringOnly).unwrap_err();
        assert!(matches!(e, StoreKeyError::NoKeyring(_)), "{e}");
        assert!(!file_path(dir.path()).exists());
    }
}
