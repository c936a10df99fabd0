//! A start while the running app is quitting: the single-instance plugin
//! finds the old app's D-Bus name, the old app leaves the bus before it
//! answers, and the new one fails to build. Instead of failing the user's
//! start, start again (the same binary and arguments) once the old app has
//! had time to go, a few times at most.

use std::time::Duration;

/// How many times a start was retried so far (set on the restarted process).
const TRIES_VAR: &str = "WALKIE_START_TRIES";
/// Retries before giving up with a clear error.
const MAX_TRIES: u32 = 5;
/// Time given to the quitting app before the next try.
const PAUSE: Duration = Duration::from_millis(400);

/// Whether building the app failed because the running instance went away
/// while it was asked to show itself.
pub fn is_previous_instance_quitting(error: &tauri::Error) -> bool {
    let text = error.to_string();
    text.contains("single-instance") && text.contains("failed to forward arguments")
}

/// Replaces this process with a new start of the app after a pause; returns
/// only on failure (too many tries, or the start itself failed).
pub fn start_again(error: tauri::Error) -> anyhow::Result<()> {
    let tries: u32 = std::env::var(TRIES_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if tries >= MAX_TRIES {
        anyhow::bail!(
            "another Walkie is running and does not answer ({error}); quit it and start again"
        );
    }
    tracing::warn!(
        try_number = tries + 1,
        %error,
        "the running Walkie is quitting; starting again once it is gone"
    );
    std::thread::sleep(PAUSE);
    exec_self(tries + 1)
}

#[cfg(unix)]
fn exec_self(tries: u32) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the app's binary")?;
    let error = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(TRIES_VAR, tries.to_string())
        .exec();
    Err(error).with_context(|| format!("starting {} again", exe.display()))
}

#[cfg(not(unix))]
fn exec_self(_tries: u32) -> anyhow::Result<()> {
    anyhow::bail!("another Walkie is quitting; start again in a moment")
}
