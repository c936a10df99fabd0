//! A real Synapse for one test: its own temporary directory and free
//! loopback port, stock rate limits except login and registration, users
//! registered through the shared-secret admin API. The server is stopped
//! when the value is dropped (also when the test panics, after printing its
//! log) and dies with the test process (PR_SET_PDEATHSIG) on Ctrl-C.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::json;
use walkie_core::{Account, SignInRequest};

/// Server name of every test homeserver: user ids are `@name:localhost`.
pub const SERVER_NAME: &str = "localhost";
/// Password of every registered test user.
pub const TEST_PASSWORD: &str = "walkie-test-password";

const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A registered user and the session the registration returned.
#[derive(Debug, Clone)]
pub struct Registered {
    pub user_id: String,
    pub localpart: String,
    pub password: String,
    pub access_token: String,
    pub device_id: String,
}

/// A running Synapse. See the module docs.
pub struct Synapse {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    shared_secret: String,
    log_path: PathBuf,
    startup: Duration,
    http: reqwest::Client,
    /// Print the log's tail when dropped (tests); off for long runs.
    log_on_drop: bool,
}

/// The Python of the Synapse virtualenv that `scripts/setup.sh` creates.
pub fn synapse_python() -> Result<PathBuf> {
    let path = match std::env::var_os("WALKIE_SYNAPSE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set")?;
            PathBuf::from(home).join(".cache/walkie/synapse-venv/bin/python")
        }
    };
    if !path.exists() {
        bail!(
            "Synapse is not installed: {} does not exist. Run `bash scripts/setup.sh` \
             (the README's test command does) or set WALKIE_SYNAPSE_PYTHON.",
            path.display()
        );
    }
    Ok(path)
}

fn free_loopback_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn random_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    Ok(hex::encode(buf))
}

/// Synapse's signing key file: `ed25519 <key id> <unpadded base64 seed>`.
fn signing_key_line() -> Result<String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("getrandom: {e}"))?;
    Ok(format!(
        "ed25519 a_test {}\n",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(seed)
    ))
}

/// Python logging configuration: INFO to stderr (which goes to the log file).
fn log_config() -> serde_json::Value {
    json!({
        "version": 1,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        }},
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}},
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "disable_existing_loggers": false,
    })
}

/// How a Synapse takes part in federation (see
/// [`Synapse::start_federating`]).
#[derive(Debug, Clone)]
pub struct Federation {
    /// The port its federation listener binds on 127.0.0.1.
    pub listen_port: u16,
    /// Its server name, `127.0.0.1:PORT`: the port other servers dial (a
    /// [`DelayProxy`](crate::delay_proxy::DelayProxy) in front of
    /// `listen_port`, or `listen_port` itself).
    pub server_name: String,
}

impl Federation {
    /// A free port to listen on, and the server name other servers reach
    /// it by (`dial_port`, a proxy's, or `None`: the listener itself).
    pub fn on_free_port(dial_port: Option<u16>) -> Result<Self> {
        let listen_port = free_loopback_port()?;
        Ok(Self {
            listen_port,
            server_name: format!("127.0.0.1:{}", dial_port.unwrap_or(listen_port)),
        })
    }
}

/// Synapse could not bind its federation listener: the port, chosen
/// before (a proxy dials it), was taken in the meantime by another process.
/// Choose new ports and start again ([`Synapse::start_federating`]'s
/// caller: the port is part of how the other server reaches this one).
#[derive(Debug, thiserror::Error)]
#[error("the federation port {0} was taken before Synapse bound it")]
pub struct FederationPortTaken(pub u16);

/// Adds a TLS federation listener (a self-signed certificate made with
/// openssl) and the settings two loopback servers need to federate
/// (measured in DESIGN.md: unchecked certificates, no IP range block, no
/// trusted key server).
fn federate(cfg: &mut serde_json::Value, dir: &Path, fed: &Federation) -> Result<()> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if !cert.exists() {
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .context("running openssl (apt package openssl) for a TLS certificate")?;
        ensure!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let obj = cfg.as_object_mut().context("config is an object")?;
    obj.insert("server_name".into(), json!(fed.server_name));
    obj.insert("tls_certificate_path".into(), json!(cert.to_string_lossy()));
    obj.insert("tls_private_key_path".into(), json!(key.to_string_lossy()));
    obj.insert("federation_verify_certificates".into(), json!(false));
    obj.insert("ip_range_blacklist".into(), json!([]));
    obj.insert("federation_ip_range_blacklist".into(), json!([]));
    obj.insert("trusted_key_servers".into(), json!([]));
    let listeners = obj
        .get_mut("listeners")
        .and_then(|l| l.as_array_mut())
        .context("listeners")?;
    listeners.push(json!({
        "port": fed.listen_port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": true,
        "x_forwarded": false,
        "resources": [{"names": ["federation"], "compress": false}],
    }));
    Ok(())
}

