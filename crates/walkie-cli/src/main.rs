//! `walkie`: the headless Walkie client. Signs in once (`login`), then
//! manages walkie groups and consent, talks from WAV files and listens into
//! WAV files, printing JSON for scripts. Each failure has its own exit code
//! (see `exit.rs`).
#![recursion_limit = "256"]

mod echo;
mod exit;
mod listen;
mod session_file;
mod talk;
mod trust_cmd;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;
use walkie_core::{
    engine::now_ms,
    live_talk::{Input, TalkOptions, TalkOutcome},
    Account, Engine, EngineEvent, EngineTasks, SignInRequest,
};

use exit::CliError;
use walkie_audio::{
    output::DeviceSink,
    player::{Player, PlayerConfig},
};

#[derive(Debug, Parser)]
#[command(
    name = "walkie",
    version,
    about = "Matrix push-to-talk from the command line",
    after_help = "Keys at rest: each data directory's matrix-sdk store (device keys, Olm sessions) is encrypted with a passphrase kept in the OS keyring (Secret Service). Where no keyring is running (a headless server, CI), the passphrase goes in <data dir>/store-passphrase instead, a file only you can read (mode 0600): anyone who can read your files as you, or as root, can then open the store."
)]
struct Cli {
    /// Where this client keeps its session and encrypted store.
    #[arg(long, env = "WALKIE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Resolve a server name (through .well-known) or URL and print the
    /// homeserver and the Matrix versions it supports, as JSON.
    ServerInfo {
        /// `example.org`, `@alice:example.org` or `https://matrix.example.org`
        server: String,
    },
    /// Sign in with a password (this directory then stays one device). The
    /// password comes from `WALKIE_PASSWORD`, else it is asked for on the
    /// terminal (not echoed), else read as the first line of standard input;
    /// never from the command line, which other local users can read.
    Login {
        /// Homeserver URL or server name; defaults to the user id's server.
        #[arg(long)]
        homeserver: Option<String>,
        /// `@alice:example.org`, or a localpart with --homeserver.
        #[arg(long)]
        user: String,
    },
    /// Sign out and delete this client's local data.
    Logout,
    /// The joined rooms, and which are walkie groups.
    Rooms,
    /// Create an encrypted walkie group room and print its id.
    Create {
        name: String,
        #[arg(long)]
        invite: Vec<String>,
        /// Longest talk, in seconds (default 60).
        #[arg(long)]
        max_talk: Option<u64>,
    },
    /// Join a room by id or alias.
    Join { room: String },
    /// Make a joined room a walkie group.
    Enable { room: String },
    /// Where the group's recordings go: `timeline` (voice messages in the
    /// room), `thread` (all in one thread, the timeline kept clean) or
    /// `none` (live only). Needs the power to change the group's settings.
    Recordings {
        room: String,
        #[arg(value_parser = ["timeline", "thread", "none"])]
        mode: String,
    },
    /// Grant this device's consent (`--for 15m|1h|8h|forever`, or any
    /// number with s/m/h) or revoke it (`--revoke`).
    Consent {
        room: String,
        #[arg(long = "for", conflicts_with = "revoke")]
        duration: Option<String>,
        #[arg(long)]
        revoke: bool,
        /// Consent to receive only, not to talk.
        #[arg(long)]
        receive_only: bool,
    },
    /// Consenting devices with their remaining time, and who holds the floor.
    Status { room: String },
    /// Talk into a room, live: a 48 kHz WAV file (--wav) or the microphone
    /// (--mic, opened on press; the talk-permit cue sounds once it is live).
    Talk {
        room: String,
        #[arg(long, required_unless_present = "mic", conflicts_with = "mic")]
        wav: Option<PathBuf>,
        #[arg(long)]
        mic: bool,
        /// Capture device name (see `walkie devices`); default: the system's.
        #[arg(long, requires = "mic")]
        device: Option<String>,
        /// Release after this many seconds of capture (default: end of the
        /// file; with --mic, Ctrl-C).
        #[arg(long)]
        seconds: Option<f64>,
        /// Opus bitrate in bit/s.
        #[arg(long, default_value_t = walkie_audio::codec::DEFAULT_BITRATE)]
        bitrate: u32,
        /// No talk-permit / busy cues (they play on the default output).
        #[arg(long)]
        no_cues: bool,
        /// 20 ms frames per to-device message (1: the sealed fan-out makes
        /// one request per batch whatever the group's size).
        #[arg(long, default_value_t = walkie_core::live_talk::TalkOptions::default().batch)]
        batch: usize,
        /// Press at this wall-clock time (ms since the Unix epoch) instead of
        /// at once: scripted peers and collision tests.
        #[arg(long)]
        start_at: Option<u64>,
    },
    /// Listen: one JSON line per event on stdout, one WAV per talk in --out.
    Listen {
        rooms: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        /// Exit after this many talks were saved.
        #[arg(long)]
        talks: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Also play the talks on the speakers, through the mixing queue.
        #[arg(long)]
        play: bool,
        /// Output device name (see `walkie devices`); default: the system's.
        #[arg(long, requires = "play")]
        output_device: Option<String>,
        /// Keep talks not played yet across restarts, encrypted with a key
        /// from the OS keyring (needs a Secret Service).
        #[arg(long, requires = "play")]
        keep_unplayed: bool,
    },
    /// An echo peer: consents, then plays each talk it hears in ROOM back
    /// into the group once the talk ends, as a talk of its own (check your
    /// microphone, keys and network end to end).
    Echo {
        room: String,
        /// Exit after echoing this many talks.
        #[arg(long)]
        talks: Option<usize>,
        /// Exit after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// The audio input and output devices, as JSON.
    Devices,
    /// This device's verification: `status`, `recovery-key`, or emoji
    /// (`request DEVICE` on one device, `accept` on the other).
    Verify {
        #[command(subcommand)]
        how: trust_cmd::VerifyHow,
    },
    /// The account's recovery (`reset`: a new identity and recovery key).
    Recovery {
        #[command(subcommand)]
        action: trust_cmd::RecoveryAction,
    },
    /// Accept that a user's cryptographic identity changed (check with them
    /// first): their signed devices hear you and are heard again.
    AcceptIdentity { user: String },
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".local/share")
        }
    };
    Ok(base.join("walkie/cli"))
}

