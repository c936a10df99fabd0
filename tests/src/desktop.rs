//! A headless desktop for one test: Xvfb on a display it picks itself
//! (`-displayfd`), a private D-Bus session bus, and `trayer` as the tray
//! host. Every process is killed when the value is dropped.

use std::{
    io::{BufRead, BufReader, Read},
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Kills the child on drop (and with the test process, via PDEATHSIG).
pub struct ChildGuard {
    name: &'static str,
    child: Child,
}

impl ChildGuard {
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Self> {
        // SAFETY: prctl is async-signal-safe; it asks the kernel to end the
        // helper when the test process dies (e.g. on Ctrl-C).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| {
            format!("cannot start {name}: is it installed? (scripts/setup.sh installs it)")
        })?;
        Ok(Self { name, child })
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            tracing::debug!(helper = self.name, "stopped");
        }
    }
}

pub struct Desktop {
    display: String,
    bus_address: String,
    // Dropped in reverse order of start: tray host, bus, X server.
    _trayer: ChildGuard,
    _dbus: ChildGuard,
    _xvfb: ChildGuard,
}

impl Desktop {
    pub fn start() -> Result<Self> {
        // Xvfb writes the display number it chose to the given fd once it
        // accepts connections: that is the readiness signal.
        let (mut reader, writer) = std::io::pipe()?;
        let fd = writer.as_raw_fd();
        let mut cmd = Command::new("Xvfb");
        cmd.args([
            "-displayfd",
            &fd.to_string(),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: fcntl on an fd we own, to let the child inherit it.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let xvfb = ChildGuard::spawn("Xvfb", &mut cmd)?;
        drop(writer);
        let mut number = String::new();
        reader
            .read_to_string(&mut number)
            .context("reading Xvfb's display number")?;
        let number = number.trim();
        if number.is_empty() {
            bail!("Xvfb exited without opening a display");
        }
        let display = format!(":{number}");

        let mut dbus_cmd = Command::new("dbus-daemon");
        dbus_cmd
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut dbus = ChildGuard::spawn("dbus-daemon", &mut dbus_cmd)?;
        let stdout = dbus.child().stdout.take().context("dbus-daemon stdout")?;
        let mut bus_address = String::new();
        BufReader::new(stdout).read_line(&mut bus_address)?;
        let bus_address = bus_address.trim().to_owned();
        if bus_address.is_empty() {
            bail!("dbus-daemon printed no address");
        }

        let mut trayer_cmd = Command::new("trayer");
        trayer_cmd
            .args([
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "request",
                "--height",
                "32",
            ])
            .args([
                "--transparent",
                "false",
                "--tint",
                "0x303030",
                "--SetDockType",
                "true",
            ])
            .env("DISPLAY", &display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let trayer = ChildGuard::spawn("trayer", &mut trayer_cmd)?;
        let desktop = Self {
            display,
            bus_address,
            _trayer: trayer,
            _dbus: dbus,
            _xvfb: xvfb,
        };
        // The tray host must own the system tray selection before an app
        // looks for it; xdotool --sync waits for its window to exist.
        desktop.wait_for_window(&["--class", "trayer"], Duration::from_secs(20))?;
        Ok(desktop)
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// A command with this desktop's DISPLAY and session bus.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus_address);
        cmd
    }

    /// Waits (xdotool's own `--sync`) until a window matching
    /// `xdotool search <search>` exists; returns its window ids.
    pub fn wait_for_window(&self, search: &[&str], timeout: Duration) -> Result<Vec<String>> {
        let mut cmd = self.command("timeout");
        cmd.arg(format!("{}", timeout.as_secs().max(1)))
            .args(["xdotool", "search", "--sync"])
            .args(search);
        let started = Instant::now();
        let out = cmd
            .output()
            .context("running xdotool (scripts/setup.sh installs it)")?;
        if !out.status.success() {
            bail!(
                "no window matching {search:?} on {} after {:?}",
                self.display,
                started.elapsed()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Saves a PNG of the whole screen (ImageMagick's `import`).
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let status = self
            .command("import")
            .args(["-window", "root"])
            .arg(path)
            .status()?;
        if !status.success() {
            bail!(
                "import -window root {} failed with {status}",
                path.display()
            );
        }
        Ok(())
    }
}
