//! The real app driven over WebDriver: [`AppDriver`] owns one `tauri-driver`
//! (which owns WebKitWebDriver, which launches the app) inside a [`Desktop`],
//! one WebDriver session on the app's panel, and a small W3C WebDriver
//! client for it (find by CSS selector, text, click, keys, scripts,
//! screenshots, waiting for a DOM condition). The app's log (its stderr,
//! which reaches us through tauri-driver) is forwarded to the test output
//! and can be waited on. Dropping the value deletes the session and ends
//! tauri-driver, WebKitWebDriver and the app (their own process group).
//!
//! tauri-driver passes its own environment down to the app: the app's
//! variables (`WALKIE_*`, `RUST_LOG`, ...) are set on the tauri-driver
//! process, on top of the desktop's `DISPLAY` and session bus.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::desktop::{ChildGuard, Desktop};

/// W3C key of an element reference in WebDriver JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long tauri-driver and WebKitWebDriver may take to listen.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the app may take to start and hand its webview to WebDriver.
const SESSION_TIMEOUT: Duration = Duration::from_secs(90);
/// From asking for a session until WebKitWebDriver has started the app.
const APP_LAUNCH_TIMEOUT: Duration = Duration::from_secs(15);
/// Any other WebDriver command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two looks at the DOM (or the driver's status) while waiting.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// After SIGTERM, how long the driver's process group may take to exit.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The app binary: `WALKIE_APP_BIN`, else `walkie-app` in the test's target
/// directory (`cargo build -p walkie-app` puts it there).
pub fn app_binary() -> Result<PathBuf> {
    crate::workspace_binary("WALKIE_APP_BIN", "walkie-app", "walkie-app")
}

/// tauri-driver: `WALKIE_TAURI_DRIVER` (scripts/setup.sh exports it), else
/// where setup.sh installs it, else `tauri-driver` on the PATH.
pub fn tauri_driver_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WALKIE_TAURI_DRIVER") {
        return Ok(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let cached = PathBuf::from(home).join(".cache/walkie/tools/bin/tauri-driver");
    if cached.exists() {
        return Ok(cached);
    }
    Ok(PathBuf::from("tauri-driver"))
}

fn free_loopback_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// An error the remote end reported (W3C error code, e.g. `no such element`).
#[derive(Debug, thiserror::Error)]
#[error("WebDriver {command}: {code}: {message}")]
pub struct WebDriverError {
    pub command: String,
    pub code: String,
    pub message: String,
}

