//! The soak (issue 13), run by `bash scripts/soak.sh`, which builds what
//! it needs, runs this and then `scripts/tools/soak_report.py` on its work
//! directory.
//!
//! alice talks (a `walkie talk` every EVERY s, TALK_S s of speech) for
//! DURATION s to LISTENERS listening devices (`walkie listen`, one user
//! each) and, unless APP=0, to the desktop app (signed in as carol under
//! Xvfb with gnome-keyring and a private PulseAudio, playing every talk;
//! PANEL=tray starts it as the desktop session's autostart does, its panel
//! closed, PANEL=open with the panel on screen throughout).
//! With FEDERATED=1 the listeners and the app are on a second homeserver
//! 1 s one-way away from alice's (two federating Synapses behind delay
//! proxies), else everyone is on one Synapse. Every 5 s the resident memory
//! and CPU time of each listener, the app and its webview processes are
//! sampled.
//!
//! Writes to SOAK_WORK: `talks.jsonl` (each talk's summary),
//! `listen<i>.jsonl` (each listener's events), `app.log` (the app's log),
//! `samples.csv` (`seconds,name,rss_kib,cpu_ticks`) and `setup.json`.
#![recursion_limit = "256"]

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use walkie_tests::{
    desktop::Desktop,
    proc_stats::{cpu_ticks, descendants, status_kib},
    pulse::PulseAudio,
    secret_service::SecretService,
    speech_wav,
    webdriver::{app_binary, AppDriver},
    Synapse,
};

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

/// What to soak, from the environment soak.sh passes on.
struct Knobs {
    work: PathBuf,
    duration: Duration,
    every: Duration,
    talk_s: f64,
    listeners: usize,
    federated: bool,
    app: bool,
    /// The app's panel on screen throughout (else closed, in the tray).
    panel_open: bool,
}

fn knob<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v} is not a valid value")),
        _ => Ok(default),
    }
}

fn knobs() -> Result<Knobs> {
    Ok(Knobs {
        work: PathBuf::from(std::env::var("SOAK_WORK").context("SOAK_WORK is not set")?),
        duration: Duration::from_secs(knob("DURATION", 3600)?),
        every: Duration::from_secs(knob("EVERY", 10)?),
        talk_s: knob("TALK_S", 3.0)?,
        listeners: knob("LISTENERS", 2)?,
        federated: knob("FEDERATED", 0u8)? == 1,
        app: knob("APP", 1u8)? == 1,
        panel_open: match knob("PANEL", "tray".to_owned())?.as_str() {
            "tray" => false,
            "open" => true,
            other => bail!("PANEL={other}: tray or open"),
        },
    })
}

/// One process to sample: its name in `samples.csv` and its pid (for the
/// webview: the app's pid, whose descendants are summed).
#[derive(Clone)]
enum Sampled {
    Process(String, u32),
    ChildrenOf(String, u32),
}

fn sample_line(t: f64, what: &Sampled) -> Option<String> {
    let (name, pids) = match what {
        Sampled::Process(name, pid) => (name, vec![*pid]),
        Sampled::ChildrenOf(name, pid) => (name, descendants(*pid)),
    };
    let rss: u64 = pids
        .iter()
        .filter_map(|&p| status_kib(p, "VmRSS:").ok())
        .sum();
    let ticks: u64 = pids.iter().filter_map(|&p| cpu_ticks(p).ok()).sum();
    (rss > 0).then(|| format!("{t:.1},{name},{rss},{ticks}"))
}

