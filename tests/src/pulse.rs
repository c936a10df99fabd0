//! A private PulseAudio server for one test: its own temporary directory and
//! UNIX socket, so tests running in parallel never hear each other. It owns:
//!
//! - `speaker`: a null sink, the default sink. Whatever an app plays ends up
//!   in `speaker.monitor`, which [`PulseAudio::record_speaker`] records.
//! - `micfeed`: a null sink that [`PulseAudio::play_into_mic`] plays WAVs
//!   into, and `mic`: a remap of `micfeed.monitor`, the default source. An
//!   app capturing the default input hears exactly what was played
//!   (measured: correlation 1.000 and gain 1.000 with the played WAV, through
//!   both cpal's ALSA host via the pulse plugin and cpal's native PulseAudio
//!   host).
//! - `pacer`: a null sink fed by two `module-loopback`s (from
//!   `micfeed.monitor` and `speaker.monitor`, 20 ms). A null sink that no
//!   stream asks for low latency renders in 2 s blocks, and a new stream's
//!   latency request only takes effect at the next block: without the pacer,
//!   the first capture callback came 0.2–2 s after `play()`. With it, and the
//!   two sinks suspended and resumed once after the loopbacks exist, it comes
//!   after 15–50 ms from the first stream on. Ignore it as a device.
//!
//! Clients reach the server through [`PulseAudio::env`]: `PULSE_SERVER`
//! (libpulse, hence paplay/pactl and ALSA's pulse plugin, and the pure-Rust
//! `pulseaudio` crate behind cpal's `pulseaudio` host all honour it),
//! `PULSE_COOKIE` (so no client writes `~/.config/pulse/cookie`) and
//! `PULSE_CLIENTCONFIG` (`autospawn = no`, so a client never starts a server of
//! its own). The server itself runs with a cleared environment: HOME,
//! XDG_CONFIG_HOME, XDG_RUNTIME_DIR, PULSE_RUNTIME_PATH and PULSE_STATE_PATH
//! all inside the temporary directory, no DISPLAY or D-Bus address, so it
//! registers nowhere shared. It runs with `--disable-shm=yes`: with shared
//! memory, an ALSA-plugin client whose server dies stops getting callbacks and
//! then deadlocks in libpulse when it drops its cpal stream; without it, the
//! client gets errors (and can drop its stream), which a test can observe.
//!
//! The server is stopped and its directory removed when the value is dropped
//! (its log is printed then, which libtest shows only for a failing test); it
//! also dies with the test process (PR_SET_PDEATHSIG) on Ctrl-C. That signal
//! follows the *thread* that started it, so start the server (and recorders)
//! on the test's own thread, not on a pool thread that may exit first. A
//! server that does not start fails [`PulseAudio::start`] with its log.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};

const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Any one pactl call; a healthy local server answers in milliseconds.
const PACTL_TIMEOUT: Duration = Duration::from_secs(10);
/// The property the harness's own paplay/parecord streams carry, so that
/// [`PulseAudio::our_streams`] can leave them out.
pub const HARNESS_PROPERTY: &str = "walkie.harness";
/// Sample rate of every sink and source, and of [`PulseAudio::record_speaker`].
pub const RATE: u32 = 48_000;

/// A running private PulseAudio server. See the module docs.
pub struct PulseAudio {
    child: Option<Child>,
    dir: tempfile::TempDir,
    log_path: PathBuf,
    startup: Duration,
    next_id: AtomicU64,
}

/// A `parecord` writing a WAV file; [`Recorder::stop`] finishes the file.
pub struct Recorder {
    child: Option<Child>,
    path: PathBuf,
    log_path: PathBuf,
}

/// Makes the child receive SIGTERM when the test process dies.
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to send
    // SIGTERM to the child when the test process dies.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to a child we own and have not reaped.
fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            // SAFETY: kill(2) on the pid of our child, which the waiting
            // thread has not reaped (it has not returned).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            bail!("{cmd:?} did not finish within {timeout:?}")
        }
    }
}

