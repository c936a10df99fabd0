//! The installed package's check (issue 14), run by `scripts/check-deb.sh`
//! after `dpkg -i`: the installed app (`/usr/bin/walkie-app`, or the path
//! given as the first argument) starts under Xvfb with a private D-Bus
//! session, gnome-keyring and PulseAudio, shows its tray icon (a window
//! embedded in the tray host) and signs in to a local Synapse ("walkie-app
//! ready account=Online"). Saves a screenshot of the screen to the second
//! argument when given. Prints what it saw; fails on the first miss.
#![recursion_limit = "256"]

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, ensure, Context, Result};
use walkie_tests::{
    desktop::{ChildGuard, Desktop},
    pulse::PulseAudio,
    secret_service::SecretService,
    Synapse,
};

/// How many windows the tray host embeds (the tray icons).
fn tray_icons(desktop: &Desktop) -> Result<usize> {
    let trayer = desktop.wait_for_window(&["--class", "trayer"], Duration::from_secs(20))?;
    let mut icons = 0;
    for id in trayer {
        let out = desktop
            .command("xwininfo")
            .args(["-children", "-id", &id])
            .output()
            .context("running xwininfo (Debian package x11-utils)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "  1 child:" or "  2 children:"
        icons += text
            .lines()
            .find_map(|l| {
                let l = l.trim();
                l.strip_suffix(" child:")
                    .or_else(|| l.strip_suffix(" children:"))
                    .and_then(|n| n.parse::<usize>().ok())
            })
            .unwrap_or(0);
    }
    Ok(icons)
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/usr/bin/walkie-app".into());
    let screenshot = std::env::args().nth(2);
    ensure!(
        std::path::Path::new(&binary).is_file(),
        "{binary} is not there: install the package first (dpkg -i)"
    );
    let mut hs = Synapse::start().await?;
    let alice = hs.register("alice").await?;
    let audio = PulseAudio::start()?;
    let desktop = Desktop::start()?;
    let _keyring = SecretService::on_bus(desktop.bus_address())?;
    let before = tray_icons(&desktop)?;
    let data = tempfile::tempdir()?;
    let mut cmd = desktop.command(&binary);
    cmd.envs(audio.env())
        .env("WALKIE_HOMESERVER", hs.url())
        .env("WALKIE_USER", &alice.user_id)
        .env("WALKIE_PASSWORD", &alice.password)
        .env("WALKIE_DATA_DIR", data.path())
        .env("NO_AT_BRIDGE", "1")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut app = ChildGuard::spawn("walkie-app", &mut cmd)?;
    let stderr = app.child().stderr.take().context("app stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            eprintln!("[installed app] {line}");
            if line.contains("walkie-app ready") {
                let _ = tx.send(line);
            }
        }
    });
    let Ok(ready) = rx.recv_timeout(Duration::from_secs(120)) else {
        bail!("the installed app did not get ready within 120 s (its log is above)");
    };
    ensure!(
        ready.contains("account=Online"),
        "the installed app is not signed in: {ready}"
    );
    println!("signed in: {ready}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let icons = loop {
        let icons = tray_icons(&desktop)?;
        if icons > before || std::time::Instant::now() >= deadline {
            break icons;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    ensure!(
        icons > before,
        "no tray icon: the tray host embeds {icons} window(s), as before the app"
    );
    println!("tray icon: the tray host embeds {icons} window(s) ({before} before the app)");
    if let Some(path) = screenshot {
        desktop.screenshot(std::path::Path::new(&path))?;
        println!("screenshot: {path}");
    }
    drop(app);
    // Synapse's log is printed only when the check failed (an early return).
    hs.quiet_on_drop();
    Ok(())
}
