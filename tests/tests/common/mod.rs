//! Shared helpers for the end-to-end tests that drive the `walkie` CLI (and
//! the app beside it): run `walkie` with its own
//! data directory per device, start listeners, read back voice messages.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walkie_audio::similarity::normalised_cross_correlation;
use walkie_tests::Synapse;

/// The `walkie` CLI binary (see [`walkie_tests::cli_binary`]); a test
/// cannot run without it, so its absence stops the test with the reason.
pub fn walkie() -> PathBuf {
    walkie_tests::cli_binary().unwrap_or_else(|e| panic!("{e:#}"))
}

pub struct Cli {
    pub dir: PathBuf,
}

impl Cli {
    pub fn new(root: &Path, name: &str) -> Self {
        Self {
            dir: root.join(name),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(walkie());
        cmd.arg("--data-dir")
            .arg(&self.dir)
            .env("RUST_LOG", "warn,walkie_core=info,walkie_audio=info");
        cmd
    }

    /// Runs a command to completion; fails with its stderr unless it succeeded.
    pub fn ok(&self, args: &[&str]) -> Result<Value> {
        ok_output(self.command(), args)
    }

    /// Starts `walkie listen`; returns once it printed `listening`, with a
    /// channel of its later stdout lines.
    pub fn listen(&self, args: &[&str]) -> Result<(Child, mpsc::Receiver<Value>)> {
        spawn_listener(self.command(), args)
    }
}

/// Starts `walkie listen` from a prepared command (data dir, environment);
/// returns once it printed `listening`, with a channel of its later lines.
pub fn spawn_listener(mut cmd: Command, args: &[&str]) -> Result<(Child, mpsc::Receiver<Value>)> {
    let mut child = cmd
        .arg("listen")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()?;
    let rx = json_lines(child.stdout.take().context("listen stdout")?);
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(v) if v["event"] == "listening" => Ok((child, rx)),
        Ok(v) => bail!("listen printed {v} first"),
        Err(_) => bail!("listen did not start"),
    }
}

/// A child's stdout as a channel of its JSON lines (others are ignored).
pub fn json_lines(stdout: std::process::ChildStdout) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

/// Signs `cli` in as `user`, the password passed as a user would script
/// it: in `WALKIE_PASSWORD`, never on the command line.
pub fn login(hs: &Synapse, cli: &Cli, user: &walkie_tests::Registered) -> Result<Value> {
    let mut cmd = cli.command();
    cmd.env("WALKIE_PASSWORD", &user.password);
    ok_output(
        cmd,
        &["login", "--homeserver", &hs.url(), "--user", &user.user_id],
    )
}

/// Runs `cmd` with `args` to completion; its last stdout line as JSON,
/// or an error with its stderr.
pub fn ok_output(mut cmd: Command, args: &[&str]) -> Result<Value> {
    let out: Output = cmd.args(args).output()?;
    ensure!(
        out.status.success(),
        "walkie {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(
        stdout.lines().last().unwrap_or("null"),
    )?)
}

/// Registers each of `names` and signs it in as a CLI device under `root`.
pub async fn users(
    hs: &Synapse,
    root: &Path,
    names: &[&str],
) -> Result<Vec<(Cli, walkie_tests::Registered)>> {
    let mut out = Vec::new();
    for name in names {
        let registered = hs.register(name).await?;
        let cli = Cli::new(root, name);
        login(hs, &cli, &registered)?;
        out.push((cli, registered));
    }
    Ok(out)
}

/// alice and bob (CLIs) in a walkie group of alice's, made with `extra`
/// `create` arguments, both consenting for an hour.
pub struct Pair {
    pub alice: Cli,
    pub bob: Cli,
    pub bob_r: walkie_tests::Registered,
    pub room: String,
}

