//! A private Secret Service for one test: gnome-keyring-daemon with an
//! unlocked login keyring in a temporary home, on a session bus of its own
//! or on an existing one (a [`crate::desktop::Desktop`]'s). What the keyring
//! crate stores there (Walkie's session, the unplayed-talks key) is real and
//! gone with the test. Owns the daemons (ended on drop) and the readiness
//! check: `org.freedesktop.secrets` has an owner on the bus.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::desktop::ChildGuard;

/// A running, unlocked Secret Service.
pub struct SecretService {
    bus_address: String,
    home: tempfile::TempDir,
    _keyring: ChildGuard,
    _bus: Option<ChildGuard>,
}

impl SecretService {
    /// On a private session bus.
    pub fn start() -> Result<Self> {
        let mut cmd = Command::new("dbus-daemon");
        cmd.args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut bus = ChildGuard::spawn("dbus-daemon", &mut cmd)?;
        let stdout = bus.child().stdout.take().context("dbus-daemon stdout")?;
        let mut address = String::new();
        BufReader::new(stdout).read_line(&mut address)?;
        let address = address.trim().to_owned();
        if address.is_empty() {
            bail!("dbus-daemon printed no address");
        }
        Self::start_on(&address, Some(bus))
    }

    /// On an existing session bus (e.g. a `Desktop`'s).
    pub fn on_bus(bus_address: &str) -> Result<Self> {
        Self::start_on(bus_address, None)
    }

    fn start_on(bus_address: &str, bus: Option<ChildGuard>) -> Result<Self> {
        let home = tempfile::Builder::new()
            .prefix("walkie-keyring-")
            .tempdir()?;
        let mut cmd = Command::new("gnome-keyring-daemon");
        cmd.args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", bus_address)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_RUNTIME_DIR", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut keyring = ChildGuard::spawn("gnome-keyring-daemon", &mut cmd)?;
        {
            // The login keyring's password, on stdin, then EOF.
            let mut stdin = keyring
                .child()
                .stdin
                .take()
                .context("gnome-keyring-daemon stdin")?;
            stdin.write_all(b"walkie-test")?;
        }
        let service = Self {
            bus_address: bus_address.to_owned(),
            home,
            _keyring: keyring,
            _bus: bus,
        };
        service.wait_ready(Duration::from_secs(10))?;
        Ok(service)
    }

    /// Waits until the Secret Service name is owned on the bus.
    fn wait_ready(&self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let out = self
                .command("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output()
                .context("running dbus-send (apt dbus)")?;
            if String::from_utf8_lossy(&out.stdout).contains("boolean true") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("gnome-keyring-daemon did not own org.freedesktop.secrets within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The session bus the service is on.
    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// Environment a client needs to reach this service.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "DBUS_SESSION_BUS_ADDRESS".to_owned(),
            self.bus_address.clone(),
        )]
    }

    /// A command on this service's bus.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env()).env("HOME", self.home.path());
        cmd
    }

    /// `secret-tool lookup ATTR VALUE …`: the stored secret, if any.
    pub fn lookup(&self, attributes: &[(&str, &str)]) -> Result<Option<String>> {
        let mut cmd = self.command("secret-tool");
        cmd.arg("lookup");
        for (k, v) in attributes {
            cmd.args([k, v]);
        }
        let out = cmd
            .output()
            .context("running secret-tool (apt libsecret-tools)")?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }
}
