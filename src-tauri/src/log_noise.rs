//! The log lines of libraries that are not news (issue 14): a layer that
//! drops exactly these for every output (by target, level and whole
//! message) and lets everything else through.
//!
//! - `matrix_sdk::http_client` ERROR for a 404 `M_NOT_FOUND`: the SDK logs
//!   every failed request at ERROR before its caller sees the error, and
//!   its own callers turn these into "nothing there" (no `.well-known`, no
//!   account data such as `m.secret_storage.default_key`, no key backup).
//!   Other failures (and a 404 without `M_NOT_FOUND`, e.g. a proxy's) stay.
//! - "Our own device might have been deleted": the own-keys query the
//!   sign-in makes can run before the new device's keys are uploaded. A
//!   device really deleted loses its token too, which the sync loop reports.
//! - "Trying to backup room keys but no backup key was found": a device not
//!   verified yet has no backup key; verifying it (recovery key or emoji)
//!   enables backups. The panel already says the device is unverified.
//! - "Received an unexpected encrypted to-device event": the crypto crate
//!   says this for every Olm-decrypted event type it does not know, which
//!   is every walkie audio message; the engine handles them.
//! - pulseaudio's "Reactor error: Client disconnected": the PulseAudio
//!   client's thread says this whenever its handle is dropped, i.e. every
//!   time an audio stream is closed. (A server that goes away says the
//!   same; the stream then fails, which the player reports itself.)
//! - zbus's "Failed to populate properties cache via GetAll … Unknown
//!   object '/org/freedesktop/portal/desktop/request/…'" (or `…/session/…`):
//!   ashpd makes the proxy of a portal request or session before the call
//!   that creates it (so as not to miss its answer), and zbus reads its
//!   properties at once. Any other object stays.

use std::fmt::Write as _;

use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_subscriber::layer::{Context, Layer};

/// The layer; put it below the output layers (`registry().with(level
/// filter).with(KnownNoise).with(outputs…)`): a global filter, not a per-layer
/// one (tracing-subscriber's per-layer filters may not turn an event down
/// in `event_enabled`).
#[derive(Debug, Clone, Copy, Default)]
pub struct KnownNoise;

/// Whether an event of `target` at `level` with `message` is known noise.
pub fn is_noise(target: &str, level: Level, message: &str) -> bool {
    match (target, level) {
        ("matrix_sdk::http_client", Level::ERROR) => {
            message.contains("status_code: 404") && message.contains("kind: NotFound")
        }
        ("matrix_sdk_crypto::identities::manager", Level::WARN) => {
            message == "Our own device might have been deleted"
        }
        ("matrix_sdk_crypto::backups", Level::WARN) => {
            message == "Trying to backup room keys but no backup key was found"
        }
        ("matrix_sdk_crypto::machine", Level::WARN) => {
            message == "Received an unexpected encrypted to-device event"
        }
        ("pulseaudio::client::reactor", Level::ERROR) => {
            message == "Reactor error: Client disconnected"
        }
        ("zbus::proxy", Level::WARN) => {
            let unknown = "Failed to populate properties cache via GetAll: \
                           org.freedesktop.DBus.Error.UnknownObject: Unknown object \
                           '/org/freedesktop/portal/desktop/";
            message
                .strip_prefix(unknown)
                .is_some_and(|rest| rest.starts_with("request/") || rest.starts_with("session/"))
        }
        _ => false,
    }
}

/// Whether events of `target` at `level` can be noise at all (only those
/// have their message formatted).
fn may_be_noise(target: &str, level: Level) -> bool {
    matches!(
        (target, level),
        ("matrix_sdk::http_client", Level::ERROR)
            | ("matrix_sdk_crypto::identities::manager", Level::WARN)
            | ("matrix_sdk_crypto::backups", Level::WARN)
            | ("matrix_sdk_crypto::machine", Level::WARN)
            | ("pulseaudio::client::reactor", Level::ERROR)
            | ("zbus::proxy", Level::WARN)
    )
}

/// Collects an event's `message` field, and the original target of a
/// record from the `log` crate (bridged to tracing with target `log`).
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "log.target" => self.log_target = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for KnownNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        let level = *meta.level();
        if meta.target() != "log" && !may_be_noise(meta.target(), level) {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let target = fields.log_target.as_deref().unwrap_or(meta.target());
        !is_noise(target, level, &fields.message)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Messages of the events a subscriber with the filter let through.
    fn kept(emit: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(KnownNoise).with(layer);
        // The app's `init()` installs the same bridge (tracing-log).
        let _ = tracing_log::LogTracer::init();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn known_noise_is_dropped_and_everything_else_kept() {
        let lines = kept(|| {
            tracing::error!(target: "matrix_sdk::http_client", "Error while sending request: Api(Server(MatrixError(Error {{ status_code: 404, body: Standard(StandardErrorBody {{ kind: NotFound, message: \".well-known not available\" }}) }})))");
            tracing::error!(target: "matrix_sdk::http_client", "Error while sending request: Api(Server(MatrixError(Error {{ status_code: 500, body: Standard(StandardErrorBody {{ kind: Unknown, message: \"boom\" }}) }})))");
            tracing::error!(target: "matrix_sdk::http_client", "Error while sending request: 404 from a proxy");
            tracing::warn!(target: "matrix_sdk_crypto::machine", "Received an unexpected encrypted to-device event");
            tracing::warn!(target: "matrix_sdk_crypto::machine", "Received an unexpected encrypted to-device event, and something else");
            tracing::warn!(target: "matrix_sdk_crypto::backups", "Trying to backup room keys but no backup key was found");
            tracing::warn!(target: "matrix_sdk_crypto::identities::manager", "Our own device might have been deleted");
            tracing::info!(target: "matrix_sdk_crypto::machine", "Received an unexpected encrypted to-device event");
            tracing::warn!(target: "walkie_core::engine", "Our own device might have been deleted");
            tracing::error!(target: "pulseaudio::client::reactor", "Reactor error: Client disconnected");
            tracing::error!(target: "pulseaudio::client::reactor", "Reactor error: Protocol error");
            // Through the `log` bridge, as the pulseaudio crate logs.
            log::error!(target: "pulseaudio::client::reactor", "Reactor error: Client disconnected");
            log::error!(target: "other::crate", "Reactor error: Client disconnected");
            tracing::warn!(target: "zbus::proxy", "Failed to populate properties cache via GetAll: org.freedesktop.DBus.Error.UnknownObject: Unknown object '/org/freedesktop/portal/desktop/request/1_10/ashpd_sN2hDmeq35'. Property change streams will not produce values.");
            tracing::warn!(target: "zbus::proxy", "Failed to populate properties cache via GetAll: org.freedesktop.DBus.Error.UnknownObject: Unknown object '/org/freedesktop/portal/desktop/session/1_10/ashpd_8EFGgONW9m'. Property change streams will not produce values.");
            tracing::warn!(target: "zbus::proxy", "Failed to populate properties cache via GetAll: org.freedesktop.DBus.Error.UnknownObject: Unknown object '/org/freedesktop/secrets'.");
        });
        assert_eq!(lines.len(), 8, "{lines:#?}");
        assert!(lines[0].contains("status_code: 500"));
        assert!(lines[1].contains("from a proxy"));
        assert!(lines[2].contains("and something else"));
        assert!(lines[3].contains("INFO"));
        assert!(lines[4].contains("walkie_core::engine"));
        assert!(lines[5].contains("Protocol error"));
        assert!(lines[6].contains("other::crate"));
        assert!(lines[7].contains("/org/freedesktop/secrets"));
    }
}
