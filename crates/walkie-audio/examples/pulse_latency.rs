//! Device-side latency probe (issue 11). Needs a PulseAudio server with the
//! test harness's sinks (`speaker`, `micfeed`, source `mic`): run it through
//! `scripts/pulse-latency.sh`, which starts a private one.
//!
//! `output`: our `DeviceSink` (host from `WALKIE_AUDIO_HOST`, default sink
//! `speaker`) is driven like the player drives it (top-up every 5 ms); every
//! 500 ms one frame starts with a click. A native-PulseAudio recorder on
//! `speaker.monitor` (1 ms fragments) finds the click. Latency = click seen -
//! `write_frame` of the click frame (ring + output stream + sink).
//!
//! `capture`: a native-PulseAudio player (1 ms buffer) plays clicks into
//! `micfeed`; a cpal input opened like `capture::Capture` does (host from
//! `WALKIE_AUDIO_HOST`, default source `mic`, `WALKIE_CAPTURE_PERIOD_MS`)
//! timestamps the callback that holds the click. Latency = that callback -
//! the instant the player's stream says the click is played.
//!
//! `cue`: a press as the app handles it, on an idle machine (the output
//! device closed): a `Player` on our `DeviceSink` (default sink `speaker`)
//! and the microphone opened like `capture::Capture`; when its first samples
//! arrive the talk-permit cue is asked for, as `live_talk` does. The
//! recorder on `speaker.monitor` finds the cue's first sample above
//! threshold. Latency = that - the press (minus where the threshold falls in
//! the cue itself). The hotkey's own delivery (X server to the app) is not
//! in it.
//!
//! Calibration: each side's probe stream is timed by what PulseAudio reports
//! for it (cpal's callback/capture and callback/playback timestamps); both
//! the raw figure and the one corrected by that reported latency are printed.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use walkie_audio::{
    codec::FRAME_SAMPLES,
    frames::{FrameSink, FrameSource},
    output::DeviceSink,
};

const CLICKS: usize = 30;
const CLICK_EVERY_FRAMES: usize = 25; // 500 ms
const WARMUP_FRAMES: usize = 50; // 1 s

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn pulse() -> Res<cpal::Host> {
    Ok(cpal::host_from_id(cpal::HostId::PulseAudio)?)
}

fn device_by_id(host: &cpal::Host, id: &str) -> Res<cpal::Device> {
    host.devices()?
        .find(|d| d.id().map(|i| i.to_string()).is_ok_and(|i| i.ends_with(id)))
        .ok_or_else(|| format!("no device {id}").into())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn report(label: &str, raw: &[f64], corrected: &[f64]) {
    let (mut r, mut c) = (raw.to_vec(), corrected.to_vec());
    println!(
        "{label}: n={} raw p50={:.1} p95={:.1} max={:.1} ms | corrected p50={:.1} p95={:.1} min={:.1} max={:.1} ms",
        r.len(),
        pct(&mut r, 0.5),
        pct(&mut r, 0.95),
        pct(&mut r, 1.0),
        pct(&mut c, 0.5),
        pct(&mut c, 0.95),
        pct(&mut c, 0.0),
        pct(&mut c, 1.0)
    );
    // One line for scripts/bench.sh (kind `device`; the name says which
    // path and host).
    let host = std::env::var("WALKIE_AUDIO_HOST").unwrap_or_else(|_| "default".into());
    println!(
        "json {{\"kind\": \"device\", \"name\": \"{label} ({host})\", \"n\": {}, \"raw_p50_ms\": {:.1}, \"raw_p95_ms\": {:.1}, \"p50_ms\": {:.1}, \"p95_ms\": {:.1}, \"max_ms\": {:.1}}}",
        r.len(),
        pct(&mut r, 0.5),
        pct(&mut r, 0.95),
        pct(&mut c, 0.5),
        pct(&mut c, 0.95),
        pct(&mut c, 1.0)
    );
}

/// (instant seen at the callback, that instant corrected by the stream's
/// reported latency and the click's position in the buffer)
type Seen = (Instant, Instant);

fn main() -> Res<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "output".into());
    match mode.as_str() {
        "output" => output(),
        "capture" => capture(),
        "cue" => cue(),
        _ => Err("mode: output | capture | cue".into()),
    }
}

/// An input stream sending when a click (a sample above 0.5) is seen,
/// debounced by 100 ms.
fn click_listener(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    tx: mpsc::Sender<Seen>,
) -> Res<cpal::Stream> {
    sound_listener(device, config, 0.5, Duration::from_millis(100), tx)
}

