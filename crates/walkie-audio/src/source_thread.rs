//! Runs a [`FrameSource`] on its own thread for the length of one talk:
//! opens it (a microphone is opened here, on press), reports when it is
//! live, hands every frame to the caller's callback, and closes it when the
//! talk is released ([`SourceThread::stop`]) or the source ends or fails.
//! The callback must not block (it usually forwards into a channel).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::frames::{DeviceError, Frame, FrameSource};

/// Longest wait for a device's first samples before the talk gives up.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the source thread reports, in order: `Live` once, then frames,
/// then `Ended` or `Failed` (or nothing after `stop`).
#[derive(Debug)]
pub enum SourceMessage {
    /// Audio flows. `after`: from opening the source to its first samples;
    /// `since_start`: from `SourceThread::start` (the press) to now.
    Live {
        after: Duration,
        since_start: Duration,
    },
    /// The next 20 ms.
    Frame(Box<Frame>),
    /// The source ended (end of file).
    Ended,
    /// The source could not be opened or failed; the talk should end.
    Failed(DeviceError),
}

/// A running source. Dropping it stops the thread and closes the source.
#[derive(Debug)]
pub struct SourceThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SourceThread {
    /// Starts a thread that calls `open`, then delivers messages to
    /// `deliver` until stopped. `deliver` returning false stops it too.
    pub fn start<O, D>(open: O, mut deliver: D) -> std::io::Result<Self>
    where
        O: FnOnce() -> Result<Box<dyn FrameSource>, DeviceError> + Send + 'static,
        D: FnMut(SourceMessage) -> bool + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("walkie-capture".into())
            .spawn(move || {
                let mut source = match open() {
                    Ok(source) => source,
                    Err(e) => {
                        deliver(SourceMessage::Failed(e));
                        return;
                    }
                };
                match source.wait_live(LIVE_TIMEOUT) {
                    Ok(after) => {
                        let live = SourceMessage::Live {
                            after,
                            since_start: started.elapsed(),
                        };
                        if !deliver(live) {
                            return;
                        }
                    }
                    Err(e) => {
                        deliver(SourceMessage::Failed(e));
                        return;
                    }
                }
                while !stopped.load(Ordering::Relaxed) {
                    let message = match source.next_frame() {
                        Ok(Some(frame)) => SourceMessage::Frame(Box::new(frame)),
                        Ok(None) => {
                            deliver(SourceMessage::Ended);
                            return;
                        }
                        Err(e) => {
                            deliver(SourceMessage::Failed(e));
                            return;
                        }
                    };
                    if !deliver(message) {
                        return;
                    }
                }
                // `source` drops here: the device closes.
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops delivering, closes the source and waits for the thread (at most
    /// one frame, 20 ms, for a device).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("capture thread panicked");
            }
        }
    }
}

impl Drop for SourceThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}