/// The sign-in password: `WALKIE_PASSWORD`, else asked on the terminal
/// without echo, else the first line of standard input (a pipe).
pub(crate) fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if let Ok(password) = std::env::var("WALKIE_PASSWORD") {
        return Ok(password);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password("Password: ").context("reading the password");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password: set WALKIE_PASSWORD, type it when asked, or pipe it in"
    );
    Ok(password)
}

/// Tells a user on an unverified device how to verify it.
fn key_hint() {
    eprintln!("walkie: this device is not verified yet, so others will not talk to it: run `walkie verify recovery-key`, or `walkie verify request DEVICE` here and `walkie verify accept` on a device of yours that is verified.");
}

/// `15m`, `1h`, `8h`, `90s` or `forever` (`None`): how long a consent lasts.
fn parse_duration(s: &str) -> anyhow::Result<Option<Duration>> {
    if s == "forever" {
        return Ok(None);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("bad duration {s:?}: use 15m, 1h, 8h or forever"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        _ => anyhow::bail!("bad duration {s:?}: use 15m, 1h, 8h or forever"),
    };
    Ok(Some(Duration::from_secs(secs)))
}

#[tokio::main]
async fn main() -> ExitCode {
    walkie_core::make_created_files_private();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,matrix_sdk=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("walkie: {e}");
            ExitCode::from(e.code())
        }
    }
}

async fn restore(data_dir: &std::path::Path) -> Result<Account, CliError> {
    let saved = session_file::load(data_dir)?.ok_or(CliError::NotSignedIn)?;
    Ok(Account::restore(
        data_dir,
        &saved.homeserver,
        saved.session,
        walkie_core::store_key::Fallback::File,
    )
    .await?)
}

