//! `cargo bench -p walkie-audio --features test-utils --bench audio` (or
//! `bash scripts/bench-audio.sh`, which also starts a private PulseAudio for
//! the device figures): the audio figures of docs/benchmarks.md. It needs the
//! `test-utils` feature for `netsim` and `test_signal`.
//!
//! 1. Opus encode + decode CPU per live stream, as percent of one core
//!    (thread CPU time over audio time, 60 s of speech-like signal).
//! 2. The delay the jitter buffer adds at 0, 20 and 50 ms of uniform jitter
//!    (seeded network simulator, 8 talks of 30 s each).
//! 3. Press → capture live (device opened until its first samples) and
//!    output open → first write accepted, on the default devices, repeated;
//!    reported as not measured when no audio device is reachable.

use std::time::{Duration, Instant};

use walkie_audio::{
    capture::Capture,
    codec::{OpusDecoder, OpusEncoder, FRAME_SAMPLES},
    frames::{FrameSink, FrameSource},
    jitter::JitterStats,
    netsim::{play_through, JitterModel, Net},
    output::DeviceSink,
    test_signal::speech_like,
    wav,
};

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn opus_cpu() {
    let seconds = 60.0;
    let pcm = speech_like(seconds);
    let frames: Vec<_> = wav::frames(&pcm).collect();
    for bitrate in [16_000, 24_000, 32_000] {
        let mut encoder = match OpusEncoder::new() {
            Ok(e) => e,
            Err(e) => return println!("opus: {e}"),
        };
        if let Err(e) = encoder.set_bitrate(bitrate) {
            return println!("opus: {e}");
        }
        let mut decoder = match OpusDecoder::new() {
            Ok(d) => d,
            Err(e) => return println!("opus: {e}"),
        };
        let start = thread_cpu();
        let mut packets = Vec::with_capacity(frames.len());
        for frame in &frames {
            match encoder.encode(frame) {
                Ok(p) => packets.push(p),
                Err(e) => return println!("opus encode: {e}"),
            }
        }
        let encoded = thread_cpu();
        for p in &packets {
            if let Err(e) = decoder.decode(p) {
                return println!("opus decode: {e}");
            }
        }
        let decoded = thread_cpu();
        let enc = (encoded - start).as_secs_f64() / seconds * 100.0;
        let dec = (decoded - encoded).as_secs_f64() / seconds * 100.0;
        let bytes: usize = packets.iter().map(Vec::len).sum();
        println!(
            "opus {:>2} kbit/s: encode {enc:.2} % + decode {dec:.2} % = {:.2} % of one core per live stream ({:.1} kbit/s actual)",
            bitrate / 1000,
            enc + dec,
            bytes as f64 * 8.0 / seconds / 1000.0,
        );
        println!(
            "json {}",
            serde_json::json!({
                "kind": "opus", "name": format!("opus-{}kbit", bitrate / 1000),
                "encode_pct_of_core": enc, "decode_pct_of_core": dec,
                "kbit_s_actual": bytes as f64 * 8.0 / seconds / 1000.0,
            })
        );
    }
}

fn jitter_delay() {
    println!("jitter (uniform) | mean added | max added | final target | concealed of played");
    for jitter in [0u64, 20, 50] {
        let net = Net::plain(JitterModel::Uniform(jitter));
        let runs = 8u64;
        let mut mean = 0.0;
        let mut max = 0;
        let mut sum = JitterStats::default();
        for seed in 1..=runs {
            let s = play_through(&net, seed * 104_729 + 1);
            mean += s.mean_added_delay_ms() / runs as f64;
            max = max.max(s.max_added_delay_ms);
            sum.target_delay_ms += s.target_delay_ms;
            sum.played += s.played;
            sum.concealed += s.concealed;
        }
        println!(
            "{jitter:>13} ms | {mean:7.1} ms | {max:6} ms | {:9} ms | {} of {}",
            sum.target_delay_ms / runs,
            sum.concealed,
            sum.played
        );
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// Prints the figures, and a `json` line (kind `access`, `key`) for
/// scripts/bench.sh.
fn summary(name: &str, key: &str, mut ms: Vec<f64>) {
    if ms.is_empty() {
        return;
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "json {}",
        serde_json::json!({
            "kind": "access", "name": key, "n": ms.len(),
            "p50_ms": percentile(&ms, 0.5), "p95_ms": percentile(&ms, 0.95),
            "max_ms": ms[ms.len() - 1],
        })
    );
    println!(
        "{name}: n={} min {:.1} ms, p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms.len(),
        ms[0],
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms[ms.len() - 1]
    );
}

fn devices() {
    let runs = 10;
    let mut live = Vec::new();
    for _ in 0..runs {
        let press = Instant::now();
        let mut capture = match Capture::open(None) {
            Ok(c) => c,
            Err(e) => return println!("capture: not measured ({e})"),
        };
        let opened = press.elapsed();
        match capture.wait_live(Duration::from_secs(5)) {
            Ok(_) => live.push((
                opened.as_secs_f64() * 1000.0,
                press.elapsed().as_secs_f64() * 1000.0,
            )),
            Err(e) => return println!("capture: not measured ({e})"),
        }
        drop(capture);
    }
    summary(
        "press -> capture stream open (build + play returned)",
        "capture_stream_open",
        live.iter().map(|l| l.0).collect(),
    );
    summary(
        "press -> capture live (first samples)",
        "press_to_capture_live",
        live.iter().map(|l| l.1).collect(),
    );
    let mut output = Vec::new();
    for _ in 0..runs {
        let mut sink = DeviceSink::new(None);
        let start = Instant::now();
        if let Err(e) = sink.write_frame(&[0; FRAME_SAMPLES]) {
            return println!("output: not measured ({e})");
        }
        output.push(start.elapsed().as_secs_f64() * 1000.0);
        let _ = sink.suspend();
    }
    summary("output open (first frame accepted)", "output_open", output);
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is ignored.
    println!("== Opus CPU per live stream (60 s speech-like, 20 ms frames, VoIP, FEC)");
    opus_cpu();
    println!("\n== Delay added by the jitter buffer (30 s talks, 30 ms base delay)");
    jitter_delay();
    println!("\n== Devices (default input and output)");
    devices();
}
