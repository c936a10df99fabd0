//! Test support for Walkie's integration and end-to-end tests: a real
//! Synapse per test on a free loopback port ([`synapse`]), users registered
//! through its shared-secret API, and signed-in matrix-sdk clients; a
//! private PulseAudio server per test with a fake microphone and speaker
//! ([`pulse`]); a headless desktop ([`desktop`]) and the real app's panel
//! driven over WebDriver ([`webdriver`]); a stand-in desktop portal for
//! Wayland's global shortcuts ([`portal`]).
#![recursion_limit = "256"]

pub mod delay_proxy;
pub mod desktop;
pub mod portal;
pub mod proc_stats;
pub mod pulse;
pub mod secret_service;
pub mod synapse;
pub mod webdriver;

pub use pulse::PulseAudio;
pub use synapse::{Registered, Synapse};

/// A binary of this workspace: the path in `env_var` if set, else `name`
/// in the test's own target directory (where `cargo build -p package`
/// puts it); a missing binary is an error saying how to build it.
pub fn workspace_binary(
    env_var: &str,
    name: &str,
    package: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    if let Some(p) = std::env::var_os(env_var) {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test exe has no target dir")?;
    let bin = profile_dir.join(name);
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p {package}` (scripts/test.sh does)",
        bin.display()
    );
    Ok(bin)
}

/// The `walkie` CLI: `WALKIE_CLI_BIN`, else `walkie` in the test's target
/// directory (`cargo build -p walkie-cli` puts it there).
pub fn cli_binary() -> anyhow::Result<std::path::PathBuf> {
    workspace_binary("WALKIE_CLI_BIN", "walkie", "walkie-cli")
}

/// Waits up to `limit` for `child` to exit; `None` if it still runs.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

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

/// Writes `seconds` of synthetic English speech (espeak-ng, resampled by
/// sox to 48 kHz mono 16-bit) to `path`.
pub fn speech_wav(path: &std::path::Path, seconds: f64) -> anyhow::Result<()> {
    use anyhow::{ensure, Context};
    let raw = path.with_extension("espeak.wav");
    let text = "This is walkie talkie, testing one two three. The quick brown fox jumps over \
                the lazy dog, and the eagle lands at noon. Over and out, talk to you soon, \
                please bring the blue thermos to the meeting point.";
    let status = std::process::Command::new("espeak-ng")
        .args(["-s", "150", "-w"])
        .arg(&raw)
        .arg(text)
        .status()
        .context("running espeak-ng (scripts/setup.sh installs it)")?;
    ensure!(status.success(), "espeak-ng failed with {status}");
    let status = std::process::Command::new("sox")
        .arg(&raw)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(path)
        .args(["trim", "0", &format!("{seconds}")])
        .status()
        .context("running sox (scripts/setup.sh installs it)")?;
    ensure!(status.success(), "sox failed with {status}");
    std::fs::remove_file(&raw).ok();
    Ok(())
}

/// Every file under `dir`, recursively (tests look for secrets that must not
/// be on disk).
pub fn files_under(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path);
            }
        }
    }
    Ok(files)
}
