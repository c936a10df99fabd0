//! Where the CLI keeps its signed-in session: `session.json` (mode 0600) in
//! its data directory, beside the matrix-sdk store. The CLI runs headless
//! (scripts, servers, CI) where no Secret Service may exist; the desktop app
//! keeps its session in the OS keyring instead.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use walkie_core::matrix_sdk::authentication::matrix::MatrixSession;

#[derive(Serialize, Deserialize)]
pub struct SavedSession {
    pub homeserver: String,
    pub session: MatrixSession,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("session.json")
}

pub fn save(data_dir: &Path, saved: &SavedSession) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let tmp = data_dir.join("session.json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&serde_json::to_vec(saved)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path(data_dir))?;
    Ok(())
}

/// `None` when nobody is signed in here.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<SavedSession>> {
    match std::fs::read(path(data_dir)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}