/// Samples `what` every 5 s into `path` until `stop` is set.
fn start_sampler(
    path: PathBuf,
    what: Vec<Sampled>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let mut out = std::fs::File::create(path)?;
    Ok(std::thread::spawn(move || {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let t = start.elapsed().as_secs_f64();
            for w in &what {
                if let Some(line) = sample_line(t, w) {
                    let _ = writeln!(out, "{line}");
                }
            }
            // Sampling period (a fixed rate, not a wait for an event).
            let next = start + Duration::from_secs_f64((t / 5.0).floor() * 5.0 + 5.0);
            while !stop.load(Ordering::Relaxed) && Instant::now() < next {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }))
}

/// `walkie listen` of `cli` with its events going to `events`; returns once
/// it printed `listening`.
fn start_listener(
    cli: &Cli,
    room: &str,
    out: &Path,
    events: &Path,
    timeout: Duration,
) -> Result<Child> {
    let mut child = cli
        .command()
        .args(["listen", room, "--out"])
        .arg(out)
        .args(["--timeout", &timeout.as_secs().to_string()])
        .stdout(std::fs::File::create(events)?)
        .stderr(std::fs::File::create(events.with_extension("err"))?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if std::fs::read_to_string(events)?.contains("\"listening\"") {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "walkie listen exited ({status}): {}",
                std::fs::read_to_string(events.with_extension("err")).unwrap_or_default()
            );
        }
        if Instant::now() > deadline {
            bail!("walkie listen did not start within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `file` (a listener's events) says it saved `session`.
fn saved(file: &Path, session: &str) -> bool {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|e| e["event"] == "saved" && e["session_id"] == session)
}

#[tokio::main]
async fn main() -> Result<()> {
    let k = knobs()?;
    std::fs::create_dir_all(&k.work)?;
    let say = |s: &str| eprintln!("\x1b[1m[soak]\x1b[0m {s}");

    // The homeservers: alice's, and the listeners' (the same one, or a
    // second one 1 s one-way away).
    let (mut pair, mut one);
    let (talk_hs, listen_hs): (&Synapse, &Synapse) = if k.federated {
        say("two federating homeservers, 1 s one-way between them");
        pair = federated_pair(Duration::from_secs(1)).await?;
        pair.a.quiet_on_drop();
        pair.b.quiet_on_drop();
        (&pair.a, &pair.b)
    } else {
        say("one homeserver");
        one = Synapse::start().await?;
        one.quiet_on_drop();
        (&one, &one)
    };
    let limit = Duration::from_secs(120);
    let clients = k.work.join("clients");
    let alice_r = talk_hs.register("alice").await?;
    let alice = Cli::new(&clients, "alice");
    login(talk_hs, &alice, &alice_r)?;
    let mut members: Vec<(Cli, walkie_tests::Registered)> = Vec::new();
    for i in 1..=k.listeners {
        let r = listen_hs.register(&format!("bob{i}")).await?;
        let cli = Cli::new(&clients, &format!("bob{i}"));
        login(listen_hs, &cli, &r)?;
        members.push((cli, r));
    }
    // The app's device, signed in first by a CLI in the app's account
    // directory so that it joins and consents like the others.
    let app_data = k.work.join("app");
    if k.app {
        let r = listen_hs.register("carol").await?;
        let cli = Cli {
            dir: app_account_dir(&app_data, &listen_hs.url(), &r.user_id),
        };
        login(listen_hs, &cli, &r)?;
        members.push((cli, r));
    }
    say(&format!(
        "a walkie group of alice and {} member(s)",
        members.len()
    ));
    let mut create = vec!["create", "soak"];
    for (_, r) in &members {
        create.extend(["--invite", r.user_id.as_str()]);
    }
    let room = alice.ok(&create)?;
    let room = room["room_id"].as_str().context("no room id")?.to_owned();
    for (cli, _) in &members {
        until(limit, "joining", || cli.ok(&["join", &room]))?;
        // Over federation the joined room can take a moment to sync.
        until(limit, "consenting", || {
            cli.ok(&["consent", &room, "--for", "12h"])
        })?;
    }
    alice.ok(&["consent", &room, "--for", "12h"])?;
    until(limit, "every consent counted at alice", || {
        let status = alice.ok(&["status", &room])?;
        let n = status["devices"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(n > members.len(), "{n} devices: {status}");
        Ok(())
    })?;

    let talk = k.work.join("talk.wav");
    speech_wav(&talk, k.talk_s)?;
    let keep_listening = k.duration + Duration::from_secs(300);
    let mut listeners = Vec::new();
    let mut sampled = Vec::new();
    for (i, (cli, _)) in members.iter().take(k.listeners).enumerate() {
        let n = i + 1;
        let child = start_listener(
            cli,
            &room,
            &k.work.join(format!("out{n}")),
            &k.work.join(format!("listen{n}.jsonl")),
            keep_listening,
        )?;
        sampled.push(Sampled::Process(format!("listener{n}"), child.id()));
        listeners.push(child);
    }

    // The app, signed in as carol, playing every talk.
    let mut desk = None;
    if k.app {
        let (_, carol) = members.last().context("no app member")?;
        let audio = PulseAudio::start()?;
        let desktop = Desktop::start()?;
        let secrets = SecretService::on_bus(desktop.bus_address())?;
        let mut env = audio.env();
        env.extend(
            [
                ("WALKIE_HOMESERVER", listen_hs.url()),
                ("WALKIE_USER", carol.user_id.clone()),
                ("WALKIE_PASSWORD", carol.password.clone()),
                ("WALKIE_DATA_DIR", app_data.to_string_lossy().into_owned()),
                (
                    "RUST_LOG",
                    "info,walkie_app::radio=debug,matrix_sdk=warn,matrix_sdk_crypto=warn".into(),
                ),
                ("NO_AT_BRIDGE", "1".into()),
                ("NO_COLOR", "1".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let args: &[&str] = if k.panel_open { &[] } else { &["--hidden"] };
        let app = AppDriver::start_with_args(&desktop, &app_binary()?, args, env).await?;
        let ready = app.wait_for_log("walkie-app ready", limit).await?;
        if !ready.contains("Online") {
            bail!("the app is ready but not online: {ready}");
        }
        if k.panel_open {
            app.wait_for("#state", |t| t == "online", limit).await?;
        }
        let pid = app.app_pid().context("the app's pid")?;
        sampled.push(Sampled::Process("app".into(), pid));
        sampled.push(Sampled::ChildrenOf("webview".into(), pid));
        desk = Some((app, desktop, audio, secrets));
    }
    std::fs::write(
        k.work.join("setup.json"),
        serde_json::to_vec_pretty(&serde_json::json!({
            "federated": k.federated, "one_way_ms": if k.federated { 1000 } else { 0 },
            "app": k.app, "panel": if k.panel_open { "open" } else { "tray" },
            "listeners": k.listeners, "room": room,
        }))?,
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = start_sampler(k.work.join("samples.csv"), sampled, stop.clone())?;
    say(&format!(
        "soaking for {} s: a {} s talk every {} s",
        k.duration.as_secs(),
        k.talk_s,
        k.every.as_secs()
    ));
    let mut talks = std::fs::File::create(k.work.join("talks.jsonl"))?;
    let start = Instant::now();
    let mut n = 0;
    let mut last = None;
    while start.elapsed() < k.duration {
        let began = Instant::now();
        let out = alice
            .command()
            .args(["talk", &room, "--wav"])
            .arg(&talk)
            .stderr(Stdio::null())
            .output()?;
        let summary = match last_json_line(&out.stdout) {
            Ok(v) if out.status.success() => v,
            _ => serde_json::json!({"failed": true, "status": out.status.code()}),
        };
        if let Some(s) = summary["session_id"].as_str() {
            last = Some(s.to_owned());
        }
        writeln!(talks, "{summary}")?;
        n += 1;
        eprint!(
            "\r[soak] {n} talk(s), {} of {} s",
            start.elapsed().as_secs(),
            k.duration.as_secs()
        );
        // The talk rate (a fixed schedule, not a wait for an event).
        tokio::time::sleep(k.every.saturating_sub(began.elapsed())).await;
    }
    eprintln!();
    // Until every listener saved the last talk (its end reached them).
    if let Some(last) = &last {
        let deadline = Instant::now() + limit;
        for i in 1..=k.listeners {
            let file = k.work.join(format!("listen{i}.jsonl"));
            while !saved(&file, last) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    for mut child in listeners {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some((app, ..)) = desk {
        std::fs::write(k.work.join("app.log"), app.log_lines().join("\n"))?;
        app.close().await?;
    }
    say(&format!("{n} talks; results in {}", k.work.display()));
    Ok(())
}
