//! `walkie`: the headless Walkie client. Today it resolves and checks a
//! homeserver; login, talk and listen follow with the engine.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use walkie_core::AccountError;

#[derive(Debug, Parser)]
#[command(
    name = "walkie",
    version,
    about = "Matrix push-to-talk from the command line"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve a server name (through .well-known) or URL and print the
    /// homeserver and the Matrix versions it supports, as JSON.
    ServerInfo {
        /// `example.org`, `@alice:example.org` or `https://matrix.example.org`
        server: String,
    },
}

/// Exit codes scripts can rely on.
mod exit {
    pub const UNREACHABLE: u8 = 3;
    pub const OTHER: u8 = 1;
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::ServerInfo { server } => {
            // A user id names its server after the first colon.
            let server = match server.strip_prefix('@').and_then(|u| u.split_once(':')) {
                Some((_, name)) => name.to_owned(),
                None => server,
            };
            match walkie_core::discover(&server).await {
                Ok(info) => match serde_json::to_string(&info) {
                    Ok(json) => {
                        println!("{json}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(exit::OTHER, &e),
                },
                Err(e @ (AccountError::Unreachable { .. } | AccountError::Http(_))) => {
                    fail(exit::UNREACHABLE, &e)
                }
                Err(e) => fail(exit::OTHER, &e),
            }
        }
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("walkie: {e}");
    ExitCode::from(code)
}
