//! The CLI's failures and their distinct exit codes, for scripts.

use walkie_core::{AccountError, EngineError};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    WrongPassword(String),
    #[error("{0}")]
    UnknownRoom(String),
    #[error("{0}")]
    NotAGroup(String),
    #[error("{0}")]
    NoConsent(String),
    #[error("{0}")]
    FloorBusy(String),
    #[error("audio device: {0}")]
    AudioDevice(String),
    #[error("not signed in: run `walkie login` first")]
    NotSignedIn,
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl CliError {
    pub fn code(&self) -> u8 {
        match self {
            CliError::Other(_) => 1,
            CliError::Unreachable(_) => 3,
            CliError::WrongPassword(_) => 4,
            CliError::UnknownRoom(_) => 5,
            CliError::NotAGroup(_) => 6,
            CliError::NoConsent(_) => 7,
            CliError::FloorBusy(_) => 8,
            CliError::NotSignedIn => 9,
            CliError::AudioDevice(_) => 10,
        }
    }
}

impl From<AccountError> for CliError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Unreachable { .. } | AccountError::Http(_) => {
                Self::Unreachable(e.to_string())
            }
            AccountError::WrongPassword { .. } => Self::WrongPassword(e.to_string()),
            other => Self::Other(other.into()),
        }
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownRoom(_) => Self::UnknownRoom(e.to_string()),
            EngineError::NotAGroup(_) | EngineError::NotEncrypted(_) => {
                Self::NotAGroup(e.to_string())
            }
            EngineError::NoConsent(_) => Self::NoConsent(e.to_string()),
            EngineError::FloorBusy { .. } => Self::FloorBusy(e.to_string()),
            other => Self::Other(other.into()),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}