pub async fn pair_in_group(hs: &Synapse, root: &Path, extra: &[&str]) -> Result<Pair> {
    let mut people = users(hs, root, &["alice", "bob"]).await?.into_iter();
    let (Some((alice, _)), Some((bob, bob_r))) = (people.next(), people.next()) else {
        bail!("two users expected");
    };
    let room = group(&alice, &[(&bob, &bob_r.user_id)], extra)?;
    alice.ok(&["consent", &room, "--for", "1h"])?;
    bob.ok(&["consent", &room, "--for", "1h"])?;
    Ok(Pair {
        alice,
        bob,
        bob_r,
        room,
    })
}

/// [`pair_in_group`], with bob's [`CountingListener`] on the group (its
/// talks saved under `root/out`) and `seconds` of speech at
/// `root/speech.wav` for alice to talk.
pub async fn pair_listening(
    hs: &Synapse,
    root: &Path,
    seconds: f64,
) -> Result<(Pair, CountingListener, PathBuf)> {
    let pair = pair_in_group(hs, root, &[]).await?;
    let listener = CountingListener::start(&pair.bob, &pair.room, &root.join("out"))?;
    let speech = root.join("speech.wav");
    walkie_tests::speech_wav(&speech, seconds)?;
    Ok((pair, listener, speech))
}

/// alice, bob and carol (CLIs) in a walkie group of alice's; nobody
/// consents yet. Returns them (with their accounts) and the room.
pub async fn trio_in_group(
    hs: &Synapse,
    root: &Path,
) -> Result<([(Cli, walkie_tests::Registered); 3], String)> {
    let people: [(Cli, walkie_tests::Registered); 3] =
        match users(hs, root, &["alice", "bob", "carol"])
            .await?
            .try_into()
        {
            Ok(people) => people,
            Err(_) => bail!("three users expected"),
        };
    let [(alice, _), (bob, b), (carol, c)] = &people;
    let room = group(alice, &[(bob, &b.user_id), (carol, &c.user_id)], &[])?;
    Ok((people, room))
}

/// A raw client-server API call, as another (or a hostile) client makes
/// it: the status and the JSON body (`null` if none). A refusal is logged.
pub async fn raw_api(
    hs: &Synapse,
    method: reqwest::Method,
    token: &str,
    path: &str,
    body: Value,
) -> Result<(reqwest::StatusCode, Value)> {
    let resp = reqwest::Client::new()
        .request(method.clone(), format!("{}{}", hs.url(), path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        eprintln!("{method} {path}: {status} {text}");
    }
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Signs `token` out from another client (`/logout` with it): the token is
/// revoked on the server. Returns how many lines Synapse's log had before,
/// for [`sync_requests_since`].
pub async fn revoke_token(hs: &Synapse, token: &str) -> Result<usize> {
    let before = homeserver_log_lines(hs)?;
    let (status, _) = raw_api(
        hs,
        reqwest::Method::POST,
        token,
        "/_matrix/client/v3/logout",
        serde_json::json!({}),
    )
    .await?;
    ensure!(status.is_success(), "logout: {status}");
    Ok(before)
}

/// How many lines Synapse's log has now (for [`sync_requests_since`]).
pub fn homeserver_log_lines(hs: &Synapse) -> Result<usize> {
    Ok(std::fs::read_to_string(hs.dir().join("homeserver.log"))?
        .lines()
        .count())
}

/// The `/sync` requests in Synapse's log after its first `since` lines.
pub fn sync_requests_since(hs: &Synapse, since: usize) -> Result<Vec<String>> {
    Ok(std::fs::read_to_string(hs.dir().join("homeserver.log"))?
        .lines()
        .skip(since)
        .filter(|l| l.contains("GET /_matrix/client/v3/sync"))
        .map(str::to_owned)
        .collect())
}

/// Collects a listener's output lines that arrived so far.
pub fn drain(rx: &mpsc::Receiver<Value>) -> Vec<Value> {
    rx.try_iter().collect()
}

/// Waits for a listener line matching `pred`, up to `limit`; returns it and
/// everything before it.
pub fn wait_for(
    rx: &mpsc::Receiver<Value>,
    limit: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Result<(Value, Vec<Value>)> {
    let deadline = std::time::Instant::now() + limit;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) if pred(&v) => return Ok((v, seen)),
            Ok(v) => seen.push(v),
            Err(_) => bail!("no matching line within {limit:?}; saw {seen:?}"),
        }
    }
}

