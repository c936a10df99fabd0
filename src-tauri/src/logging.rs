//! Where the app's log goes: stderr (the run script, tests) and a daily
//! rotating file `logs/walkie-app.log.YYYY-MM-DD` in the data directory,
//! seven files kept, each capped at [`MAX_FILE_BYTES`] (what comes after
//! the cap in a day is dropped, with one line saying so). `RUST_LOG`
//! filters both; libraries' known non-news lines are dropped
//! ([`crate::log_noise`]).

use std::{
    io::{self, Write},
    path::Path,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use tracing_subscriber::fmt::MakeWriter;

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

use crate::log_noise::KnownNoise;

/// Installs the subscriber. Keep the guard alive: it flushes the file.
pub fn init(data_dir: &Path) -> Option<tracing_appender::non_blocking::WorkerGuard> {
    // One filter for both outputs: levels from RUST_LOG, then the SDK's
    // known non-news lines dropped.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,matrix_sdk=warn,matrix_sdk_crypto=warn".into());
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let file = tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix("walkie-app.log")
        .max_log_files(7)
        .build(data_dir.join("logs"));
    let base = tracing_subscriber::registry()
        .with(filter)
        .with(KnownNoise)
        .with(stderr);
    match file {
        Ok(appender) => {
            let (writer, guard) = tracing_appender::non_blocking(appender);
            let file_layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(Capped::new(writer, MAX_FILE_BYTES));
            base.with(file_layer).init();
            Some(guard)
        }
        Err(e) => {
            base.init();
            tracing::warn!(error = %e, "no log file; logging to stderr only");
            None
        }
    }
}

/// Bytes written to one day's log file at most: 16 MiB, so the seven files
/// kept hold at most 112 MiB whatever floods the log.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Bytes written today (UTC day number, bytes, whether the cap was noted).
#[derive(Debug, Default)]
struct Budget {
    day: u64,
    bytes: u64,
    noted: bool,
}

/// A writer that stops writing after `cap` bytes in a UTC day (the file
/// appender's rotation period).
#[derive(Clone)]
struct Capped<W> {
    inner: W,
    cap: u64,
    budget: Arc<Mutex<Budget>>,
}

impl<W> Capped<W> {
    fn new(inner: W, cap: u64) -> Self {
        Self {
            inner,
            cap,
            budget: Arc::default(),
        }
    }
}

fn utc_day() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// One write through a [`Capped`] writer.
struct CappedWrite<W> {
    inner: W,
    cap: u64,
    budget: Arc<Mutex<Budget>>,
}

impl<W: Write> Write for CappedWrite<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let day = utc_day();
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        if b.day != day {
            *b = Budget {
                day,
                ..Budget::default()
            };
        }
        if b.bytes.saturating_add(buf.len() as u64) <= self.cap {
            b.bytes += buf.len() as u64;
            drop(b);
            return self.inner.write(buf);
        }
        if !b.noted {
            b.noted = true;
            drop(b);
            self.inner.write_all(
                b"log file capped for today (MAX_FILE_BYTES); later lines are dropped until tomorrow\n",
            )?;
        }
        // Dropped, but reported as written: logging must never fail a caller.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for Capped<W> {
    type Writer = CappedWrite<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        CappedWrite {
            inner: self.inner.make_writer(),
            cap: self.cap,
            budget: self.budget.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    #[test]
    fn a_flood_stops_at_the_cap_with_one_line_saying_so() {
        let sink = Sink::default();
        let capped = Capped::new(sink.clone(), 1_000);
        for _ in 0..10_000 {
            let mut w = capped.make_writer();
            w.write_all(b"a line of log that repeats\n").expect("write");
        }
        let written = sink.0.lock().expect("lock").clone();
        let text = String::from_utf8(written).expect("utf-8");
        assert!(text.len() <= 1_000 + 120, "{} bytes", text.len());
        assert_eq!(text.matches("log file capped").count(), 1);
    }
}
