//! "Test microphone" in the panel: opens the chosen input for a few seconds
//! and sends its level (RMS and peak, dBFS) to the panel ten times a second,
//! so the user sees that the right microphone hears them. Capture runs only
//! while the test does (never in the background) and stops on its own after
//! `MAX_TEST`, when the panel stops it, or when a talk starts.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tauri::{AppHandle, Emitter};
use walkie_audio::{
    capture::Capture,
    frames::{i16_to_f32, FrameSource},
};

/// The longest a test keeps the microphone open.
pub const MAX_TEST: Duration = Duration::from_secs(15);
/// Level reports per second.
const REPORTS_PER_S: u32 = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub rms_dbfs: f32,
    pub peak_dbfs: f32,
    pub device: String,
}

/// The running test, if any.
#[derive(Default)]
pub struct MicTest(Mutex<Option<Arc<AtomicBool>>>);

fn dbfs(x: f32) -> f32 {
    if x <= 1e-6 {
        -120.0
    } else {
        20.0 * x.log10()
    }
}

impl MicTest {
    /// Starts a test on `device` (`None`: the default input).
    pub fn start(&self, app: &AppHandle, device: Option<String>) -> Result<(), String> {
        self.stop();
        let stop = Arc::new(AtomicBool::new(false));
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(stop.clone());
        let mut capture = Capture::open(device.as_deref()).map_err(|e| e.to_string())?;
        let app = app.clone();
        std::thread::Builder::new()
            .name("walkie-mic-test".into())
            .spawn(move || {
                let started = Instant::now();
                let name = capture.device_name().to_owned();
                let per_report = 50 / REPORTS_PER_S as usize; // 20 ms frames
                let (mut sum, mut peak, mut n, mut frames) = (0f32, 0f32, 0usize, 0usize);
                while !stop.load(Ordering::Relaxed) && started.elapsed() < MAX_TEST {
                    let frame = match capture.next_frame() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(e) => {
                            let _ = app.emit("mic-test-error", e.to_string());
                            break;
                        }
                    };
                    for &s in frame.iter() {
                        let v = i16_to_f32(s);
                        sum += v * v;
                        peak = peak.max(v.abs());
                    }
                    n += frame.len();
                    frames += 1;
                    if frames % per_report == 0 {
                        let level = Level {
                            rms_dbfs: dbfs((sum / n.max(1) as f32).sqrt()),
                            peak_dbfs: dbfs(peak),
                            device: name.clone(),
                        };
                        let _ = app.emit("mic-level", level);
                        (sum, peak, n) = (0.0, 0.0, 0);
                    }
                }
                // `capture` drops here: the microphone closes.
                let _ = app.emit("mic-test-ended", ());
                tracing::info!(device = %name, "microphone test ended");
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Stops a running test (the device closes within one frame).
    pub fn stop(&self) {
        if let Some(stop) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            stop.store(true, Ordering::Relaxed);
        }
    }
}