/// The server's start-up script: see the module docs for what each part is.
fn server_script(socket: &Path) -> String {
    format!(
        "load-module module-native-protocol-unix socket={socket} auth-anonymous=1\n\
         load-module module-null-sink sink_name=speaker rate={RATE} \
         sink_properties='device.description=\"Test speaker\"'\n\
         load-module module-null-sink sink_name=micfeed rate={RATE} \
         sink_properties='device.description=\"Test microphone feed\"'\n\
         load-module module-remap-source master=micfeed.monitor source_name=mic \
         source_properties='device.description=\"Test microphone\"'\n\
         load-module module-null-sink sink_name=pacer rate={RATE} \
         sink_properties='device.description=\"Test harness pacer\"'\n\
         load-module module-loopback source=micfeed.monitor sink=pacer latency_msec=20 \
         source_dont_move=true sink_dont_move=true\n\
         load-module module-loopback source=speaker.monitor sink=pacer latency_msec=20 \
         source_dont_move=true sink_dont_move=true\n\
         suspend-sink micfeed 1\n\
         suspend-sink micfeed 0\n\
         suspend-sink speaker 1\n\
         suspend-sink speaker 0\n\
         set-default-sink speaker\n\
         set-default-source mic\n",
        socket = socket.display()
    )
}

impl PulseAudio {
    /// Starts a private server (see the module docs) and waits until
    /// `pactl info` answers with `speaker` and `mic` as the defaults. Fails
    /// with the server's log if it exits or does not answer.
    pub fn start() -> Result<Self> {
        Self::start_with("")
    }

