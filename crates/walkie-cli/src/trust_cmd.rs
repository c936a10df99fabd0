//! The CLI's trust commands: `verify` (this device's state; verify it with
//! the recovery key or with emoji against another device of the user),
//! `recovery reset` (a new cross-signing identity and recovery key) and
//! `accept-identity` (go on talking to a user whose identity changed).
//! Secrets come from the environment or standard input, never the command
//! line.

use std::io::BufRead;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use walkie_core::{trust, verification, Account, Engine};

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum VerifyHow {
    /// Whether this device is verified (signed by the account's identity).
    Status,
    /// Verify with the account's recovery key: `WALKIE_RECOVERY_KEY`, else
    /// the first line of standard input.
    RecoveryKey,
    /// Ask another device of this account (Walkie or Element) to verify
    /// this one with emoji; type `yes` once both show the same emoji.
    Request { device: String },
    /// Wait for another device of this account to ask, then compare emoji.
    Accept,
}

#[derive(Debug, Subcommand)]
pub enum RecoveryAction {
    /// Replace the account's cross-signing identity and recovery key (lost
    /// key, compromised device). Every other device must be verified again
    /// and other users see "identity changed". Password from
    /// `WALKIE_PASSWORD` or standard input.
    Reset,
}

fn line_from_stdin(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .with_context(|| format!("reading the {what} from standard input"))?;
    let line = line.trim().to_owned();
    anyhow::ensure!(!line.is_empty(), "no {what} given");
    Ok(line)
}

pub async fn verify(account: &Account, engine: &Engine, how: VerifyHow) -> Result<(), CliError> {
    let client = account.client();
    match how {
        VerifyHow::Status => {}
        VerifyHow::RecoveryKey => {
            let key = match std::env::var("WALKIE_RECOVERY_KEY") {
                Ok(k) => k,
                Err(_) => line_from_stdin("recovery key")?,
            };
            trust::recover(client, &key)
                .await
                .map_err(anyhow::Error::from)?;
        }
        VerifyHow::Request { device } => {
            let sas = verification::request(client, &device)
                .await
                .map_err(anyhow::Error::from)?;
            compare(&sas).await?;
        }
        VerifyHow::Accept => {
            let sas = verification::accept_next(client, || {
                println!("{}", json!({ "waiting_for": "verification request" }));
                eprintln!("Waiting: ask for verification from your other device now.");
            })
            .await
            .map_err(anyhow::Error::from)?;
            compare(&sas).await?;
        }
    }
    let state = engine.own_device_state().await?;
    println!("{}", json!({ "device_state": state }));
    Ok(())
}

/// Shows the emoji (one JSON line) and asks whether they match.
async fn compare(
    sas: &walkie_core::matrix_sdk::encryption::verification::SasVerification,
) -> anyhow::Result<()> {
    let emoji = verification::emoji(sas).await?;
    println!("{}", json!({ "emoji": emoji }));
    eprintln!("Do these emoji match the other device's, in the same order? Type yes or no:");
    let answer = tokio::task::spawn_blocking(|| line_from_stdin("answer")).await??;
    let matches = matches!(answer.to_lowercase().as_str(), "yes" | "y");
    verification::finish(sas, matches).await?;
    Ok(())
}

pub async fn recovery(account: &Account, action: RecoveryAction) -> Result<(), CliError> {
    match action {
        RecoveryAction::Reset => {
            let password = crate::read_password()?;
            let key = trust::reset_identity(account.client(), &password)
                .await
                .map_err(anyhow::Error::from)?;
            println!("{}", json!({ "recovery_key": key }));
        }
    }
    Ok(())
}

pub async fn accept_identity(engine: &Engine, user: &str) -> Result<(), CliError> {
    let known = engine.accept_identity(user).await?;
    if !known {
        return Err(anyhow::anyhow!("no identity is known for {user}").into());
    }
    println!("{}", json!({ "accepted": user }));
    Ok(())
}
