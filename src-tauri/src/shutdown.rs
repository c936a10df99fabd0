//! Clean exit on SIGTERM and SIGINT (session logout, `kill`, Ctrl-C in the
//! run script): the Tauri event loop is asked to exit instead of the
//! process dying mid-write.

use tauri::AppHandle;
use tokio::signal::unix::{signal, SignalKind};

pub fn exit_on_signals(app: AppHandle) {
    tauri::async_runtime::spawn(async move {
        // Registered inside the runtime: signal handlers need its reactor.
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot handle SIGTERM/SIGINT");
                return;
            }
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "exit requested");
        app.exit(0);
    });
}
