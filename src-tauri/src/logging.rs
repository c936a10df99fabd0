//! Where the app's log goes: stderr (the run script, tests) and a daily
//! rotating file `logs/walkie-app.log.YYYY-MM-DD` in the data directory,
//! seven files kept. `RUST_LOG` filters both.

use std::path::Path;

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

/// Installs the subscriber. Keep the guard alive: it flushes the file.
pub fn init(data_dir: &Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    let filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,matrix_sdk=warn,matrix_sdk_crypto=warn".into())
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let file = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("walkie-app.log")
        .max_log_files(7)
        .build(data_dir.join("logs"));
    match file {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let file_layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
            tracing_subscriber::registry()
                .with(stderr)
                .with(file_layer)
                .init();
            Some(guard)
        }
        Err(e) => {
            tracing_subscriber::registry().with(stderr).init();
            tracing::warn!(error = %e, "no log file; logging to stderr only");
            None
        }
    }
}