/// An input stream sending when a sample above `threshold` is seen, at most
/// once per `debounce`.
fn sound_listener(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    threshold: f32,
    debounce: Duration,
    tx: mpsc::Sender<Seen>,
) -> Res<cpal::Stream> {
    let channels = config.channels as usize;
    let rate = config.sample_rate as f64;
    let mut last: Option<Instant> = None;
    let stream = device.build_input_stream(
        config,
        move |data: &[f32], info: &cpal::InputCallbackInfo| {
            let now = Instant::now();
            let ts = info.timestamp();
            let reported = ts.callback.duration_since(ts.capture);
            let n = data.len() / channels;
            if let Some(i) = data.chunks(channels).position(|f| f[0].abs() > threshold) {
                if last.is_some_and(|l| now - l < debounce) {
                    return;
                }
                last = Some(now);
                // The first frame of the buffer was captured `reported`
                // before the callback; frame i, i / rate later.
                let back = reported.as_secs_f64() - i as f64 / rate;
                let corrected = if back >= 0.0 {
                    now - Duration::from_secs_f64(back)
                } else {
                    now + Duration::from_secs_f64(-back)
                };
                let _ = tx.send((now, corrected));
                let _ = n;
            }
        },
        |e| eprintln!("listener error: {e}"),
        None,
    )?;
    stream.play()?;
    Ok(stream)
}

