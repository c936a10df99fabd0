//! [`EngineError`]: why an engine call failed.

use thiserror::Error;
use walkie_protocol::ProtocolError;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("unknown room {0}")]
    UnknownRoom(String),
    #[error("{0} is not a walkie group (enable it first)")]
    NotAGroup(String),
    #[error("{0} is not end-to-end encrypted: a walkie group must be (its recordings and group settings would be readable by anyone who joins)")]
    NotEncrypted(String),
    #[error("this device has no active talk consent in {0}")]
    NoConsent(String),
    #[error("the floor is busy: {holder} is talking")]
    FloorBusy { holder: String },
    #[error("the talk stopped: {0}")]
    Stopped(String),
    #[error("this device is not verified, so nobody would hear it: verify it with your recovery key or with emoji against another of your devices (walkie verify)")]
    DeviceNotVerified,
    #[error("the engine has shut down")]
    ShutDown,
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Seal(#[from] walkie_protocol::SealError),
    #[error(transparent)]
    Matrix(#[from] Box<matrix_sdk::Error>),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

impl From<matrix_sdk::Error> for EngineError {
    fn from(e: matrix_sdk::Error) -> Self {
        Self::Matrix(Box::new(e))
    }
}

impl From<matrix_sdk::HttpError> for EngineError {
    fn from(e: matrix_sdk::HttpError) -> Self {
        Self::Matrix(Box::new(e.into()))
    }
}

impl From<matrix_sdk::StoreError> for EngineError {
    fn from(e: matrix_sdk::StoreError) -> Self {
        Self::Matrix(Box::new(e.into()))
    }
}