/// The homeserver configuration (JSON is valid YAML).
fn config(dir: &Path, port: u16, shared_secret: &str, macaroon: &str) -> serde_json::Value {
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    json!({
        "server_name": SERVER_NAME,
        "pid_file": p("homeserver.pid"),
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": false,
            "x_forwarded": false,
            "resources": [{"names": ["client"], "compress": false}],
        }],
        "database": {"name": "sqlite3", "args": {"database": p("homeserver.db")}},
        "media_store_path": p("media_store"),
        "signing_key_path": p("signing.key"),
        "log_config": p("log.yaml"),
        "registration_shared_secret": shared_secret,
        "macaroon_secret_key": macaroon,
        "form_secret": macaroon,
        "report_stats": false,
        "enable_metrics": false,
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "presence": {"enabled": false},
        // Raised because one test run signs in dozens of devices from
        // 127.0.0.1, which the stock per-address limit (burst 5, then one per
        // ~5 min) answers with 429. Everything a user does while talking
        // (rc_message, media, to-device, joins) keeps Synapse's stock limits.
        "rc_login": {
            "address": {"per_second": 100, "burst_count": 1000},
            "account": {"per_second": 100, "burst_count": 1000},
            "failed_attempts": {"per_second": 100, "burst_count": 1000},
        },
        "rc_registration": {"per_second": 100, "burst_count": 1000},
    })
}

impl Synapse {
    /// Dropped, it stops without printing its log (a soak or a bench,
    /// whose output is not captured the way a test's is).
    pub fn quiet_on_drop(&mut self) {
        self.log_on_drop = false;
    }

    /// Starts a fresh Synapse and waits until `/_matrix/client/versions`
    /// answers. Fails with Synapse's log if it exits or does not answer.
    pub async fn start() -> Result<Self> {
        Self::start_with(serde_json::Value::Null).await
    }

    /// Like [`Synapse::start`], with `overrides` (a JSON object) merged over
    /// the top-level keys of the configuration.
    pub async fn start_with(overrides: serde_json::Value) -> Result<Self> {
        Self::start_inner(overrides, None).await
    }

    /// A Synapse that federates: named `fed.server_name`, its federation
    /// listener (TLS, a self-signed certificate) on `fed.listen_port`,
    /// certificates of other servers not checked, loopback addresses allowed.
    pub async fn start_federating(fed: &Federation) -> Result<Self> {
        Self::start_inner(serde_json::Value::Null, Some(fed)).await
    }

    async fn start_inner(overrides: serde_json::Value, fed: Option<&Federation>) -> Result<Self> {
        let python = synapse_python()?;
        let mut dir = tempfile::Builder::new()
            .prefix("walkie-synapse-")
            .tempdir()?;
        let shared_secret = random_token(16)?;
        let macaroon = random_token(16)?;
        std::fs::write(dir.path().join("signing.key"), signing_key_line()?)?;
        std::fs::write(
            dir.path().join("log.yaml"),
            serde_json::to_vec_pretty(&log_config())?,
        )?;
        let log_path = dir.path().join("homeserver.log");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;

        // A port can be taken between choosing and binding it: try again.
        let mut last_err = None;
        for _attempt in 0..3 {
            let port = free_loopback_port()?;
            let mut cfg = config(dir.path(), port, &shared_secret, &macaroon);
            if let Some(fed) = fed {
                federate(&mut cfg, dir.path(), fed)?;
            }
            if let (Some(cfg), Some(extra)) = (cfg.as_object_mut(), overrides.as_object()) {
                cfg.extend(extra.clone());
            }
            let cfg_path = dir.path().join("homeserver.yaml");
            std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
            let log = std::fs::File::create(&log_path)?;
            let started = Instant::now();
            let child = spawn_synapse(&python, dir.path(), log)?;
            let mut server = Synapse {
                child: Some(child),
                dir,
                port,
                shared_secret: shared_secret.clone(),
                log_path: log_path.clone(),
                startup: Duration::ZERO,
                http: http.clone(),
                log_on_drop: true,
            };
            match server.wait_until_ready(started).await {
                Ok(()) => {
                    server.startup = started.elapsed();
                    eprintln!(
                        "synapse: ready at {} in {} ms",
                        server.url(),
                        server.startup.as_millis()
                    );
                    return Ok(server);
                }
                Err(e) => {
                    let log = server.log_tail(200);
                    let addr_in_use = log.contains("Address already in use");
                    server.stop();
                    if !addr_in_use {
                        bail!("{e:#}\n--- synapse log ---\n{log}");
                    }
                    if let Some(fed) = fed {
                        if std::net::TcpListener::bind(("127.0.0.1", fed.listen_port)).is_err() {
                            return Err(FederationPortTaken(fed.listen_port).into());
                        }
                    }
                    last_err = Some(e);
                    dir = std::mem::replace(&mut server.dir, tempfile::tempdir()?);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("synapse did not start")))
    }

    /// Kills Synapse with SIGKILL (a crash: no clean shutdown, nothing
    /// flushed) and reaps it.
    pub fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("synapse is not running")?;
        child.kill()?;
        child.wait()?;
        eprintln!("synapse: killed (SIGKILL)");
        Ok(())
    }

