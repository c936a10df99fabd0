//! Walkie's engine: the Matrix session (sign-in, local encrypted store) and
//! the sync loop that the engine owns instead of matrix-sdk's built-in ones.
//!
//! Protocol, consent and floor logic (pure, time passed in) join this crate
//! next; see `docs/architecture.md`.
#![recursion_limit = "256"]

pub mod account;
pub mod backoff;
pub mod sync_loop;

pub use account::{discover, Account, AccountError, ServerInfo, SignInRequest};
pub use sync_loop::{SyncLoop, SyncLoopHandle};

/// Re-exported so shells and tests use exactly the engine's matrix-sdk.
pub use matrix_sdk;