/// A group: alice creates it and invites the others, who join.
pub fn group(alice: &Cli, others: &[(&Cli, &str)], extra: &[&str]) -> Result<String> {
    let mut args = vec!["create", "Walkie test"];
    for (_, user) in others {
        args.extend(["--invite", user]);
    }
    args.extend(extra);
    let room = alice.ok(&args)?;
    let room = room["room_id"].as_str().context("no room id")?.to_owned();
    for (cli, _) in others {
        cli.ok(&["join", &room])?;
    }
    Ok(room)
}

/// The access token `cli` is signed in with (its session file), for raw
/// API calls as that device.
#[allow(dead_code)]
pub fn access_token(cli: &Cli) -> Result<String> {
    let saved: Value = serde_json::from_slice(&std::fs::read(cli.dir.join("session.json"))?)?;
    Ok(saved["session"]["access_token"]
        .as_str()
        .context("no access token in the session file")?
        .to_owned())
}

/// The last JSON line of a command's output (the CLI's summary).
#[allow(dead_code)]
pub fn last_json_line(stdout: &[u8]) -> Result<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no JSON line in the output")
}

/// Restores the account a CLI data directory is signed in to, in-process.
pub async fn restore(hs: &Synapse, cli: &Cli) -> Result<walkie_core::Account> {
    use walkie_core::matrix_sdk::authentication::matrix::MatrixSession;
    let saved: Value = serde_json::from_slice(&std::fs::read(cli.dir.join("session.json"))?)?;
    let session: MatrixSession = serde_json::from_value(saved["session"].clone())?;
    Ok(walkie_core::Account::restore(
        &cli.dir,
        &hs.url(),
        session,
        walkie_core::store_key::Fallback::File,
    )
    .await?)
}

/// All voice messages in `room` as `cli`'s device sees them, each with its
/// file downloaded and decrypted by matrix-sdk.
pub async fn voice_messages(hs: &Synapse, cli: &Cli, room: &str) -> Result<Vec<(Value, Vec<u8>)>> {
    use walkie_core::matrix_sdk::{
        config::SyncSettings,
        media::{MediaFormat, MediaRequestParameters},
        room::MessagesOptions,
        ruma::{
            events::room::{EncryptedFile, MediaSource},
            RoomId,
        },
    };
    let account = restore(hs, cli).await?;
    let client = account.client();
    // A room key can reach this device a sync after the event it opens (a
    // sender that posted just now): sync again, a few times, before calling
    // an event undecryptable.
    let mut attempt = 0;
    let messages = loop {
        let wait = if attempt == 0 { 0 } else { 1000 };
        client
            .sync_once(SyncSettings::default().timeout(Duration::from_millis(wait)))
            .await?;
        let sdk_room = client
            .get_room(&RoomId::parse(room)?)
            .context("room unknown to the client")?;
        let messages = sdk_room.messages(MessagesOptions::backward()).await?;
        let undecryptable = messages.chunk.iter().any(|e| {
            e.raw()
                .get_field::<String>("type")
                .ok()
                .flatten()
                .is_some_and(|t| t == "m.room.encrypted")
        });
        attempt += 1;
        if !undecryptable || attempt >= 5 {
            break messages;
        }
    };
    let mut out = Vec::new();
    for event in messages.chunk {
        let value: Value = event.raw().deserialize_as_unchecked()?;
        ensure!(
            value["type"] != "m.room.encrypted",
            "undecryptable event after {attempt} sync(s): {value}"
        );
        if value["type"] != "m.room.message" || value["content"]["msgtype"] != "m.audio" {
            continue;
        }
        let file: EncryptedFile = serde_json::from_value(value["content"]["file"].clone())?;
        let request = MediaRequestParameters {
            source: MediaSource::Encrypted(Box::new(file)),
            format: MediaFormat::File,
        };
        let bytes = client.media().get_media_content(&request, false).await?;
        out.push((value["content"].clone(), bytes));
    }
    Ok(out)
}

