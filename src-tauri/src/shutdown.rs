//! Clean exit on SIGTERM and SIGINT (session logout, `kill`, Ctrl-C in the
//! run script): the Tauri event loop is asked to exit instead of the
//! process dying mid-write.

use tauri::AppHandle;
use tokio::signal::unix::{signal, SignalKind};

pub fn exit_on_signals(app: AppHandle) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tauri::async_runtime::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "exit requested");
        app.exit(0);
    });
    Ok(())
}