    /// Like [`PulseAudio::start`], with `extra` (PulseAudio CLI commands, one
    /// per line, as in `default.pa`) run at the end of the start-up script.
    /// PulseAudio only logs a failing command and starts anyway, so any
    /// error line in its log during start-up fails this call.
    pub fn start_with(extra: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("walkie-pulse-")
            .tempdir()
            .context("creating the PulseAudio directory")?;
        let root = dir.path();
        for sub in ["home/.config", "runtime", "state"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let socket = root.join("native");
        // sockaddr_un.sun_path holds 108 bytes including the NUL.
        ensure!(
            socket.as_os_str().len() < 108,
            "socket path {} is too long for a UNIX socket: set TMPDIR to a shorter directory",
            socket.display()
        );
        let mut script = server_script(&socket);
        script.push_str(extra);
        script.push('\n');
        let script_path = root.join("server.pa");
        std::fs::write(&script_path, script)?;
        std::fs::write(
            root.join("client.conf"),
            "autospawn = no\nenable-shm = no\n",
        )?;
        let log_path = root.join("pulseaudio.log");
        let log = std::fs::File::create(&log_path)?;

        let started = Instant::now();
        let mut cmd = Command::new("pulseaudio");
        cmd.args(["-n", "-F"])
            .arg(&script_path)
            .args([
                "--daemonize=no",
                "--use-pid-file=no",
                "--system=no",
                "--exit-idle-time=-1",
                "--realtime=no",
                "--high-priority=no",
                "--disable-shm=yes",
                "--log-target=stderr",
                "--log-level=info",
                "--log-time=yes",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root.join("home"))
            .env("XDG_CONFIG_HOME", root.join("home/.config"))
            .env("XDG_RUNTIME_DIR", root.join("runtime"))
            .env("PULSE_RUNTIME_PATH", root.join("runtime"))
            .env("PULSE_STATE_PATH", root.join("state"))
            .env("PULSE_CLIENTCONFIG", root.join("client.conf"))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .context("cannot start pulseaudio: is it installed? (scripts/setup.sh installs it)")?;
        let mut server = PulseAudio {
            child: Some(child),
            dir,
            log_path,
            startup: Duration::ZERO,
            next_id: AtomicU64::new(0),
        };
        if let Err(e) = server.wait_until_ready(started) {
            server.stop();
            bail!(
                "{e:#}\n--- pulseaudio log ---\n{}\n--- end of pulseaudio log ---",
                server.log_tail(200)
            );
        }
        server.startup = started.elapsed();
        eprintln!(
            "pulseaudio: ready at {} in {} ms",
            server.socket().display(),
            server.startup.as_millis()
        );
        Ok(server)
    }

    fn wait_until_ready(&mut self, started: Instant) -> Result<()> {
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("pulseaudio exited during start-up with {status}");
                }
            }
            // The server runs its whole start-up script before it serves any
            // client, so an answer means every module above is loaded.
            let last = match self.pactl(&["info"]) {
                Ok(info)
                    if info.contains("Default Sink: speaker")
                        && info.contains("Default Source: mic") =>
                {
                    // A failing command in a `-F` script is logged and
                    // skipped, and the daemon starts regardless.
                    let errors: Vec<String> = self
                        .log_tail(usize::MAX)
                        .lines()
                        .filter(|l| l.contains(" E: ["))
                        .map(str::to_owned)
                        .collect();
                    ensure!(
                        errors.is_empty(),
                        "pulseaudio logged errors during start-up:\n{}",
                        errors.join("\n")
                    );
                    return Ok(());
                }
                Ok(info) => info,
                Err(e) => format!("{e:#}"),
            };
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "pulseaudio did not answer `pactl info` with speaker/mic as defaults \
                     within {START_TIMEOUT:?}; last answer: {last}"
                );
            }
            // Poll interval of the readiness probe (the socket exists before
            // the server answers, so its presence proves nothing).
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's directory (socket, log, script, client.conf).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's native-protocol socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("native")
    }

    /// How long start-up took until `pactl info` answered.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Environment for a child process (the app, the CLI, a pulse tool) so
    /// that its libpulse, ALSA-pulse-plugin and native cpal traffic goes to
    /// this server. Also see [`PulseAudio::command`], which in addition
    /// removes variables that would pick other devices.
    pub fn env(&self) -> Vec<(String, String)> {
        let root = self.dir.path();
        vec![
            (
                "PULSE_SERVER".into(),
                format!("unix:{}", self.socket().display()),
            ),
            (
                "PULSE_COOKIE".into(),
                root.join("cookie").to_string_lossy().into_owned(),
            ),
            (
                "PULSE_CLIENTCONFIG".into(),
                root.join("client.conf").to_string_lossy().into_owned(),
            ),
        ]
    }

    /// A command with [`PulseAudio::env`] set and PULSE_SINK / PULSE_SOURCE
    /// (libpulse's default-device overrides) removed.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env())
            .env_remove("PULSE_SINK")
            .env_remove("PULSE_SOURCE");
        cmd
    }

    /// Runs `pactl ARGS` against this server; its stdout, or an error with
    /// its stderr.
    pub fn pactl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.command("pactl");
        cmd.args(args);
        let out = output_with_timeout(&mut cmd, PACTL_TIMEOUT)
            .context("running pactl (scripts/setup.sh installs pulseaudio-utils)")?;
        if !out.status.success() {
            bail!(
                "pactl {} failed with {}: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn harness_tag(&self, role: &str) -> String {
        format!("{role}-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Starts `paplay` of `wav` into `micfeed`, i.e. into the default source
    /// `mic`. The caller waits for (or kills) the returned child; it also
    /// ends when the server stops.
    pub fn play_into_mic(&self, wav: &Path) -> Result<Child> {
        let tag = self.harness_tag("play");
        let log = std::fs::File::create(self.dir.path().join(format!("{tag}.log")))?;
        let mut cmd = self.command("paplay");
        cmd.args(["--device=micfeed", "--client-name=walkie-harness"])
            .arg(format!("--property={HARNESS_PROPERTY}={tag}"))
            .arg(wav)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        cmd.spawn()
            .context("running paplay (scripts/setup.sh installs pulseaudio-utils)")
    }

    /// Records `speaker.monitor` (everything played to the default sink) to
    /// `out_wav`, 48 kHz mono 16-bit, until [`Recorder::stop`]. Returns once
    /// the recording stream is connected.
    pub fn record_speaker(&self, out_wav: &Path) -> Result<Recorder> {
        self.record_source("speaker.monitor", out_wav)
    }

    /// Like [`PulseAudio::record_speaker`], from any source (e.g. `mic`).
    pub fn record_source(&self, source: &str, out_wav: &Path) -> Result<Recorder> {
        let tag = self.harness_tag("record");
        let log_path = self.dir.path().join(format!("{tag}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = self.command("parecord");
        cmd.arg(format!("--device={source}"))
            .args([
                "--client-name=walkie-harness",
                &format!("--rate={RATE}"),
                "--channels=1",
                "--format=s16le",
                "--file-format=wav",
                // A small fragment size: on stop, at most 20 ms still sit in
                // the server (the default is up to 2 s).
                "--latency-msec=20",
            ])
            .arg(format!("--property={HARNESS_PROPERTY}={tag}"))
            .arg(out_wav)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .context("running parecord (scripts/setup.sh installs pulseaudio-utils)")?;
        let mut recorder = Recorder {
            child: Some(child),
            path: out_wav.to_owned(),
            log_path,
        };
        let deadline = Instant::now() + PACTL_TIMEOUT;
        loop {
            let connected = self.streams("source-outputs")?.iter().any(|s| {
                s.properties.get(HARNESS_PROPERTY).and_then(|v| v.as_str()) == Some(tag.as_str())
            });
            if connected {
                return Ok(recorder);
            }
            if let Some(child) = recorder.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "parecord from {source} exited with {status}: {}",
                        recorder.log()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("parecord from {source} did not connect within {PACTL_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn streams(&self, kind: &str) -> Result<Vec<Stream>> {
        let json = self.pactl(&["--format=json", "list", kind])?;
        let list: Vec<serde_json::Value> = serde_json::from_str(&json)
            .with_context(|| format!("parsing `pactl --format=json list {kind}`: {json}"))?;
        let device_key = if kind == "sink-inputs" {
            "sink"
        } else {
            "source"
        };
        Ok(list
            .into_iter()
            .map(|v| Stream {
                kind: kind.trim_end_matches('s').to_owned(),
                index: v["index"].as_u64().unwrap_or_default(),
                device: v[device_key].as_u64().unwrap_or_default(),
                client: v["client"].as_str().unwrap_or("-").to_owned(),
                driver: v["driver"].as_str().unwrap_or_default().to_owned(),
                spec: v["sample_specification"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                properties: v["properties"].as_object().cloned().unwrap_or_default(),
            })
            .collect())
    }

    /// The streams that are neither the server's own nor the harness's: one
    /// line per source-output and sink-input, as `pactl list short` prints
    /// it, prefixed by the kind and followed by `application.name`, e.g.
    /// `source-output\t7\t3\t12\tprotocol-native.c\tfloat32le 2ch 48000Hz\tcpal-pulseaudio-4242`.
    ///
    /// Left out: streams of modules (the remap source, the pacer loopbacks),
    /// recognised by a driver other than `protocol-native.c`, and the
    /// harness's paplay/parecord, recognised by the [`HARNESS_PROPERTY`]
    /// property that the harness gives them (`--property=`). cpal's native
    /// host names its client `cpal-pulseaudio-<pid>`; through ALSA's pulse
    /// plugin the client is named after the program (the process binary).
    pub fn our_streams(&self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for kind in ["source-outputs", "sink-inputs"] {
            for s in self.streams(kind)? {
                if s.driver != "protocol-native.c" || s.properties.contains_key(HARNESS_PROPERTY) {
                    continue;
                }
                let app = s
                    .properties
                    .get("application.name")
                    .and_then(|v| v.as_str())
                    .unwrap_or("(unnamed)");
                lines.push(format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{app}",
                    s.kind, s.index, s.device, s.client, s.driver, s.spec
                ));
            }
        }
        Ok(lines)
    }

    /// Kills the server at once (SIGKILL), as a crash would; its clients see
    /// their connection drop. The directory stays until the value is dropped.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(file) = std::fs::File::open(&self.log_path) else {
            return String::from("(no log written)");
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(|l| l.ok()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, libc::SIGTERM);
        if !matches!(
            crate::wait_for_exit(&mut child, Duration::from_secs(5)),
            Ok(Some(_))
        ) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PulseAudio {
    fn drop(&mut self) {
        self.stop();
        // libtest shows a test's captured output only when the test fails.
        eprintln!(
            "--- pulseaudio log ({}), last 60 lines ---\n{}\n--- end of pulseaudio log ---",
            self.log_path.display(),
            self.log_tail(60)
        );
    }
}

/// One source-output or sink-input, from `pactl --format=json`.
struct Stream {
    kind: String,
    index: u64,
    device: u64,
    client: String,
    driver: String,
    spec: String,
    properties: serde_json::Map<String, serde_json::Value>,
}

impl Recorder {
    /// The WAV file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path)
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// Stops parecord with SIGINT, on which it writes the WAV header's sizes
    /// and exits 0, and waits for it. Returns the WAV file's path.
    pub fn stop(mut self) -> Result<PathBuf> {
        let Some(mut child) = self.child.take() else {
            bail!("recorder already stopped");
        };
        if let Some(status) = child.try_wait()? {
            bail!(
                "parecord had already exited with {status} before stop: {}",
                self.log()
            );
        }
        signal(&child, libc::SIGINT);
        match crate::wait_for_exit(&mut child, Duration::from_secs(10))? {
            Some(status) if status.success() => Ok(self.path.clone()),
            Some(status) => bail!("parecord exited with {status}: {}", self.log()),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("parecord did not exit within 10 s of SIGINT")
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Writes `seconds` of a `freq` Hz sine at half scale (48 kHz mono 16-bit
/// WAV) to `path`, with sox.
pub fn tone_wav(path: &Path, freq: f64, seconds: f64) -> Result<()> {
    let status = Command::new("sox")
        .args(["-n", "-r", &RATE.to_string(), "-c", "1", "-b", "16"])
        .arg(path)
        .args(["synth", &seconds.to_string(), "sine", &freq.to_string()])
        .args(["vol", "0.5"])
        .status()
        .context("running sox (scripts/setup.sh installs it)")?;
    ensure!(status.success(), "sox failed with {status}");
    Ok(())
}

/// The samples of a 16-bit PCM WAV file (as parecord and sox write them),
/// channels interleaved.
#[derive(Debug, Clone)]
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<i16>,
}

impl Wav {
    /// Reads a 16-bit PCM WAV file, walking its RIFF chunks. A `data` chunk
    /// whose size is larger than the file (a writer killed before it
    /// finished) is read to the end of the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
            "{} is not a WAV file",
            path.display()
        );
        let mut pos = 12;
        let mut format = None;
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let size = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]) as usize;
            let body = pos + 8;
            let end = body.saturating_add(size).min(bytes.len());
            match id {
                b"fmt " => {
                    ensure!(end - body >= 16, "short fmt chunk in {}", path.display());
                    let u16_at =
                        |o: usize| u16::from_le_bytes([bytes[body + o], bytes[body + o + 1]]);
                    let rate = u32::from_le_bytes([
                        bytes[body + 4],
                        bytes[body + 5],
                        bytes[body + 6],
                        bytes[body + 7],
                    ]);
                    // Tag 1 is PCM, 0xFFFE is WAVE_FORMAT_EXTENSIBLE.
                    let (tag, channels, bits) = (u16_at(0), u16_at(2), u16_at(14));
                    ensure!(
                        (tag == 1 || tag == 0xFFFE) && bits == 16,
                        "{} is not 16-bit PCM (format tag {tag}, {bits} bits)",
                        path.display()
                    );
                    format = Some((rate, channels));
                }
                b"data" => {
                    let (rate, channels) = format.with_context(|| {
                        format!("no fmt chunk before data in {}", path.display())
                    })?;
                    let samples = bytes[body..end]
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    return Ok(Wav {
                        rate,
                        channels,
                        samples,
                    });
                }
                _ => {}
            }
            pos = body.saturating_add(size + (size & 1));
        }
        bail!("no data chunk in {}", path.display())
    }

    /// Length in seconds.
    pub fn duration(&self) -> Duration {
        let frames = self.samples.len() / usize::from(self.channels.max(1));
        Duration::from_secs_f64(frames as f64 / f64::from(self.rate.max(1)))
    }

    /// Root mean square of all samples, full scale = 1.0.
    pub fn rms(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .samples
            .iter()
            .map(|&s| (f64::from(s) / 32768.0).powi(2))
            .sum();
        (sum / self.samples.len() as f64).sqrt()
    }

    /// The dominant frequency of the first channel over the frames louder
    /// than -40 dBFS, estimated from zero crossings (good for a pure tone).
    pub fn tone_frequency(&self) -> Option<f64> {
        let ch = usize::from(self.channels.max(1));
        let loud: Vec<i16> = self
            .samples
            .chunks(ch)
            .map(|f| f[0])
            .skip_while(|s| s.unsigned_abs() < 328)
            .collect();
        let end = loud.iter().rposition(|s| s.unsigned_abs() >= 328)?;
        let loud = &loud[..=end];
        if loud.len() < 2 {
            return None;
        }
        let crossings = loud.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        Some(crossings as f64 / 2.0 / (loud.len() as f64 / f64::from(self.rate)))
    }
}
