//! A stand-in for the desktop portal's GlobalShortcuts interface
//! (`org.freedesktop.portal.GlobalShortcuts`, version 1) on a private
//! session bus, as the XDG Desktop Portal documentation specifies it: it
//! owns `org.freedesktop.portal.Desktop`, serves the interface at
//! `/org/freedesktop/portal/desktop`, answers `CreateSession` and
//! `BindShortcuts` through `Response` signals on the request paths the
//! caller predicts (`…/request/SENDER/TOKEN`), grants every shortcut asked
//! for, and lets a test press and release a bound shortcut with the
//! `Activated` / `Deactivated` signals. No compositor with a real portal
//! runs here: this checks the client side of the protocol only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use zbus::{
    fdo, interface,
    message::Header,
    names::BusName,
    zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value},
    Connection,
};

const DESKTOP_PATH: &str = "/org/freedesktop/portal/desktop";
const INTERFACE: &str = "org.freedesktop.portal.GlobalShortcuts";

/// A shortcut a client bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundShortcut {
    /// The session's object path.
    pub session: String,
    pub id: String,
    pub description: String,
    pub preferred_trigger: Option<String>,
}

#[derive(Default)]
struct State {
    sessions: Vec<String>,
    bound: Vec<BoundShortcut>,
    next_token: u64,
}

struct GlobalShortcuts {
    state: Arc<Mutex<State>>,
    changed: tokio::sync::watch::Sender<usize>,
}

/// The caller's part of request and session paths: its unique name without
/// the ':' and with '.' as '_'.
fn sender_part(header: &Header<'_>) -> fdo::Result<String> {
    header
        .sender()
        .map(|s| s.trim_start_matches(':').replace('.', "_"))
        .ok_or_else(|| fdo::Error::Failed("a call without a sender".into()))
}

fn text(options: &HashMap<String, OwnedValue>, key: &str) -> Option<String> {
    options
        .get(key)
        .and_then(|v| <&str>::try_from(v).ok())
        .map(str::to_owned)
}

impl GlobalShortcuts {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The option's token, or one of ours when the caller gave none.
    fn token(&self, options: &HashMap<String, OwnedValue>, key: &str) -> String {
        text(options, key).unwrap_or_else(|| {
            let mut state = self.lock();
            state.next_token += 1;
            format!("standin{}", state.next_token)
        })
    }
}

/// Sends `Response(0, results)` on `request` to the caller.
async fn respond(
    conn: &Connection,
    header: &Header<'_>,
    request: &str,
    results: HashMap<&str, Value<'_>>,
) -> fdo::Result<()> {
    conn.emit_signal(
        header.sender().map(|s| BusName::from(s.to_owned())),
        request,
        "org.freedesktop.portal.Request",
        "Response",
        &(0u32, results),
    )
    .await
    .map_err(|e| fdo::Error::Failed(e.to_string()))
}

fn object_path(path: String) -> fdo::Result<OwnedObjectPath> {
    ObjectPath::try_from(path)
        .map(OwnedObjectPath::from)
        .map_err(|e| fdo::Error::InvalidArgs(e.to_string()))
}

#[interface(name = "org.freedesktop.portal.GlobalShortcuts")]
impl GlobalShortcuts {
    async fn create_session(
        &self,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<OwnedObjectPath> {
        let sender = sender_part(&header)?;
        let request = format!(
            "{DESKTOP_PATH}/request/{sender}/{}",
            self.token(&options, "handle_token")
        );
        let session = format!(
            "{DESKTOP_PATH}/session/{sender}/{}",
            self.token(&options, "session_handle_token")
        );
        self.lock().sessions.push(session.clone());
        let results = HashMap::from([("session_handle", Value::from(session.as_str()))]);
        respond(conn, &header, &request, results).await?;
        object_path(request)
    }

    async fn bind_shortcuts(
        &self,
        session_handle: ObjectPath<'_>,
        shortcuts: Vec<(String, HashMap<String, OwnedValue>)>,
        _parent_window: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
    ) -> fdo::Result<OwnedObjectPath> {
        let sender = sender_part(&header)?;
        let session = session_handle.as_str().to_owned();
        if !self.lock().sessions.contains(&session) {
            return Err(fdo::Error::InvalidArgs(format!("no session {session}")));
        }
        let request = format!(
            "{DESKTOP_PATH}/request/{sender}/{}",
            self.token(&options, "handle_token")
        );
        let bound: Vec<BoundShortcut> = shortcuts
            .iter()
            .map(|(id, info)| BoundShortcut {
                session: session.clone(),
                id: id.clone(),
                description: text(info, "description").unwrap_or_default(),
                preferred_trigger: text(info, "preferred_trigger"),
            })
            .collect();
        // Granted as asked: the trigger the client preferred.
        let answer: Vec<(String, HashMap<String, Value>)> = bound
            .iter()
            .map(|b| {
                (
                    b.id.clone(),
                    HashMap::from([
                        ("description".to_owned(), Value::from(b.description.clone())),
                        (
                            "trigger_description".to_owned(),
                            Value::from(b.preferred_trigger.clone().unwrap_or_default()),
                        ),
                    ]),
                )
            })
            .collect();
        let results = HashMap::from([("shortcuts", Value::from(answer))]);
        respond(conn, &header, &request, results).await?;
        let count = {
            let mut state = self.lock();
            state.bound.extend(bound);
            state.bound.len()
        };
        self.changed.send_replace(count);
        object_path(request)
    }

    #[zbus(property)]
    fn version(&self) -> u32 {
        1
    }
}

/// The stand-in portal, serving until dropped.
pub struct StandInPortal {
    conn: Connection,
    state: Arc<Mutex<State>>,
    changed: tokio::sync::watch::Receiver<usize>,
}

impl StandInPortal {
    /// Serves the portal on the bus at `bus_address`.
    pub async fn start(bus_address: &str) -> Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, changed) = tokio::sync::watch::channel(0);
        let conn = zbus::connection::Builder::address(bus_address)?
            .name("org.freedesktop.portal.Desktop")?
            .serve_at(
                DESKTOP_PATH,
                GlobalShortcuts {
                    state: state.clone(),
                    changed: tx,
                },
            )?
            .build()
            .await
            .context("the stand-in portal could not take its name on the bus")?;
        Ok(Self {
            conn,
            state,
            changed,
        })
    }

    /// Waits until a client bound a shortcut; returns the first.
    pub async fn bound(&self, timeout: Duration) -> Result<BoundShortcut> {
        let mut changed = self.changed.clone();
        let wait = changed.wait_for(|&n| n > 0);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => bail!("the stand-in portal stopped"),
            Err(_) => bail!("no client bound a shortcut within {timeout:?}"),
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.bound.first().cloned().context("no shortcut bound")
    }

    async fn signal(&self, member: &str, shortcut: &BoundShortcut) -> Result<()> {
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64;
        self.conn
            .emit_signal(
                None::<BusName<'_>>,
                DESKTOP_PATH,
                INTERFACE,
                member,
                &(
                    ObjectPath::try_from(shortcut.session.as_str())?,
                    shortcut.id.as_str(),
                    timestamp,
                    HashMap::<&str, Value>::new(),
                ),
            )
            .await?;
        Ok(())
    }

    /// The user pressed the shortcut (`Activated`).
    pub async fn press(&self, shortcut: &BoundShortcut) -> Result<()> {
        self.signal("Activated", shortcut).await
    }

    /// The user released it (`Deactivated`).
    pub async fn release(&self, shortcut: &BoundShortcut) -> Result<()> {
        self.signal("Deactivated", shortcut).await
    }
}
