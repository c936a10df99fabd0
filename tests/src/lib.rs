//! Test support for Walkie's integration and end-to-end tests: a real
//! Synapse per test on a free loopback port ([`synapse`]), users registered
//! through its shared-secret API, and signed-in matrix-sdk clients.
#![recursion_limit = "256"]

pub mod desktop;
pub mod synapse;

pub use synapse::{Registered, Synapse};

/// Sets up `tracing` output for a test binary once (RUST_LOG filters it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,matrix_sdk=warn,matrix_sdk_crypto=warn".into()),
        )
        .with_test_writer()
        .try_init();
}