/// The HTTP side of one session; cheap to clone (elements hold one).
#[derive(Clone)]
struct Session {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`
    url: String,
}

impl Session {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        send(&self.http, method, &format!("{}{path}", self.url), body).await
    }
    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
}

/// One WebDriver command; returns the response's `value`.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Result<Value> {
    let command = format!("{method} {url}");
    let mut req = http.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.with_context(|| command.clone())?;
    let status = resp.status();
    let text = resp.text().await.with_context(|| command.clone())?;
    let mut json: Value = serde_json::from_str(&text)
        .with_context(|| format!("{command}: {status}, not JSON: {text}"))?;
    let value = json
        .get_mut("value")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if !status.is_success() {
        let field = |k: &str| {
            value
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        return Err(WebDriverError {
            command,
            code: field("error"),
            message: field("message"),
        }
        .into());
    }
    Ok(value)
}

/// `true` for errors that mean "not there (yet)" while polling the DOM, or
/// "redrawn under the query" (a stale element: find it again).
pub fn is_transient(e: &anyhow::Error) -> bool {
    e.downcast_ref::<WebDriverError>().is_some_and(|w| {
        matches!(
            w.code.as_str(),
            "no such element" | "stale element reference"
        )
    })
}

fn element_id(value: &Value) -> Result<String> {
    value
        .get(ELEMENT_KEY)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("not an element reference: {value}"))
}

fn write_png(base64_png: &Value, path: &Path) -> Result<()> {
    let data = base64_png
        .as_str()
        .context("screenshot: the value is not a string")?;
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .context("screenshot: not base64")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
}

/// The live processes (zombies do not count) of process group `pgid`.
fn live_group_members(pgid: libc::pid_t) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // `pid (comm) state ppid pgrp ...`; comm may hold anything.
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?;
        let pgrp = fields.nth(1)?.parse::<libc::pid_t>().ok()?;
        (pgrp == pgid && state != "Z").then_some(pid)
    })
    .collect()
}

/// The live process of group `pgid` running `app` (a canonical path).
fn app_pid_in(pgid: libc::pid_t, app: &Path) -> Option<u32> {
    live_group_members(pgid).into_iter().find(|pid| {
        // A rebuild replaces the file under a running app: the kernel
        // then shows `<path> (deleted)`.
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| {
            let exe = exe.to_string_lossy();
            Path::new(exe.trim_end_matches(" (deleted)")) == app
        })
    })
}

/// The app's (and the drivers') stderr lines, as they arrive.
struct Log {
    lines: Mutex<Vec<String>>,
    count: tokio::sync::watch::Sender<usize>,
}

/// tauri-driver in its own process group; WebKitWebDriver and the app
/// join it. Dropping it ends the whole group.
struct DriverGroup(ChildGuard);

impl Drop for DriverGroup {
    /// Sends SIGTERM to the group and waits (up to `EXIT_GRACE`) until all
    /// of it has exited, else SIGKILLs it.
    fn drop(&mut self) {
        let pgid = self.0.pid() as libc::pid_t;
        // SAFETY: kill(2) on the process group we created for our child.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + EXIT_GRACE;
        let _ = self.0.child().wait();
        // Not kill(-pgid, 0): WebKitWebDriver is orphaned when tauri-driver
        // exits, and its zombie waits for PID 1 to reap it (here ~1.5 s).
        while !live_group_members(pgid).is_empty() {
            if Instant::now() >= deadline {
                tracing::warn!("the app or a driver outlived SIGTERM; killing them");
                // SAFETY: as above.
                unsafe { libc::kill(-pgid, libc::SIGKILL) };
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

/// tauri-driver, WebKitWebDriver and the app under WebDriver, with one
/// session on the app's webview. See the module docs.
pub struct AppDriver {
    session: Session,
    session_open: bool,
    /// The app binary, canonical (as `/proc/PID/exe` shows it).
    app: PathBuf,
    log: Arc<Log>,
    // Dropped after Drop::drop has deleted the session.
    driver: DriverGroup,
}

impl AppDriver {
    /// Starts tauri-driver on free ports in `desktop` with `env` added to
    /// its environment (and so to the app's), waits until it answers, and
    /// opens a session on `app`: WebKitWebDriver launches the app then.
    pub async fn start<K, V>(
        desktop: &Desktop,
        app: &Path,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        Self::start_with_args(desktop, app, &[], env).await
    }

    /// [`AppDriver::start`], the app started with `args`.
    pub async fn start_with_args<K, V>(
        desktop: &Desktop,
        app: &Path,
        args: &[&str],
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self>
    where
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let port = free_loopback_port()?;
        let native_port = free_loopback_port()?;
        let mut cmd = desktop.command(tauri_driver_binary()?);
        cmd.args(["--port", &port.to_string()])
            .args(["--native-port", &native_port.to_string()])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that drop ends WebKitWebDriver and
            // the app too (tauri-driver SIGKILLs only WebKitWebDriver).
            .process_group(0);
        let mut driver = DriverGroup(ChildGuard::spawn("tauri-driver", &mut cmd)?);

        let log = Arc::new(Log {
            lines: Mutex::new(Vec::new()),
            count: tokio::sync::watch::Sender::new(0),
        });
        let stderr = driver
            .0
            .child()
            .stderr
            .take()
            .context("tauri-driver stderr")?;
        let stdout = driver
            .0
            .child()
            .stdout
            .take()
            .context("tauri-driver stdout")?;
        for (stream, name) in [
            (Box::new(stderr) as Box<dyn std::io::Read + Send>, "stderr"),
            (Box::new(stdout), "stdout"),
        ] {
            let log = log.clone();
            std::thread::Builder::new()
                .name(format!("tauri-driver {name}"))
                .spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                        eprintln!("[app/driver] {line}");
                        if let Ok(mut lines) = log.lines.lock() {
                            lines.push(line);
                            log.count.send_replace(lines.len());
                        }
                    }
                })?;
        }

        let http = reqwest::Client::builder()
            .timeout(COMMAND_TIMEOUT)
            .build()?;
        // 127.0.0.1, not localhost: tauri-driver forwards to the native
        // driver on the host named in our request's Host header.
        let base = format!("http://127.0.0.1:{port}");

        // Ready when WebKitWebDriver answers /status through tauri-driver.
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if let Some(status) = driver.0.child().try_wait()? {
                bail!("tauri-driver exited with {status} before it was ready (see its log above)");
            }
            let status = send(&http, reqwest::Method::GET, &format!("{base}/status"), None).await;
            match status {
                Ok(v) if v.get("ready").and_then(Value::as_bool) == Some(true) => break,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await
                }
                Ok(v) => bail!("tauri-driver not ready after {DRIVER_START_TIMEOUT:?}: {v}"),
                Err(e) => {
                    return Err(e.context(format!(
                        "tauri-driver did not answer within {DRIVER_START_TIMEOUT:?}"
                    )))
                }
            }
        }

        let caps = json!({"capabilities": {"alwaysMatch": {"tauri:options": {
            "application": app,
            "args": args,
        }}}});
        // WebKitWebDriver waits for the app's webview however long it takes,
        // even when the app has exited: watch the app process meanwhile.
        let canonical = std::fs::canonicalize(app)
            .with_context(|| format!("the app binary {}", app.display()))?;
        let pgid = driver.0.pid() as libc::pid_t;
        let request = http
            .post(format!("{base}/session"))
            .timeout(SESSION_TIMEOUT)
            .json(&caps)
            .send();
        let watch = async {
            let since = Instant::now();
            let mut seen = false;
            loop {
                tokio::time::sleep(POLL_INTERVAL).await;
                match app_pid_in(pgid, &canonical) {
                    Some(_) => seen = true,
                    None if seen => break "the app exited before WebDriver reached its webview",
                    None if since.elapsed() > APP_LAUNCH_TIMEOUT => {
                        break "WebKitWebDriver did not launch the app (or it exited at once)"
                    }
                    None => {}
                }
            }
        };
        let created = tokio::select! {
            created = request => created.context("creating the WebDriver session (launches the app)")?,
            why = watch => bail!("{why} (see its log above): {}", app.display()),
        };
        let status = created.status();
        let body: Value = created.json().await.context("session response")?;
        let value = &body["value"];
        let Some(id) = value.get("sessionId").and_then(Value::as_str) else {
            bail!(
                "WebDriver could not start {}: {status}: {value}",
                app.display()
            );
        };
        let session = Session {
            http,
            url: format!("{base}/session/{id}"),
        };
        tracing::debug!(session = id, "WebDriver session on the app");
        Ok(Self {
            session,
            session_open: true,
            app: canonical,
            log,
            driver,
        })
    }

    /// The app's process id (WebKitWebDriver launched it), e.g. to signal
    /// it. Deleting the session ends the app abruptly (no clean exit).
    pub fn app_pid(&self) -> Option<u32> {
        app_pid_in(self.driver.0.pid() as libc::pid_t, &self.app)
    }

    /// All log lines so far (the app's stderr and the drivers').
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until a log line after the first `since` lines contains all
    /// `needles`; returns its index and the line (pass `index + 1` as the
    /// next `since` to wait for what comes after it).
    pub async fn wait_for_log_after(
        &self,
        since: usize,
        needles: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String)> {
        let mut seen = self.log.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            seen.borrow_and_update();
            let lines = self.log_lines();
            let found = lines
                .iter()
                .enumerate()
                .skip(since)
                .find(|(_, l)| needles.iter().all(|n| l.contains(n)));
            if let Some((i, line)) = found {
                return Ok((i, line.clone()));
            }
            match tokio::time::timeout_at(deadline, seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the app's log ended without a line containing {needles:?}"),
                Err(_) => bail!("no log line containing {needles:?} within {timeout:?}"),
            }
        }
    }

    /// Waits until a log line contains `needle`; returns the first such line.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let mut seen = self.log.count.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            seen.borrow_and_update();
            if let Some(line) = self.log_lines().into_iter().find(|l| l.contains(needle)) {
                return Ok(line);
            }
            match tokio::time::timeout_at(deadline, seen.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the app's log ended without a line containing {needle:?}"),
                Err(_) => bail!("no log line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// The first element matching a CSS selector (`no such element` if none).
    pub async fn find(&self, css: &str) -> Result<Element> {
        let v = self
            .session
            .post("/element", json!({"using": "css selector", "value": css}))
            .await?;
        Ok(Element {
            session: self.session.clone(),
            id: element_id(&v)?,
            css: css.to_owned(),
        })
    }

    /// Every element matching a CSS selector (maybe none).
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let v = self
            .session
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await?;
        v.as_array()
            .context("find elements: not an array")?
            .iter()
            .map(|e| {
                Ok(Element {
                    session: self.session.clone(),
                    id: element_id(e)?,
                    css: css.to_owned(),
                })
            })
            .collect()
    }

    /// The text of the first element matching `css` (see
    /// [`AppDriver::read`]).
    pub async fn text(&self, css: &str) -> Result<String> {
        self.read(css, |el| async move { el.text().await }).await
    }

    /// A DOM property of the first element matching `css` (see
    /// [`AppDriver::read`]).
    pub async fn property(&self, css: &str, name: &str) -> Result<Value> {
        self.read(css, |el| async move { el.property(name).await })
            .await
    }

    /// Reads the first element matching `css`, finding it again while it is
    /// missing or was replaced by a re-render (the panel redraws on every
    /// status change), up to the command timeout.
    async fn read<T, F, Fut>(&self, css: &str, read: F) -> Result<T>
    where
        F: Fn(Element) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            match async { read(self.find(css).await?).await }.await {
                Ok(value) => return Ok(value),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(e) => return Err(e.context(format!("reading {css}"))),
            }
        }
    }

    /// Clicks the first element matching `css`, finding it again while it
    /// is missing or was replaced by a re-render (the panel redraws on
    /// every status change), up to `timeout`.
    pub async fn click(&self, css: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            match async { self.find(css).await?.click().await }.await {
                Ok(()) => return Ok(()),
                Err(e) if is_transient(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Err(e) => return Err(e.context(format!("clicking {css}"))),
            }
        }
    }

    /// Polls the DOM until the first element matching `css` exists and its
    /// text satisfies `predicate`; returns that element.
    pub async fn wait_for(
        &self,
        css: &str,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Element> {
        Ok(self.wait_for_match(css, predicate, timeout).await?.0)
    }

    /// Like [`AppDriver::wait_for`], returning the text that satisfied
    /// `predicate`: reading it again from the element could find it
    /// replaced by the panel's next re-render.
    pub async fn wait_for_text(
        &self,
        css: &str,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        Ok(self.wait_for_match(css, predicate, timeout).await?.1)
    }

    async fn wait_for_match(
        &self,
        css: &str,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<(Element, String)> {
        let deadline = Instant::now() + timeout;
        let mut last: Option<String> = None;
        loop {
            let found = async {
                let Some(el) = self.find_all(css).await?.into_iter().next() else {
                    return Ok(None);
                };
                let text = el.text().await?;
                Ok::<_, anyhow::Error>(Some((el, text)))
            }
            .await;
            match found {
                Ok(Some((el, text))) => {
                    if predicate(&text) {
                        return Ok((el, text));
                    }
                    last = Some(text);
                }
                Ok(None) => last = None,
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                match last {
                    Some(text) => bail!(
                        "{css:?} still reads {text:?} after {timeout:?}, not what was awaited"
                    ),
                    None => bail!("no element matches {css:?} after {timeout:?}"),
                }
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Runs `script` (a function body: use `return`, and `arguments[i]`)
    /// in the page; returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.session
            .post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Like [`AppDriver::execute`], for a script that calls its last
    /// argument (the callback) with the result, e.g. after a promise.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.session
            .post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// The document's title.
    pub async fn title(&self) -> Result<String> {
        let v = self.session.get("/title").await?;
        v.as_str().map(str::to_owned).context("title: not a string")
    }

    /// Saves a PNG of the panel's viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        write_png(&self.session.get("/screenshot").await?, path)
    }

    /// Deletes the session now, reporting errors (drop does it quietly).
    pub async fn close(mut self) -> Result<()> {
        self.session_open = false;
        self.session
            .call(reqwest::Method::DELETE, "", None)
            .await
            .map(drop)
    }
}

impl Drop for AppDriver {
    fn drop(&mut self) {
        if self.session_open {
            // Drop cannot await: a short-lived runtime on its own thread
            // (so this works inside the test's runtime too).
            let url = self.session.url.clone();
            let deleted = std::thread::spawn(move || -> Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(5))
                        .build()?;
                    send(&http, reqwest::Method::DELETE, &url, None).await
                })?;
                Ok(())
            })
            .join();
            if let Ok(Err(e)) = deleted {
                tracing::debug!(error = %e, "deleting the WebDriver session");
            }
        }
    }
}

/// An element of the panel (found by [`AppDriver::find`]).
pub struct Element {
    session: Session,
    id: String,
    css: String,
}

impl Element {
    async fn get(&self, what: &str) -> Result<Value> {
        self.session
            .get(&format!("/element/{}/{what}", self.id))
            .await
            .with_context(|| format!("element {:?}", self.css))
    }

    async fn post(&self, what: &str, body: Value) -> Result<Value> {
        self.session
            .post(&format!("/element/{}/{what}", self.id), body)
            .await
            .with_context(|| format!("element {:?}", self.css))
    }

    /// Its rendered text.
    pub async fn text(&self) -> Result<String> {
        let v = self.get("text").await?;
        v.as_str().map(str::to_owned).context("text: not a string")
    }

    /// An HTML attribute (`None` if absent), e.g. `data-state`.
    pub async fn attribute(&self, name: &str) -> Result<Option<String>> {
        let v = self.get(&format!("attribute/{name}")).await?;
        Ok(v.as_str().map(str::to_owned))
    }

    /// A DOM property, e.g. `hidden` or `value`.
    pub async fn property(&self, name: &str) -> Result<Value> {
        self.get(&format!("property/{name}")).await
    }

    /// Whether it is displayed (WebDriver's visibility rules).
    pub async fn is_displayed(&self) -> Result<bool> {
        let v = self.get("displayed").await?;
        v.as_bool().context("displayed: not a boolean")
    }

    pub async fn click(&self) -> Result<()> {
        self.post("click", json!({})).await.map(drop)
    }

    /// Types `text` into it (WebDriver key codes such as `\u{E007}`, Enter,
    /// work too).
    pub async fn send_keys(&self, text: &str) -> Result<()> {
        self.post("value", json!({"text": text})).await.map(drop)
    }

    pub async fn clear(&self) -> Result<()> {
        self.post("clear", json!({})).await.map(drop)
    }

    /// Saves a PNG of just this element to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        write_png(&self.get("screenshot").await?, path)
    }

    /// The W3C reference to pass it as a script argument.
    pub fn as_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }
}
