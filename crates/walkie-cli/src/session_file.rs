//! Where the CLI keeps its signed-in session (homeserver, user, device,
//! access token): in the OS keyring when a Secret Service answers, as the
//! desktop app does, under a name derived from the data directory; else —
//! headless machines, scripts, CI — in `session.json` (mode 0600) in the
//! data directory, beside the matrix-sdk store. A session file that exists
//! wins, so a directory signed in headless keeps working.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use walkie_core::{matrix_sdk::authentication::matrix::MatrixSession, secrets::Keyring};

#[derive(Serialize, Deserialize)]
pub struct SavedSession {
    pub homeserver: String,
    pub session: MatrixSession,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("session.json")
}

/// The keyring entry of the session of `data_dir`.
fn keyring_name(data_dir: &Path) -> String {
    let dir = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_owned());
    format!("cli-session {}", dir.display())
}

pub fn save(data_dir: &Path, saved: &SavedSession) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let json = serde_json::to_string(saved)?;
    match Keyring::default().set(&keyring_name(data_dir), &json) {
        Ok(()) => {
            // An older session file would win over the keyring: gone.
            match std::fs::remove_file(path(data_dir)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(());
        }
        Err(e) => {
            tracing::info!(error = %e, "no OS keyring: the session goes in a 0600 file");
        }
    }
    let tmp = data_dir.join("session.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(json.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path(data_dir))?;
    Ok(())
}

/// `None` when nobody is signed in here.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<SavedSession>> {
    match std::fs::read(path(data_dir)) {
        Ok(bytes) => return Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if !data_dir.exists() {
        return Ok(None);
    }
    match Keyring::default().get(&keyring_name(data_dir)) {
        Ok(Some(json)) => Ok(Some(serde_json::from_str(&json)?)),
        Ok(None) => Ok(None),
        Err(e) => {
            tracing::debug!(error = %e, "no OS keyring to look for the session in");
            Ok(None)
        }
    }
}

/// Forgets the session of `data_dir` (sign-out): its keyring entry; the
/// file goes with the directory.
pub fn forget(data_dir: &Path) {
    if let Err(e) = Keyring::default().delete(&keyring_name(data_dir)) {
        tracing::debug!(error = %e, "no session in the keyring to forget");
    }
}