fn output() -> Res<()> {
    // Recorder: native PulseAudio on speaker.monitor, 1 ms fragments.
    let ph = pulse()?;
    let monitor = device_by_id(&ph, "speaker.monitor")?;
    let mut cfg: cpal::StreamConfig = monitor.default_input_config()?.into();
    cfg.buffer_size = cpal::BufferSize::Fixed(cfg.sample_rate / 1000);
    let (tx, rx) = mpsc::channel();
    let _rec = click_listener(&monitor, cfg, tx)?;

    let mut sink = DeviceSink::new(None);
    let silence = [0i16; FRAME_SAMPLES];
    let mut click = silence;
    click[..4].fill(30_000);
    let mut written = Vec::new();
    let mut frame_no = 0usize;
    let total = WARMUP_FRAMES + CLICKS * CLICK_EVERY_FRAMES + 10;
    sink.write_frame(&silence)?;
    frame_no += 1;
    // Whole frames, each written at once: the figure is write -> heard of
    // a frame's first sample. (The player writes pieces; its ring lead is
    // in the `cue` mode and the mouth-to-ear bench.)
    while frame_no < total {
        let wanted = sink.frames_wanted()?;
        for _ in 0..wanted {
            let is_click = frame_no >= WARMUP_FRAMES
                && (frame_no - WARMUP_FRAMES).is_multiple_of(CLICK_EVERY_FRAMES)
                && written.len() < CLICKS;
            if is_click {
                written.push(Instant::now());
                sink.write_frame(&click)?;
            } else {
                sink.write_frame(&silence)?;
            }
            frame_no += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let underruns = sink.underruns();
    drop(sink);
    let seen: Vec<Seen> = rx.try_iter().collect();
    let (mut raw, mut cor) = (Vec::new(), Vec::new());
    for (now, corrected) in &seen {
        if let Some(w) = written.iter().rev().find(|w| **w <= *now) {
            raw.push((*now - *w).as_secs_f64() * 1000.0);
            cor.push(corrected.saturating_duration_since(*w).as_secs_f64() * 1000.0);
        }
    }
    println!(
        "output host={} written={} seen={} underruns={underruns}",
        std::env::var("WALKIE_AUDIO_HOST").unwrap_or_else(|_| "(default)".into()),
        written.len(),
        seen.len()
    );
    report("output write->speaker.monitor", &raw, &cor);
    Ok(())
}

fn capture() -> Res<()> {
    // Player: native PulseAudio into micfeed, 1 ms buffer; clicks on demand.
    let ph = pulse()?;
    let micfeed = device_by_id(&ph, "micfeed")?;
    let mut ocfg: cpal::StreamConfig = micfeed.default_output_config()?.into();
    ocfg.buffer_size = cpal::BufferSize::Fixed(ocfg.sample_rate / 1000);
    let fire = Arc::new(AtomicBool::new(false));
    let played: Arc<Mutex<Vec<Instant>>> = Default::default();
    let ochannels = ocfg.channels as usize;
    let player = {
        let (fire, played) = (fire.clone(), played.clone());
        micfeed.build_output_stream(
            ocfg,
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                data.fill(0.0);
                if fire.swap(false, Ordering::Relaxed) {
                    let ts = info.timestamp();
                    let ahead = ts.playback.duration_since(ts.callback);
                    for f in data.chunks_mut(ochannels).take(4) {
                        f.fill(0.9);
                    }
                    if let Ok(mut played) = played.lock() {
                        played.push(Instant::now() + ahead);
                    }
                }
            },
            |e| eprintln!("player error: {e}"),
            None,
        )?
    };
    player.play()?;

    // Capture as capture::Capture opens it (same host choice and period).
    let mut cap = walkie_audio::capture::Capture::open(None)?;
    cap.wait_live(Duration::from_secs(5))?;
    drop(cap);
    // The raw callbacks, opened the same way, for per-callback timestamps.
    let host = match std::env::var("WALKIE_AUDIO_HOST").as_deref() {
        Ok("alsa") => cpal::host_from_id(cpal::HostId::Alsa)?,
        _ => pulse()?,
    };
    let dev = host.default_input_device().ok_or("no default input")?;
    let sup = dev.default_input_config()?;
    let mut icfg: cpal::StreamConfig = sup.into();
    let ms: u32 = std::env::var("WALKIE_CAPTURE_PERIOD_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    icfg.buffer_size = cpal::BufferSize::Fixed(icfg.sample_rate * ms / 1000);
    let (tx, rx) = mpsc::channel();
    let _rec = click_listener(&dev, icfg, tx)?;
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..CLICKS {
        fire.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen: Vec<Seen> = rx.try_iter().collect();
    let played = played.lock().map_err(|_| "poisoned")?.clone();
    let (mut raw, mut cor) = (Vec::new(), Vec::new());
    for (now, corrected) in &seen {
        if let Some(p) = played.iter().rev().find(|p| **p <= *now) {
            raw.push((*now - *p).as_secs_f64() * 1000.0);
            cor.push(corrected.saturating_duration_since(*p).as_secs_f64() * 1000.0);
        }
    }
    println!(
        "capture host={} period={ms}ms played={} seen={}",
        std::env::var("WALKIE_AUDIO_HOST").unwrap_or_else(|_| "(default)".into()),
        played.len(),
        seen.len()
    );
    report("capture micfeed->callback", &raw, &cor);
    Ok(())
}

fn cue() -> Res<()> {
    use walkie_audio::{
        cues::{self, Cue},
        player::{Player, PlayerConfig},
    };
    const PRESSES: usize = 10;
    const THRESHOLD: f32 = 0.05;
    let ph = pulse()?;
    let monitor = device_by_id(&ph, "speaker.monitor")?;
    let mut cfg: cpal::StreamConfig = monitor.default_input_config()?.into();
    cfg.buffer_size = cpal::BufferSize::Fixed(cfg.sample_rate / 1000);
    let (tx, rx) = mpsc::channel();
    let _rec = sound_listener(&monitor, cfg, THRESHOLD, Duration::from_millis(1000), tx)?;
    // Where the threshold falls in the cue itself.
    let lead_ms = cues::samples(Cue::TalkPermit)
        .iter()
        .position(|s| s.abs() > THRESHOLD)
        .unwrap_or(0) as f64
        / 48.0;
    let config = PlayerConfig::default();
    let idle_close = config.idle_close;
    let player = Player::start(Box::new(DeviceSink::new(None)), config, None, |_| {})?;
    let mut presses = Vec::new();
    for _ in 0..PRESSES {
        // The player has closed the device (idle), as between talks.
        std::thread::sleep(idle_close + Duration::from_millis(500));
        let press = Instant::now();
        let mut cap = walkie_audio::capture::Capture::open(None)?;
        cap.wait_live(Duration::from_secs(5))?;
        player.cue(Cue::TalkPermit);
        presses.push(press);
        std::thread::sleep(Duration::from_millis(400));
        drop(cap);
    }
    std::thread::sleep(Duration::from_millis(300));
    drop(player);
    let seen: Vec<Seen> = rx.try_iter().collect();
    let (mut raw, mut cor) = (Vec::new(), Vec::new());
    for (now, corrected) in &seen {
        if let Some(p) = presses.iter().rev().find(|p| **p <= *now) {
            raw.push((*now - *p).as_secs_f64() * 1000.0 - lead_ms);
            cor.push(corrected.saturating_duration_since(*p).as_secs_f64() * 1000.0 - lead_ms);
        }
    }
    println!(
        "cue host={} presses={} heard={} threshold lead={lead_ms:.1}ms",
        std::env::var("WALKIE_AUDIO_HOST").unwrap_or_else(|_| "(default)".into()),
        presses.len(),
        seen.len()
    );
    report("press->permit cue heard", &raw, &cor);
    Ok(())
}