/// Starts the engine and waits for its first sync (room state known). A
/// homeserver that cannot be reached fails the command at once
/// ([`CliError::Unreachable`]) unless `wait_while_offline` (a listener,
/// which keeps retrying until it is back).
async fn start_engine(
    account: &Account,
    wait_while_offline: bool,
) -> Result<
    (
        Engine,
        EngineTasks,
        tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    ),
    CliError,
> {
    let (engine, tasks, mut events) = Engine::start(account)?;
    loop {
        match events.recv().await {
            Some(EngineEvent::Ready) => return Ok((engine, tasks, events)),
            Some(EngineEvent::SignedOut) => return Err(CliError::NotSignedIn),
            Some(EngineEvent::Offline { reason }) if !wait_while_offline => {
                return Err(CliError::Unreachable(format!(
                    "the homeserver cannot be reached: {reason}"
                )))
            }
            Some(_) => continue,
            None => {
                return Err(CliError::Other(anyhow::anyhow!(
                    "the engine stopped before its first sync"
                )))
            }
        }
    }
}

/// Ends a command: recordings left in the outbox (e.g. by a talk that was
/// killed) go out first, then the engine stops.
async fn finish(engine: &Engine, tasks: EngineTasks) {
    let report = engine.post_pending().await;
    if report.posted + report.failed > 0 {
        eprintln!(
            "walkie: outbox: {} recording(s) posted, {} failed (kept for the next run)",
            report.posted, report.failed
        );
    }
    tasks.stop().await;
}