/// Decodes an Ogg Opus file with Debian's opusdec and returns its length.
pub fn opusdec_seconds(ogg: &[u8], dir: &Path) -> Result<f64> {
    let (input, output) = (dir.join("recording.ogg"), dir.join("recording.wav"));
    std::fs::write(&input, ogg)?;
    let status = Command::new("opusdec")
        .arg("--quiet")
        .arg(&input)
        .arg(&output)
        .status()
        .context("running opusdec (opus-tools)")?;
    ensure!(status.success(), "opusdec rejected the recording: {status}");
    let reader = hound::WavReader::open(&output)?;
    let spec = reader.spec();
    Ok(reader.duration() as f64 / f64::from(spec.sample_rate))
}

/// The desktop app's account directory for `user` on `homeserver` (as
/// `src-tauri/src/session.rs` names it under `WALKIE_DATA_DIR`), so a CLI
/// signed in there shares the app's device (and its consents).
pub fn app_account_dir(data: &Path, homeserver: &str, user: &str) -> PathBuf {
    let name: String = format!("{user}@{homeserver}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    data.join("accounts").join(name)
}

/// alice (whose CLI device is the desktop app's device, see
/// [`app_account_dir`]) and bob (a CLI), both signed in.
pub struct AppPeople {
    pub alice: Cli,
    pub alice_r: walkie_tests::Registered,
    pub bob: Cli,
    pub bob_r: walkie_tests::Registered,
    /// The app's `WALKIE_DATA_DIR`.
    pub app_data: PathBuf,
}

pub async fn app_people(hs: &Synapse, root: &Path) -> Result<AppPeople> {
    let app_data = root.join("app");
    let alice_r = hs.register("alice").await?;
    let bob_r = hs.register("bob").await?;
    let alice = Cli {
        dir: app_account_dir(&app_data, &hs.url(), &alice_r.user_id),
    };
    let bob = Cli::new(root, "bob");
    login(hs, &alice, &alice_r)?;
    login(hs, &bob, &bob_r)?;
    Ok(AppPeople {
        alice,
        alice_r,
        bob,
        bob_r,
        app_data,
    })
}

impl AppPeople {
    /// A walkie group `name` of alice's with bob in it, both consenting 1 h.
    pub fn group(&self, name: &str) -> Result<String> {
        let room = self
            .alice
            .ok(&["create", name, "--invite", &self.bob_r.user_id])?;
        let room = room["room_id"].as_str().context("no room id")?.to_owned();
        self.bob.ok(&["join", &room])?;
        self.alice.ok(&["consent", &room, "--for", "1h"])?;
        self.bob.ok(&["consent", &room, "--for", "1h"])?;
        Ok(room)
    }

    /// The environment that starts the app signed in as alice, with `audio`.
    pub fn app_env(&self, hs: &Synapse, audio: &walkie_tests::PulseAudio) -> Vec<(String, String)> {
        let mut env = audio.env();
        env.extend(
            [
                ("WALKIE_HOMESERVER", hs.url()),
                ("WALKIE_USER", self.alice_r.user_id.clone()),
                ("WALKIE_PASSWORD", self.alice_r.password.clone()),
                (
                    "WALKIE_DATA_DIR",
                    self.app_data.to_string_lossy().into_owned(),
                ),
                (
                    "RUST_LOG",
                    "info,matrix_sdk=warn,matrix_sdk_crypto=warn".into(),
                ),
                ("NO_AT_BRIDGE", "1".into()),
                ("NO_COLOR", "1".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }
}

/// Everything a panel test needs around the real app: a Synapse, a private
/// PulseAudio, the headless desktop with gnome-keyring on its bus, and
/// alice (the app's device) and bob (a CLI) signed in.
pub struct AppDesk {
    pub hs: Synapse,
    pub audio: walkie_tests::PulseAudio,
    pub desktop: walkie_tests::desktop::Desktop,
    pub secrets: walkie_tests::secret_service::SecretService,
    pub root: tempfile::TempDir,
    pub people: AppPeople,
}

pub async fn app_desk() -> Result<AppDesk> {
    let hs = Synapse::start().await?;
    let audio = walkie_tests::PulseAudio::start()?;
    let desktop = walkie_tests::desktop::Desktop::start()?;
    let secrets = walkie_tests::secret_service::SecretService::on_bus(desktop.bus_address())?;
    let root = tempfile::tempdir()?;
    let people = app_people(&hs, root.path()).await?;
    Ok(AppDesk {
        hs,
        audio,
        desktop,
        secrets,
        root,
        people,
    })
}

impl AppDesk {
    /// The app signed in as alice, under WebDriver.
    pub async fn start_app(&self) -> Result<walkie_tests::webdriver::AppDriver> {
        walkie_tests::webdriver::AppDriver::start(
            &self.desktop,
            &walkie_tests::webdriver::app_binary()?,
            self.people.app_env(&self.hs, &self.audio),
        )
        .await
    }
}

/// Best correlation of every voiced 0.5 s window of `source` with `heard`,
/// searched ±100 ms around the alignment of the window before (starting at
/// `lag`, where the whole talk aligns best; around `lag` again if that
/// finds nothing; and over all of `heard` if that finds nothing either: a
/// loud cue beside the talk can pull the whole talk's best lag off it): the
/// jitter buffer's adaptation moves later parts of a talk by a few 20 ms
/// frames.
pub fn windowed_match(source: &[i16], heard: &[i16], lag: isize) -> Vec<f64> {
    windowed_alignment(source, heard, lag)
        .into_iter()
        .map(|w| w.corr)
        .collect()
}

/// [`windowed_match`]'s scores and their median.
pub fn windowed_median(source: &[i16], heard: &[i16], lag: isize) -> (Vec<f64>, f64) {
    let windows = windowed_match(source, heard, lag);
    let mut sorted = windows.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    (windows, median)
}

/// Size of the windows [`windowed_match`] judges (0.5 s).
pub const MATCH_WINDOW: usize = 24_000;

/// One voiced window of the source as found in what was heard.
#[derive(Debug, Clone, Copy)]
pub struct WindowMatch {
    /// The window's index in the source (in [`MATCH_WINDOW`]s).
    pub index: usize,
    pub corr: f64,
    /// Where the window starts in what was heard.
    pub heard_at: usize,
}

/// [`windowed_match`] with where each window was found.
pub fn windowed_alignment(source: &[i16], heard: &[i16], lag: isize) -> Vec<WindowMatch> {
    const WINDOW: usize = MATCH_WINDOW;
    const SLACK: isize = 4_800;
    let rms =
        |w: &[i16]| (w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
    let mut drift = lag;
    let mut found_windows = Vec::new();
    for (i, w) in source.chunks_exact(WINDOW).enumerate() {
        if rms(w) <= 500.0 {
            continue;
        }
        // Around the alignment of the window before, else (if that lost
        // track) around the whole talk's.
        let search = |offset: isize| {
            let centre = i as isize * WINDOW as isize + offset;
            let from = (centre - SLACK).clamp(0, heard.len() as isize) as usize;
            let to = (centre + WINDOW as isize + SLACK).clamp(0, heard.len() as isize) as usize;
            let (corr, at) = normalised_cross_correlation(w, &heard[from..to], 2 * SLACK as usize);
            (corr, from as isize + at - i as isize * WINDOW as isize)
        };
        let (mut corr, mut found) = search(drift);
        if corr < 0.5 && drift != lag {
            let (c, f) = search(lag);
            if c > corr {
                (corr, found) = (c, f);
            }
        }
        if corr < 0.5 {
            let (c, at) = normalised_cross_correlation(w, heard, heard.len().max(1) - 1);
            if c > corr {
                (corr, found) = (c, at - i as isize * WINDOW as isize);
            }
        }
        if corr > 0.5 {
            drift = found;
        }
        found_windows.push(WindowMatch {
            index: i,
            corr,
            heard_at: (i as isize * WINDOW as isize + found).max(0) as usize,
        });
    }
    found_windows
}

/// Sends a well-formed claim with one frame of audio from `from`'s device
/// to one device of `to_user`, Olm-encrypted but around Walkie's own rules
/// (matrix-sdk's all-devices strategy), as a hostile or modified client
/// would. The receiver must judge it on its own.
pub async fn hostile_claim(
    hs: &Synapse,
    from: &Cli,
    room: &str,
    to_user: &str,
    to_device: &str,
) -> Result<()> {
    use walkie_core::{
        matrix_sdk::{
            config::SyncSettings,
            ruma::{serde::Raw, OwnedDeviceId, OwnedUserId},
        },
        protocol::{ChunkHeader, RoomId, SessionId, AUDIO_EVENT_TYPE},
    };
    let account = restore(hs, from).await?;
    let client = account.client().clone();
    client
        .sync_once(SyncSettings::default().timeout(Duration::ZERO))
        .await?;
    let user = OwnedUserId::try_from(to_user)?;
    client.encryption().request_user_identity(&user).await?;
    let device = client
        .encryption()
        .get_device(&user, &OwnedDeviceId::from(to_device))
        .await?
        .context("the target device's keys")?;
    let packet = walkie_audio::codec::OpusEncoder::new()?.encode(&[0i16; 960])?;
    let start = walkie_core::engine::now_ms();
    let claim = ChunkHeader {
        session_id: SessionId::parse("KKKKKKKKKKKKKKKKKKKKKK")?,
        seq: 0,
        start_ts: start,
        ts: start,
        end: false,
    }
    .to_content(&RoomId::parse(room)?, std::slice::from_ref(&packet))?;
    client
        .encryption()
        .encrypt_and_send_raw_to_device(
            vec![&device],
            AUDIO_EVENT_TYPE,
            Raw::new(&claim)?.cast_unchecked(),
            Default::default(),
        )
        .await?;
    Ok(())
}

/// A `walkie listen` whose log counts every walkie to-device message its
/// client receives (decrypted audio and undecryptable messages alike).
pub struct CountingListener {
    child: Child,
    pub rx: std::sync::mpsc::Receiver<Value>,
    log: std::path::PathBuf,
}

impl CountingListener {
    /// Starts `cli`'s listener on `room`, its talks into `out`.
    pub fn start(cli: &Cli, room: &str, out: &Path) -> Result<Self> {
        let log = out.with_extension("log");
        let mut cmd = cli.command();
        cmd.env("RUST_LOG", "warn,walkie_core=info,walkie_to_device=debug")
            .stderr(Stdio::from(std::fs::File::create(&log)?));
        let (child, rx) = spawn_listener(
            cmd,
            &[
                room,
                "--out",
                out.to_str().unwrap_or_default(),
                "--timeout",
                "240",
            ],
        )?;
        Ok(Self { child, rx, log })
    }

    /// Walkie to-device messages its client received so far.
    pub fn received(&self) -> Result<usize> {
        Ok(std::fs::read_to_string(&self.log)?
            .lines()
            .filter(|l| l.contains("walkie to-device message received"))
            .count())
    }

    /// The listener's process id (to stop and continue it).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log so far.
    pub fn log(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.log)?)
    }

    pub fn stop(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// Byte strings that only plaintext audio holds: an Ogg page's capture
/// pattern with its version byte (always 0), Opus's two header packets, a
/// WAV file's format chunk. Four bytes alone ("OggS", "RIFF") are not
/// enough: base64 ciphertext holds any four of its letters once in every
/// 16.7 million positions, and Synapse's database holds megabytes of it
/// (a homeserver's WAL was once flagged for "OggS" that way). Base64 and
/// JSON never hold a NUL, so "OggS\0" turns up by chance only in binary
/// ciphertext, once in 2^40 positions; the eight-byte strings once in
/// 2^48 positions or rarer.
pub const PLAINTEXT_AUDIO: [&[u8]; 4] = [b"OggS\0", b"OpusHead", b"OpusTags", b"WAVEfmt "];

/// Every file under `dir` (a data directory, Synapse's database, media
/// store, logs) that holds any of `needles`, with the needle.
pub fn files_holding(dir: &std::path::Path, needles: &[&[u8]]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path)?;
            for needle in needles {
                if bytes.windows(needle.len()).any(|w| w == *needle) {
                    found.push(format!(
                        "{} holds {:?}",
                        path.display(),
                        String::from_utf8_lossy(needle)
                    ));
                }
            }
        }
    }
    Ok(found)
}

/// Clicks Play on the panel's unplayed talk `item` (again if a redraw
/// replaced the button under the click), waits until it left the list and
/// the output closed, and returns what the app's speaker sink heard.
pub async fn play_from_panel(
    app: &walkie_tests::webdriver::AppDriver,
    audio: &walkie_tests::PulseAudio,
    item: &str,
    heard: &Path,
) -> Result<Vec<i16>> {
    const DOM: Duration = Duration::from_secs(30);
    let recorder = audio.record_speaker(heard)?;
    let play = format!("{item} button");
    let mut attempts = 0;
    while let Err(e) = async { app.find(&play).await?.click().await }.await {
        attempts += 1;
        ensure!(attempts < 20, "cannot click Play: {e:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_for_log("output opened", DOM).await?;
    let deadline = std::time::Instant::now() + DOM;
    loop {
        // A redraw under the query makes it fail (a stale element): ask again.
        if app.find_all(item).await.is_ok_and(|found| found.is_empty()) {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "the talk stayed in the list"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.wait_for_log("output closed", DOM).await?;
    recorder.stop()?;
    Ok(walkie_audio::wav::read_wav_mono_48k(heard)?)
}

/// Two Synapses that federate, each dialled through a delay proxy.
pub struct FederatedPair {
    pub a: Synapse,
    pub b: Synapse,
    _proxies: [walkie_tests::delay_proxy::DelayProxy; 2],
}

pub async fn federated_pair(one_way: Duration) -> Result<FederatedPair> {
    // A federation port is chosen before its Synapse binds it (the proxy
    // dials it): when another process took it meanwhile, start over.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match try_federated_pair(one_way).await {
            Err(e) if attempts < 3 && e.is::<walkie_tests::synapse::FederationPortTaken>() => {
                eprintln!("federated pair: {e}; choosing new ports");
            }
            result => return result,
        }
    }
}

async fn try_federated_pair(one_way: Duration) -> Result<FederatedPair> {
    let (mut fa, mut fb) = (
        walkie_tests::synapse::Federation::on_free_port(None)?,
        walkie_tests::synapse::Federation::on_free_port(None)?,
    );
    let pa = walkie_tests::delay_proxy::DelayProxy::start(fa.listen_port, one_way).await?;
    let pb = walkie_tests::delay_proxy::DelayProxy::start(fb.listen_port, one_way).await?;
    fa.server_name = format!("127.0.0.1:{}", pa.port());
    fb.server_name = format!("127.0.0.1:{}", pb.port());
    let a = Synapse::start_federating(&fa).await?;
    let b = Synapse::start_federating(&fb).await?;
    Ok(FederatedPair {
        a,
        b,
        _proxies: [pa, pb],
    })
}

/// Retries `f` until it succeeds or `limit` passes (federation settles in
/// its own time: an invite, a join, a state event crossing over).
pub fn until<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(e.context(format!("{what} within {limit:?}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Whether `cli`'s client counts a consenting device of `user` in `room`.
pub fn counts(cli: &Cli, room: &str, user: &str) -> Result<bool> {
    let status = cli.ok(&["status", room])?;
    Ok(status["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|d| d["user_id"] == user))
}

/// Waits until `cli`'s client counts a consenting device of `user` in
/// `room` (a consent crossing federation, a fresh peer's own grant).
pub fn until_counted(cli: &Cli, room: &str, user: &str, limit: Duration) -> Result<()> {
    until(limit, "the consent counted", || {
        ensure!(counts(cli, room, user)?, "not yet");
        Ok(())
    })
}

/// Waits until `cli`'s client no longer counts a device of `user` in
/// `room` (a revocation or a kick crossing federation).
pub fn until_not_counted(cli: &Cli, room: &str, user: &str, limit: Duration) -> Result<()> {
    until(limit, "the device no longer counted", || {
        ensure!(!counts(cli, room, user)?, "still counted");
        Ok(())
    })
}

/// Turns do not disturb on from the panel, until turned off.
pub async fn panel_dnd_on(app: &walkie_tests::webdriver::AppDriver) -> Result<()> {
    app.execute(
        "const d = document.getElementById('dnd'); d.value = 'until'; \
         d.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await?;
    app.wait_for("#radio-state", |t| t == "muted", Duration::from_secs(30))
        .await?;
    Ok(())
}

/// bob talks `speech` into `room` while the app holds talks; returns the
/// panel's unplayed-talk item for it once listed, naming bob.
pub async fn bob_talk_held(
    app: &walkie_tests::webdriver::AppDriver,
    people: &AppPeople,
    room: &str,
    speech: &Path,
) -> Result<String> {
    let summary = people
        .bob
        .ok(&["talk", room, "--wav", speech.to_str().unwrap_or_default()])?;
    let session = summary["session_id"].as_str().context("no session")?;
    let item = format!("#unplayed .talk-item[data-session='{session}']");
    // The list is redrawn on every status change: read what matched.
    app.wait_for(
        &item,
        |t| t.contains(&people.bob_r.user_id),
        Duration::from_secs(30),
    )
    .await?;
    Ok(item)
}

/// bob talks `speech` into `room` while alice's speaker is recorded, until
/// the app reports it played the talk live and closed its output; returns
/// the log index of "output closed" and what the speaker played.
pub async fn bob_talk_played_live(
    desk: &AppDesk,
    app: &walkie_tests::webdriver::AppDriver,
    room: &str,
    speech: &Path,
    since: usize,
    label: &str,
) -> Result<(usize, Vec<i16>)> {
    const STEP: Duration = Duration::from_secs(60);
    let heard = desk.root.path().join(format!("alice-speaker-{label}.wav"));
    let recorder = desk.audio.record_speaker(&heard)?;
    let summary = desk.people.bob.ok(&[
        "talk",
        room,
        "--wav",
        speech.to_str().context("speech path")?,
    ])?;
    let session = summary["session_id"].as_str().context("no session")?;
    let (played, line) = app
        .wait_for_log_after(since, &["live talk played", session], STEP)
        .await
        .with_context(|| format!("{label}: bob's talk was not played live at alice's"))?;
    eprintln!("{label}: {line}");
    let (closed, _) = app
        .wait_for_log_after(played, &["output closed"], STEP)
        .await?;
    let heard = recorder.stop()?;
    keep_audio(&heard, label)?;
    Ok((closed, walkie_audio::wav::read_wav_mono_48k(heard)?))
}

/// With `WALKIE_KEEP_AUDIO=DIR`, copies a recording there as `LABEL.wav`
/// (to look at a failed judgement afterwards; the test's files go).
pub fn keep_audio(wav: &Path, label: &str) -> Result<()> {
    if let Some(dir) = std::env::var_os("WALKIE_KEEP_AUDIO") {
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir)?;
        let name: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::copy(wav, dir.join(format!("{name}.wav")))
            .with_context(|| format!("keeping {}", wav.display()))?;
    }
    Ok(())
}

/// Sends `sig` to the child process `pid` (SIGSTOP and SIGCONT stand in
/// for a process the machine did not schedule).
pub fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    // SAFETY: kill(2) on the pid of a child process this test started.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    ensure!(
        r == 0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
