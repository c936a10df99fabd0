//! Walkie's core over Matrix: `account` (sign-in with server discovery,
//! sign-out, groups, the local encrypted store), `sync_loop` (the engine's
//! own sync loop), `engine` (the one driver of the room machines of
//! `walkie-protocol`, re-exported as `protocol`), `station` (both
//! directions of a radio for both shells), `live_talk` (one push-to-talk,
//! microphone to engine) and `secrets` (the OS keyring, the unplayed-talks
//! key), `store_key` (the passphrase of the encrypted matrix-sdk
//! store), `trust` (cross-signing, recovery, which devices may hear) and
//! `verification` (emoji verification of the user's own devices). See `docs/architecture.md` and `docs/protocol.md`.
#![recursion_limit = "256"]

pub mod account;
pub mod backoff;
pub mod engine;
pub mod live_talk;
pub mod secrets;
pub mod station;
pub mod store_key;
pub mod sync_loop;
pub mod trust;
pub mod verification;

pub use account::{discover, Account, AccountError, ServerInfo, SignInRequest};

/// Makes every file and directory this process creates from now on private
/// to the user (mode 0600 / 0700: umask 077): account stores, the crypto
/// store, outboxes, logs. Both binaries call it first thing (the umask is
/// process-wide).
pub fn make_created_files_private() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file-mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}
pub use engine::{Engine, EngineError, EngineEvent, EngineTasks, Talk};
pub use station::{Playback, Station};
pub use sync_loop::{SyncLoop, SyncLoopHandle, Synced};
/// The pure rules (identifiers, group, consent, audio, floor, room machine).
pub use walkie_protocol as protocol;

/// Re-exported so shells and tests use exactly the engine's matrix-sdk.
pub use matrix_sdk;
