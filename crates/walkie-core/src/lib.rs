//! Walkie's engine. Pure parts (no I/O, time passed in): `protocol` (MSC4002
//! event types and validation), `consent` (who may talk and receive),
//! `floor` (arbitration). Matrix side: `account` (sign-in, local encrypted
//! store), `sync_loop` (the engine's own sync loop), `live_talk` (one
//! push-to-talk, microphone to engine) and `secrets` (the OS keyring). See
//! `docs/architecture.md` and `docs/protocol.md`.
#![recursion_limit = "256"]

pub mod account;
pub mod backoff;
pub mod consent;
pub mod engine;
pub mod floor;
pub mod live_talk;
pub mod protocol;
pub mod secrets;
pub mod sync_loop;

pub use account::{discover, Account, AccountError, ServerInfo, SignInRequest};
pub use engine::{Engine, EngineError, EngineEvent, EngineTasks, Talk};
pub use sync_loop::{SyncLoop, SyncLoopHandle};

/// Re-exported so shells and tests use exactly the engine's matrix-sdk.
pub use matrix_sdk;
