//! The PulseAudio harness itself: two private servers run side by side
//! without hearing each other, what is played into one's mic is what its
//! mic captures, a client given one server's env plays into that server's
//! speaker only, `our_streams` sees foreign streams but not the harness's
//! own, and a server that cannot start fails loudly with its log.

use std::time::Duration;

use anyhow::{ensure, Result};
use walkie_tests::pulse::{tone_wav, Wav};
use walkie_tests::PulseAudio;

/// A 440 Hz tone at half scale has an RMS of 0.354; silence is exactly 0.
fn assert_tone(wav: &Wav, what: &str) {
    let rms = wav.rms();
    assert!(rms > 0.05, "{what}: expected the tone, RMS is {rms:.4}");
    let freq = wav.tone_frequency().unwrap_or(0.0);
    assert!(
        (430.0..450.0).contains(&freq),
        "{what}: expected 440 Hz, measured {freq:.1} Hz"
    );
}

fn assert_silent(wav: &Wav, what: &str) {
    assert!(
        wav.duration() > Duration::from_millis(500),
        "{what}: recording too short ({:?}) to prove silence",
        wav.duration()
    );
    assert_eq!(wav.rms(), 0.0, "{what}: expected silence");
}

#[test]
fn two_servers_are_independent() -> Result<()> {
    let a = PulseAudio::start()?;
    let b = PulseAudio::start()?;
    assert_ne!(a.socket(), b.socket());
    let tmp = tempfile::tempdir()?;
    let tone = tmp.path().join("tone.wav");
    tone_wav(&tone, 440.0, 1.5)?;

    // Into A's mic: A's default source hears it, B's does not.
    let mic_a = a.record_source("mic", &tmp.path().join("mic-a.wav"))?;
    let mic_b = b.record_source("mic", &tmp.path().join("mic-b.wav"))?;
    let status = a.play_into_mic(&tone)?.wait()?;
    ensure!(status.success(), "paplay into A's mic failed with {status}");
    std::thread::sleep(Duration::from_millis(200));
    let mic_a = Wav::read(&mic_a.stop()?)?;
    let mic_b = Wav::read(&mic_b.stop()?)?;
    assert_eq!((mic_a.rate, mic_a.channels), (48_000, 1));
    assert_tone(&mic_a, "A's mic");
    assert!(
        mic_a.duration() >= Duration::from_millis(1500),
        "A's mic recording is {:?}, shorter than the tone",
        mic_a.duration()
    );
    assert_silent(&mic_b, "B's mic");

    // A client given B's env plays to B's default sink (`speaker`) only;
    // while it plays, B's our_streams lists it and A's lists nothing.
    let spk_a = a.record_speaker(&tmp.path().join("speaker-a.wav"))?;
    let spk_b = b.record_speaker(&tmp.path().join("speaker-b.wav"))?;
    let mut client = b.command("paplay");
    client.arg("--client-name=foreign-client").arg(&tone);
    let mut client = client.spawn()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let streams = b.our_streams()?;
        if !streams.is_empty() || std::time::Instant::now() > deadline {
            break streams;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(seen.len(), 1, "B's streams while a client plays: {seen:?}");
    assert!(
        seen[0].starts_with("sink-input\t") && seen[0].ends_with("\tforeign-client"),
        "unexpected stream line: {}",
        seen[0]
    );
    assert_eq!(a.our_streams()?, Vec::<String>::new());
    let status = client.wait()?;
    ensure!(status.success(), "paplay with B's env failed with {status}");
    std::thread::sleep(Duration::from_millis(200));
    assert_tone(&Wav::read(&spk_b.stop()?)?, "B's speaker");
    assert_silent(&Wav::read(&spk_a.stop()?)?, "A's speaker");

    // Nothing is left: the client is gone and the harness's own streams
    // are never counted.
    assert_eq!(a.our_streams()?, Vec::<String>::new());
    assert_eq!(b.our_streams()?, Vec::<String>::new());
    let outputs = b.pactl(&["list", "short", "source-outputs"])?;
    assert!(
        !outputs.contains("protocol-native.c"),
        "a client's record stream survived: {outputs}"
    );
    Ok(())
}

#[test]
fn a_server_that_cannot_start_fails_with_its_log() {
    let err = match PulseAudio::start_with("load-module module-walkie-no-such-module") {
        Ok(_) => panic!("PulseAudio started with a broken start-up script"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("logged errors during start-up"),
        "unexpected error: {err}"
    );
    assert!(err.contains("--- pulseaudio log ---"), "no log in: {err}");
    assert!(
        err.contains("module-walkie-no-such-module"),
        "the log does not name the cause: {err}"
    );
}

#[test]
fn dropping_the_server_stops_it_and_removes_its_directory() -> Result<()> {
    let pa = PulseAudio::start()?;
    let dir = pa.dir().to_owned();
    let env = pa.env();
    drop(pa);
    assert!(!dir.exists(), "{} is still there", dir.display());
    let out = std::process::Command::new("pactl")
        .arg("info")
        .envs(env)
        .output()?;
    assert!(
        !out.status.success(),
        "pactl still reaches the dropped server"
    );
    Ok(())
}