async fn resolve_room(engine: &Engine, room: &str) -> Result<String, CliError> {
    engine.resolve_room(room).await.map_err(|e| match e {
        walkie_core::EngineError::UnknownRoom(m) => {
            CliError::UnknownRoom(format!("unknown room {m}"))
        }
        other => other.into(),
    })
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let data_dir = match cli.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    match cli.command {
        Command::Devices => print_devices()?,
        Command::Verify { how } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let result = trust_cmd::verify(&account, &engine, how).await;
            finish(&engine, tasks).await;
            result?;
        }
        Command::Recovery { action } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let result = trust_cmd::recovery(&account, action).await;
            finish(&engine, tasks).await;
            result?;
        }
        Command::AcceptIdentity { user } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let result = trust_cmd::accept_identity(&engine, &user).await;
            finish(&engine, tasks).await;
            result?;
        }
        Command::ServerInfo { server } => {
            let server = match server.strip_prefix('@').and_then(|u| u.split_once(':')) {
                Some((_, name)) => name.to_owned(),
                None => server,
            };
            let info = walkie_core::discover(&server).await?;
            println!(
                "{}",
                serde_json::to_string(&info).map_err(anyhow::Error::from)?
            );
        }
        Command::Login { homeserver, user } => {
            let password = read_password()?;
            let server = match homeserver {
                Some(h) => h,
                None => user
                    .split_once(':')
                    .map(|(_, s)| s.to_owned())
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "give --homeserver, or a full user id like @alice:example.org"
                        )
                    })?,
            };
            let req = SignInRequest {
                server,
                user,
                password,
                device_display_name: "walkie CLI".into(),
            };
            let mut account =
                Account::sign_in(&data_dir, &req, walkie_core::store_key::Fallback::File).await?;
            let recovery_key = account.take_new_recovery_key();
            let session = account.session().context("signed in without a session")?;
            session_file::save(
                &data_dir,
                &session_file::SavedSession {
                    homeserver: account.homeserver(),
                    session,
                },
            )?;
            let state = walkie_core::trust::own_device_state(account.client())
                .await
                .map_err(anyhow::Error::from)?;
            if recovery_key.is_some() {
                eprintln!("walkie: this account now has a cross-signing identity. Its recovery key is shown once, below, as \"recovery_key\": keep it safe (a password manager); it verifies your other devices and restores your keys.");
            } else if state == walkie_core::trust::OwnDeviceState::Unverified {
                key_hint();
            }
            println!(
                "{}",
                json!({
                    "user_id": account.user_id(),
                    "device_id": account.device_id(),
                    "device_state": state,
                    "recovery_key": recovery_key,
                })
            );
        }
        Command::Logout => {
            let account = restore(&data_dir).await?;
            account.sign_out().await;
            session_file::forget(&data_dir);
            std::fs::remove_dir_all(&data_dir)
                .with_context(|| format!("deleting {}", data_dir.display()))?;
            println!("{}", json!({"signed_out": account.user_id()}));
        }
        Command::Rooms => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            for room in engine.rooms().await {
                println!(
                    "{}",
                    serde_json::to_string(&room).map_err(anyhow::Error::from)?
                );
            }
            finish(&engine, tasks).await;
        }
        Command::Create {
            name,
            invite,
            max_talk,
        } => {
            let account = restore(&data_dir).await?;
            let mut group = walkie_core::protocol::WalkieGroup::default();
            if let Some(secs) = max_talk {
                group.max_talk_ms = secs * 1000;
                group.validate().map_err(anyhow::Error::from)?;
            }
            let room = account.create_group(&name, &invite, &group).await?;
            println!("{}", json!({ "room_id": room }));
        }
        Command::Join { room } => {
            let account = restore(&data_dir).await?;
            let joined = account.join(&room).await.map_err(|e| match e {
                walkie_core::EngineError::UnknownRoom(m) => CliError::UnknownRoom(m),
                other => other.into(),
            })?;
            println!("{}", json!({ "room_id": joined }));
        }
        Command::Enable { room } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let room = resolve_room(&engine, &room).await?;
            engine.enable(&room).await?;
            println!("{}", json!({"room_id": room, "walkie": true}));
            finish(&engine, tasks).await;
        }
        Command::Recordings { room, mode } => {
            let recordings = match mode.as_str() {
                "thread" => walkie_core::protocol::Recordings::Thread,
                "none" => walkie_core::protocol::Recordings::None,
                _ => walkie_core::protocol::Recordings::Timeline,
            };
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let room = resolve_room(&engine, &room).await?;
            let group = engine.set_recordings(&room, recordings).await?;
            println!(
                "{}",
                json!({"room_id": room, "recordings": group.recordings, "thread_root": group.thread_root})
            );
            finish(&engine, tasks).await;
        }
        Command::Consent {
            room,
            duration,
            revoke,
            receive_only,
        } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let room = resolve_room(&engine, &room).await?;
            let consent = if revoke {
                engine.revoke_consent(&room).await?;
                None
            } else {
                let duration = parse_duration(duration.as_deref().unwrap_or("1h"))?;
                Some(engine.grant_consent(&room, duration, !receive_only).await?)
            };
            println!(
                "{}",
                json!({"room_id": room, "consent": consent.map(|c| json!({"talk": c.talk, "expires_ts": c.expires_ts}))})
            );
            finish(&engine, tasks).await;
        }
        Command::Status { room } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let room = resolve_room(&engine, &room).await?;
            let status = engine.status(&room)?;
            println!(
                "{}",
                serde_json::to_string(&status).map_err(anyhow::Error::from)?
            );
            finish(&engine, tasks).await;
        }
        Command::Talk {
            room,
            wav,
            mic,
            device,
            seconds,
            bitrate,
            no_cues,
            batch,
            start_at,
        } => {
            if !(1..=walkie_core::protocol::MAX_FRAMES_PER_CHUNK).contains(&batch) {
                return Err(anyhow::anyhow!(
                    "--batch must be 1 to {}",
                    walkie_core::protocol::MAX_FRAMES_PER_CHUNK
                )
                .into());
            }
            let account = restore(&data_dir).await?;
            let (engine, tasks, _events) = start_engine(&account, false).await?;
            let room = resolve_room(&engine, &room).await?;
            if let Some(at) = start_at {
                let wait = at.saturating_sub(now_ms());
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let input = match wav {
                Some(path) => Input::Wav(path),
                None if mic => Input::Mic(device),
                None => return Err(anyhow::anyhow!("give --wav FILE or --mic").into()),
            };
            let options = TalkOptions {
                batch,
                bitrate,
                max_after_live: seconds.map(Duration::from_secs_f64),
            };
            // Cues go to the default output, opened only while they sound.
            let player = (mic && !no_cues).then(|| {
                Player::start(
                    Box::new(DeviceSink::new(None)),
                    PlayerConfig::default(),
                    None,
                    |_| {},
                )
            });
            let player = player
                .transpose()
                .map_err(anyhow::Error::from)?
                .map(std::sync::Arc::new);
            let station = walkie_core::Station::new(
                engine.clone(),
                player
                    .clone()
                    .map(|p| p as std::sync::Arc<dyn walkie_core::Playback>),
            );
            let outcome = talk::run(&station, &room, &input, &options, player.as_deref()).await;
            drop(station);
            drop(player);
            // The recording goes out now (the engine's poster may already be
            // at it; this pass waits for it) and stays in the outbox if it
            // cannot.
            let report = engine.post_pending().await;
            let TalkOutcome {
                summary,
                device_error,
            } = outcome?;
            let posted = !engine.recording_pending(&summary.session_id);
            finish(&engine, tasks).await;
            let mut out = serde_json::to_value(&summary).map_err(anyhow::Error::from)?;
            out["recording"] = json!({"posted": posted, "failed": report.failed});
            out["device_error"] = json!(device_error);
            println!("{out}");
            if let Some(error) = device_error {
                return Err(CliError::AudioDevice(error));
            }
        }
        Command::Echo {
            room,
            talks,
            timeout,
        } => {
            let account = restore(&data_dir).await?;
            let (engine, tasks, events) = start_engine(&account, true).await?;
            let room = resolve_room(&engine, &room).await?;
            // Named, so that members' device lists say which device echoes
            // (a name is a nicety: a homeserver that refuses it is logged).
            if let Err(e) = engine.rename_device(echo::DEVICE_NAME).await {
                tracing::warn!(error = %e, "could not name this device {:?}", echo::DEVICE_NAME);
            }
            // Its own consent, renewed at every start.
            engine
                .grant_consent(&room, Some(Duration::from_secs(24 * 3600)), true)
                .await?;
            println!(
                "{}",
                json!({"event": "echoing", "room_id": room, "user_id": account.user_id(), "device_id": account.device_id()})
            );
            let options = echo::EchoOptions {
                room,
                talks,
                timeout: timeout.map(Duration::from_secs_f64),
            };
            let result = echo::run(&engine, events, &options).await;
            finish(&engine, tasks).await;
            result?;
        }
        Command::Listen {
            rooms,
            out,
            talks,
            timeout,
            play,
            output_device,
            keep_unplayed,
        } => {
            let store = if keep_unplayed {
                Some(unplayed_store(&data_dir).await?)
            } else {
                None
            };
            let account = restore(&data_dir).await?;
            let (engine, tasks, events) = start_engine(&account, true).await?;
            let mut resolved = Vec::new();
            for r in &rooms {
                resolved.push(resolve_room(&engine, r).await?);
            }
            println!(
                "{}",
                json!({"event": "listening", "rooms": resolved, "user_id": account.user_id(), "device_id": account.device_id()})
            );
            let timeout = timeout.map(Duration::from_secs_f64);
            let options = listen::ListenOptions {
                rooms: resolved,
                out,
                talks,
                timeout,
                play: play.then_some(output_device),
            };
            let result = listen::run(&engine, events, &options, store).await;
            finish(&engine, tasks).await;
            result?;
        }
    }
    Ok(())
}

/// The encrypted store of unplayed talks in `data_dir/unplayed`.
async fn unplayed_store(
    data_dir: &std::path::Path,
) -> Result<walkie_audio::queue_store::QueueStore, CliError> {
    walkie_core::secrets::unplayed_store(data_dir)
        .await
        .map_err(|e| CliError::Other(e.into()))
}

/// `walkie devices`.
fn print_devices() -> Result<(), CliError> {
    let inputs = walkie_audio::capture::input_device_names()
        .map_err(|e| CliError::AudioDevice(e.to_string()))?;
    let outputs = walkie_audio::output::output_device_names()
        .map_err(|e| CliError::AudioDevice(e.to_string()))?;
    println!("{}", json!({"inputs": inputs, "outputs": outputs}));
    Ok(())
}