    /// Starts Synapse again after [`kill`](Self::kill): same port,
    /// configuration, database and media store; returns once it answers.
    pub async fn restart(&mut self) -> Result<()> {
        ensure!(self.child.is_none(), "synapse is still running");
        let python = synapse_python()?;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)?;
        let started = Instant::now();
        self.child = Some(spawn_synapse(&python, self.dir.path(), log)?);
        self.wait_until_ready(started).await?;
        eprintln!("synapse: restarted in {} ms", started.elapsed().as_millis());
        Ok(())
    }

    async fn wait_until_ready(&mut self, started: Instant) -> Result<()> {
        let url = format!("{}/_matrix/client/versions", self.url());
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("synapse exited during start-up with {status}");
                }
            }
            if let Ok(resp) = self.http.get(&url).send().await {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("synapse did not answer {url} within {START_TIMEOUT:?}");
            }
            // Poll interval of the readiness probe (Synapse has no readiness
            // signal other than answering HTTP).
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The client-server API base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How long start-up took until `/versions` answered.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of Synapse's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = std::fs::File::open(&self.log_path) else {
            return String::from("(no log written)");
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Registers `localpart` with [`TEST_PASSWORD`] through the
    /// shared-secret registration API.
    pub async fn register(&self, localpart: &str) -> Result<Registered> {
        type HmacSha1 = Hmac<sha1::Sha1>;
        let endpoint = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce: serde_json::Value = self
            .http
            .get(&endpoint)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let nonce = nonce["nonce"]
            .as_str()
            .context("no nonce in registration answer")?;
        let mut mac = HmacSha1::new_from_slice(self.shared_secret.as_bytes())?;
        for (i, part) in [nonce, localpart, TEST_PASSWORD, "notadmin"]
            .iter()
            .enumerate()
        {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let body = json!({
            "nonce": nonce,
            "username": localpart,
            "password": TEST_PASSWORD,
            "admin": false,
            "mac": hex::encode(mac.finalize().into_bytes()),
        });
        let resp = self.http.post(&endpoint).json(&body).send().await?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            bail!("registering {localpart} failed with {status}: {answer}");
        }
        let field = |k: &str| -> Result<String> {
            Ok(answer[k]
                .as_str()
                .with_context(|| format!("no {k} in {answer}"))?
                .to_owned())
        };
        Ok(Registered {
            user_id: field("user_id")?,
            localpart: localpart.to_owned(),
            password: TEST_PASSWORD.to_owned(),
            access_token: field("access_token")?,
            device_id: field("device_id")?,
        })
    }

    /// Signs `user` in as a new device with its own SQLite store under `store`.
    pub async fn sign_in(&self, user: &Registered, store: &Path) -> Result<Account> {
        let req = SignInRequest {
            server: self.url(),
            user: user.localpart.clone(),
            password: user.password.clone(),
            device_display_name: format!("walkie test {}", user.localpart),
        };
        Ok(Account::sign_in(store, &req, walkie_core::store_key::Fallback::File).await?)
    }

    /// A raw client-server API GET with `access_token`, answered as JSON.
    pub async fn get_json(&self, path: &str, access_token: &str) -> Result<serde_json::Value> {
        let resp = self
            .http
            .get(format!("{}{}", self.url(), path))
            .bearer_auth(access_token)
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            bail!("GET {path} failed with {status}: {body}");
        }
        Ok(body)
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we own and have not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs Synapse from `dir` (its `homeserver.yaml`), output to `log`; it gets
/// SIGTERM when the test process dies.
fn spawn_synapse(python: &Path, dir: &Path, log: std::fs::File) -> Result<Child> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "synapse.app.homeserver", "-c"])
        .arg(dir.join("homeserver.yaml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to send
    // SIGTERM to Synapse when the test process dies.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("starting {}", python.display()))
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.stop();
        if !self.log_on_drop {
            return;
        }
        // libtest shows a test's captured output only when the test fails,
        // so the log appears exactly when it is needed (whether the test
        // failed by panicking or by returning an error).
        eprintln!(
            "--- synapse log ({}), last 200 lines ---\n{}\n--- end of synapse log ---",
            self.log_path.display(),
            self.log_tail(200)
        );
    }
}
