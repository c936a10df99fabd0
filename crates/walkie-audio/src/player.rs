//! The playback thread: everything that comes out of the speakers goes
//! through it. Owns the mixing queue (which talk plays now), one Opus decoder
//! per playing talk with FEC/PLC concealment, clean talk starts and ends
//! (fade-in, a concealed and faded tail), the cues, and the output device's
//! lifetime: the sink is opened on the first frame and suspended after
//! [`PlayerConfig::idle_close`] with nothing to play. While idle the thread
//! blocks on its command channel: no timer, no CPU, no open stream.
//!
//! Unplayed talks are kept encrypted on disk when a [`QueueStore`] is given:
//! the queue says what to save and delete, a separate thread does the file
//! I/O (fsync never stalls the audio), and the saved talks are put back
//! (held for the user) when the player starts.
//!
//! The sink sets the pace (a device pulls at its own clock): the thread tops
//! the sink up to what it wants every few milliseconds and asks the mixing
//! queue for one 20 ms tick per frame written.

use std::{
    sync::mpsc::{self, Receiver, RecvTimeoutError, Sender},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    codec::{OpusDecoder, FRAME_SAMPLES},
    cues::{self, Cue, CueSettings},
    frames::{f32_to_i16, i16_to_f32, Frame, FrameSink, OutputLatency},
    jitter::Playout,
    mixing_queue::{
        GroupSettings, MixingQueue, PersistAction, QueueError, QueueEvent, QueueLimits, TalkMeta,
        TalkSummary, Tick,
    },
    queue_store::QueueStore,
};

/// How often the thread tops up an open sink.
const TOP_UP_INTERVAL: Duration = Duration::from_millis(5);
/// Fade at the start of a talk and over its concealed tail (no clicks).
const FADE_IN_SAMPLES: usize = 48 * 3;

/// Player settings.
#[derive(Debug, Clone)]
pub struct PlayerConfig {
    /// Which cues sound.
    pub cues: CueSettings,
    /// Nothing to play for this long closes the output device.
    pub idle_close: Duration,
    /// Bounds of the mixing queue.
    pub limits: QueueLimits,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        Self {
            cues: CueSettings::default(),
            idle_close: Duration::from_millis(1_500),
            limits: QueueLimits::default(),
        }
    }
}

/// What the player reports.
#[derive(Debug, Clone, PartialEq)]
pub enum PlayerEvent {
    /// The output device was opened.
    OutputOpened,
    /// The output device was closed (idle, or it failed).
    OutputClosed,
    /// The mixing queue's events (a talk started or finished playing, was
    /// queued, evicted, ...).
    Queue(QueueEvent),
    /// A cue started sounding.
    CueStarted(Cue),
    /// The output device failed; the player keeps going and reopens it on
    /// the next frame.
    OutputFailed(String),
}

/// Why the player could not start.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    #[error(transparent)]
    Limits(#[from] QueueError),
    #[error("cannot start the player thread: {0}")]
    Thread(std::io::Error),
}

enum Command {
    TalkStarted(TalkMeta),
    Frames {
        group: String,
        session: String,
        first_frame: u64,
        sender_ts_ms: u64,
        packets: Vec<Vec<u8>>,
    },
    TalkEnded(String),
    UserTalking(bool),
    Cue(Cue),
    OpenOutput,
    SetGroup(String, GroupSettings),
    SetSenderVolume(String, f32),
    SetCues(CueSettings),
    PlayNow(String),
    Skip(String),
    Drain(Sender<()>),
    Unplayed(Sender<Vec<TalkSummary>>),
    Shutdown,
}

/// Handle to the playback thread. Dropping it stops the thread and closes
/// the device.
pub struct Player {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player").finish_non_exhaustive()
    }
}

impl Player {
    /// Starts the playback thread on `sink`. Events go to `events`. With a
    /// `store`, its saved talks are restored (held) and unplayed talks are
    /// saved to it.
    pub fn start<E>(
        sink: Box<dyn FrameSink>,
        config: PlayerConfig,
        store: Option<QueueStore>,
        events: E,
    ) -> Result<Self, PlayerError>
    where
        E: FnMut(PlayerEvent) + Send + 'static,
    {
        let queue = MixingQueue::new(config.limits)?;
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("walkie-player".into())
            .spawn(move || {
                let mut player = PlayerThread::new(sink, config, queue, Box::new(events));
                if let Some(store) = store {
                    player.attach_store(store);
                }
                player.run(rx)
            })
            .map_err(PlayerError::Thread)?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    fn send(&self, command: Command) {
        if self.tx.send(command).is_err() {
            tracing::warn!("player thread is gone; audio command dropped");
        }
    }

    /// A talk began (its first message or claim arrived).
    pub fn talk_started(&self, meta: TalkMeta) {
        self.send(Command::TalkStarted(meta));
    }

    /// Frames of a talk: `packets[i]` is frame `first_frame + i`, the first
    /// captured at the talker's `sender_ts_ms`.
    pub fn frames(
        &self,
        group: &str,
        session: &str,
        first_frame: u64,
        sender_ts_ms: u64,
        packets: Vec<Vec<u8>>,
    ) {
        self.send(Command::Frames {
            group: group.to_owned(),
            session: session.to_owned(),
            first_frame,
            sender_ts_ms,
            packets,
        });
    }

    /// A talk ended.
    pub fn talk_ended(&self, session: &str) {
        self.send(Command::TalkEnded(session.to_owned()));
    }

    /// The user is talking: hold every received talk until they stop.
    pub fn set_user_talking(&self, talking: bool) {
        self.send(Command::UserTalking(talking));
    }

    /// Sounds a cue (if switched on).
    pub fn cue(&self, cue: Cue) {
        self.send(Command::Cue(cue));
    }

    /// Opens the output now (silence) so a cue that follows starts at once;
    /// used on press, while capture starts.
    pub fn open_output(&self) {
        self.send(Command::OpenOutput);
    }

    /// Mute, volume and priority of a group.
    pub fn set_group(&self, group: &str, settings: GroupSettings) {
        self.send(Command::SetGroup(group.to_owned(), settings));
    }

    /// One talker's volume (a user id), times their group's.
    pub fn set_sender_volume(&self, sender: &str, volume: f32) {
        self.send(Command::SetSenderVolume(sender.to_owned(), volume));
    }

    /// Which cues sound.
    pub fn set_cues(&self, cues: CueSettings) {
        self.send(Command::SetCues(cues));
    }

    /// Plays an unplayed (muted or queued) talk next.
    pub fn play_now(&self, session: &str) {
        self.send(Command::PlayNow(session.to_owned()));
    }

    /// Blocks until the cue and talk tail now sounding have been written to
    /// the output (at most a second; e.g. before a CLI exits).
    pub fn drain(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Drain(tx));
        let _ = rx.recv_timeout(Duration::from_secs(1));
    }

    /// The talks waiting to be played (queued, or held for the user), in
    /// arrival order.
    pub fn unplayed(&self) -> Vec<TalkSummary> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Unplayed(tx));
        rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
    }

    /// Drops an unplayed talk.
    pub fn skip(&self, session: &str) {
        self.send(Command::Skip(session.to_owned()));
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("player thread panicked");
            }
        }
    }
}

/// Decoder state of the talk being played.
struct Playing {
    session: String,
    decoder: OpusDecoder,
    frames_out: u64,
}

struct PlayerThread {
    sink: Box<dyn FrameSink>,
    config: PlayerConfig,
    events: Box<dyn FnMut(PlayerEvent) + Send>,
    queue: MixingQueue,
    epoch: Instant,
    playing: Option<Playing>,
    /// Cue samples still to sound, mixed over whatever plays.
    cue: Vec<f32>,
    cue_pos: usize,
    /// When the last audible frame (talk or cue) was written.
    last_audible: Instant,
    keep_open: bool,
    /// Tails of ended talks waiting to be written (concealed, faded).
    tail: Vec<f32>,
    /// Waiting for the cue and tail to be written.
    drains: Vec<Sender<()>>,
    /// Saves and deletes of unplayed talks, done by the store thread.
    persist: Option<Sender<PersistAction>>,
    /// A tick of the next talk, held back while the previous talk's tail
    /// is written.
    stashed: Option<Tick>,
    /// The frame being written to the sink and how much of it is written:
    /// a device takes pieces shorter than a frame.
    pending: Frame,
    pending_pos: usize,
    /// The pending frame is silence from a talk still buffering (nothing
    /// else in it): the next top-up asks the queue again instead of writing
    /// the rest, so a talk starts within a top-up interval of its buffer
    /// being ready rather than at the next frame boundary.
    pending_waiting: bool,
    /// Set by `write_talk` when its tick was a buffering talk's silence.
    tick_waited: bool,
}

impl PlayerThread {
    fn new(
        sink: Box<dyn FrameSink>,
        config: PlayerConfig,
        queue: MixingQueue,
        events: Box<dyn FnMut(PlayerEvent) + Send>,
    ) -> Self {
        Self {
            sink,
            config,
            events,
            queue,
            epoch: Instant::now(),
            playing: None,
            cue: Vec::new(),
            cue_pos: 0,
            last_audible: Instant::now(),
            keep_open: false,
            tail: Vec::new(),
            drains: Vec::new(),
            persist: None,
            stashed: None,
            pending: [0; FRAME_SAMPLES],
            pending_pos: FRAME_SAMPLES,
            pending_waiting: false,
            tick_waited: false,
        }
    }

    /// Restores the store's talks into the queue and starts the thread that
    /// writes the queue's saves and deletes.
    fn attach_store(&mut self, store: QueueStore) {
        let now = self.now_ms();
        match store.restore_into(&mut self.queue, now) {
            Ok(report) => {
                tracing::info!(
                    restored = report.restored,
                    unreadable = report.failures.len(),
                    refused = report.refused.len(),
                    "unplayed talks restored"
                );
                for failure in &report.failures {
                    tracing::warn!(path = %failure.path.display(), error = %failure.error, "unplayed talk not restored");
                }
            }
            Err(e) => tracing::warn!(error = %e, "unplayed talks could not be restored"),
        }
        let (tx, rx) = mpsc::channel::<PersistAction>();
        let spawned = std::thread::Builder::new()
            .name("walkie-queue-store".into())
            .spawn(move || {
                for action in rx {
                    if let Err(e) = store.apply(&action) {
                        tracing::warn!(error = %e, "unplayed talk store failed");
                    }
                }
            });
        match spawned {
            Ok(_) => self.persist = Some(tx),
            Err(e) => tracing::warn!(error = %e, "no store thread; unplayed talks stay in memory"),
        }
        self.forward_queue_events();
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn emit(&mut self, event: PlayerEvent) {
        (self.events)(event);
    }

    fn run(mut self, rx: Receiver<Command>) {
        loop {
            // Nothing to play and the device closed: block until told
            // something (no timer, no CPU while idle).
            let command = if self.sink.is_open() || self.keep_open || self.busy() {
                match rx.recv_timeout(TOP_UP_INTERVAL) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            };
            if let Some(command) = command {
                if !self.handle(command) {
                    return;
                }
                // Apply everything already waiting before writing audio.
                while let Ok(command) = rx.try_recv() {
                    if !self.handle(command) {
                        return;
                    }
                }
            }
            self.top_up();
        }
    }

    /// Something is playing, waiting to play, or sounding.
    fn busy(&self) -> bool {
        self.playing.is_some()
            || self.stashed.is_some()
            || !self.tail.is_empty()
            || self.cue_pos < self.cue.len()
            || self.queue.has_work()
    }

    /// Applies one command; false to stop.
    fn handle(&mut self, command: Command) -> bool {
        let now = self.now_ms();
        match command {
            Command::TalkStarted(meta) => {
                let session = meta.session.clone();
                if let Err(e) = self.queue.talk_started(meta, now) {
                    tracing::warn!(%session, error = %e, "talk refused by the mixing queue");
                }
            }
            Command::Frames {
                group,
                session,
                first_frame,
                sender_ts_ms,
                packets,
            } => {
                if let Err(e) =
                    self.queue
                        .push(&group, &session, first_frame, sender_ts_ms, packets, now)
                {
                    tracing::warn!(%session, error = %e, "frames dropped by the mixing queue");
                }
            }
            Command::TalkEnded(session) => {
                if let Err(e) = self.queue.talk_ended(&session, now) {
                    tracing::debug!(%session, error = %e, "end of an unknown talk");
                }
            }
            Command::UserTalking(talking) => self.queue.set_user_talking(talking),
            Command::Cue(cue) => {
                if self.config.cues.enabled(cue) {
                    self.cue = cues::samples(cue);
                    self.cue_pos = 0;
                    self.emit(PlayerEvent::CueStarted(cue));
                }
            }
            Command::OpenOutput => {
                self.keep_open = true;
                self.last_audible = Instant::now();
            }
            Command::SetGroup(group, settings) => {
                if let Err(e) = self.queue.set_group(&group, settings) {
                    tracing::warn!(%group, error = %e, "group settings refused");
                }
            }
            Command::SetSenderVolume(sender, volume) => {
                if let Err(e) = self.queue.set_sender_volume(&sender, volume) {
                    tracing::warn!(%sender, error = %e, "talker volume refused");
                }
            }
            Command::SetCues(cues) => self.config.cues = cues,
            Command::PlayNow(session) => {
                if let Err(e) = self.queue.play_now(&session) {
                    tracing::warn!(%session, error = %e, "cannot play that talk");
                }
            }
            Command::Skip(session) => {
                if let Err(e) = self.queue.skip(&session) {
                    tracing::warn!(%session, error = %e, "cannot skip that talk");
                }
            }
            Command::Unplayed(reply) => {
                let _ = reply.send(self.queue.unplayed());
            }
            Command::Drain(done) => {
                self.keep_open = true;
                self.drains.push(done);
            }
            Command::Shutdown => return false,
        }
        self.forward_queue_events();
        true
    }

    fn forward_queue_events(&mut self) {
        while let Some(event) = self.queue.poll_event() {
            if let Some(persist) = &self.persist {
                if let Some(action) = self.queue.persist_action(&event) {
                    let _ = persist.send(action);
                }
            }
            self.emit(PlayerEvent::Queue(event));
        }
    }

    /// Writes as many samples as the sink wants; closes it when idle.
    fn top_up(&mut self) {
        let mut wanted = match self.sink.samples_wanted() {
            Ok(n) => n,
            Err(e) => {
                self.emit(PlayerEvent::OutputFailed(e.to_string()));
                self.emit(PlayerEvent::OutputClosed);
                self.keep_open = false;
                0
            }
        };
        if self.pending_waiting || !self.sink.is_open() {
            // The rest is a buffering talk's silence (ask again), or the
            // device was closed after it (never reopen it for a remainder).
            self.pending_pos = FRAME_SAMPLES;
        }
        while wanted > 0 {
            if self.pending_pos >= FRAME_SAMPLES {
                let (frame, audible) = self.next_frame();
                if !audible && !self.sink.is_open() && !self.keep_open {
                    break;
                }
                self.pending = frame;
                self.pending_pos = 0;
            }
            let end = FRAME_SAMPLES.min(self.pending_pos + wanted);
            let was_open = self.sink.is_open();
            if let Err(e) = self
                .sink
                .write_samples(&self.pending[self.pending_pos..end])
            {
                tracing::warn!(error = %e, "output failed; dropping this frame");
                self.emit(PlayerEvent::OutputFailed(e.to_string()));
                self.pending_pos = FRAME_SAMPLES;
                break;
            }
            wanted -= end - self.pending_pos;
            self.pending_pos = end;
            if !was_open && self.sink.is_open() {
                self.emit(PlayerEvent::OutputOpened);
            }
        }
        self.forward_queue_events();
        if self.cue_pos >= self.cue.len() && self.tail.is_empty() {
            for done in self.drains.drain(..) {
                let _ = done.send(());
            }
        }
        let idle = self.last_audible.elapsed() >= self.config.idle_close;
        if self.sink.is_open() && idle && self.playing.is_none() && self.cue_pos >= self.cue.len() {
            self.keep_open = false;
            if let Err(e) = self.sink.suspend() {
                tracing::warn!(error = %e, "closing the output failed");
            }
            self.emit(PlayerEvent::OutputClosed);
        }
    }

    /// The next 20 ms of output and whether anything audible is in it.
    /// Sets `pending_waiting` when it is only a buffering talk's silence.
    fn next_frame(&mut self) -> (Frame, bool) {
        let mut out = [0f32; FRAME_SAMPLES];
        self.tick_waited = false;
        let mut audible = self.write_talk(&mut out);
        self.pending_waiting = self.tick_waited;
        if self.cue_pos < self.cue.len() {
            self.pending_waiting = false;
            let n = (self.cue.len() - self.cue_pos).min(FRAME_SAMPLES);
            for (o, c) in out
                .iter_mut()
                .zip(&self.cue[self.cue_pos..self.cue_pos + n])
            {
                *o += c;
            }
            self.cue_pos += n;
            audible = true;
        }
        if audible {
            self.last_audible = Instant::now();
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        for (f, o) in frame.iter_mut().zip(out) {
            *f = f32_to_i16(o);
        }
        (frame, audible)
    }

    /// Fills `out` from the mixing queue; true when a talk wrote audio.
    /// When the playing talk ends (the queue goes idle or moves on to
    /// another talk) its faded tail and the end cue are written first.
    fn write_talk(&mut self, out: &mut [f32; FRAME_SAMPLES]) -> bool {
        if !self.tail.is_empty() {
            let n = self.tail.len().min(FRAME_SAMPLES);
            out[..n].copy_from_slice(&self.tail[..n]);
            self.tail.drain(..n);
            return true;
        }
        let now = self.now_ms();
        let tick = match self.stashed.take() {
            Some(tick) => tick,
            None => self.queue.tick(now),
        };
        let Tick::Play {
            session,
            playout,
            gain,
            ..
        } = tick
        else {
            if self.playing.is_some() {
                self.finish_talk();
                return !self.tail.is_empty() && self.write_talk(out);
            }
            return false;
        };
        if self.playing.as_ref().is_some_and(|p| p.session != session) {
            // Another talk follows: end this one first, then play that tick.
            self.finish_talk();
            self.stashed = Some(Tick::Play {
                group: String::new(),
                session,
                playout,
                gain,
            });
            return self.write_talk(out);
        }
        if self.playing.is_none() {
            // A stored talk needs no low latency: if it opens the device,
            // more buffering keeps it whole on a busy machine.
            self.sink.prefer_latency(if self.queue.current_is_live() {
                OutputLatency::Live
            } else {
                OutputLatency::Relaxed
            });
            match OpusDecoder::new() {
                Ok(decoder) => {
                    self.playing = Some(Playing {
                        session: session.clone(),
                        decoder,
                        frames_out: 0,
                    })
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot create an Opus decoder");
                    return false;
                }
            }
        }
        let Some(playing) = self.playing.as_mut() else {
            return false;
        };
        let pcm = match playout {
            // Buffering before the start: silence, but the talk is on.
            Playout::Wait => {
                self.tick_waited = playing.frames_out == 0;
                return true;
            }
            Playout::Finished => return true,
            Playout::Frame(packet) => playing.decoder.decode(&packet).or_else(|e| {
                tracing::warn!(%session, error = %e, "undecodable Opus packet; concealing");
                playing.decoder.decode_lost()
            }),
            Playout::Conceal { next: Some(next) } => playing
                .decoder
                .decode_fec(&next)
                .or_else(|_| playing.decoder.decode_lost()),
            Playout::Conceal { next: None } => playing.decoder.decode_lost(),
        };
        let pcm = match pcm {
            Ok(pcm) => pcm,
            Err(e) => {
                tracing::warn!(%session, error = %e, "decoder failed; writing silence");
                return true;
            }
        };
        let first = playing.frames_out == 0;
        playing.frames_out += 1;
        for (i, (o, &s)) in out.iter_mut().zip(&pcm).enumerate() {
            let fade = if first && i < FADE_IN_SAMPLES {
                i as f32 / FADE_IN_SAMPLES as f32
            } else {
                1.0
            };
            *o = i16_to_f32(s) * gain * fade;
        }
        true
    }

    /// The talk finished: a concealed frame faded to zero so the last
    /// syllable does not end in a click, then the end cue.
    fn finish_talk(&mut self) {
        let Some(mut playing) = self.playing.take() else {
            return;
        };
        self.sink.prefer_latency(OutputLatency::Live);
        if playing.frames_out == 0 {
            return;
        }
        if let Ok(pcm) = playing.decoder.decode_lost() {
            let n = pcm.len().max(1) as f32;
            self.tail = pcm
                .iter()
                .enumerate()
                .map(|(i, &s)| i16_to_f32(s) * (1.0 - i as f32 / n))
                .collect();
        }
        if self.config.cues.enabled(Cue::TalkEnd) {
            let mut cue = cues::samples(Cue::TalkEnd);
            self.tail.append(&mut cue);
            self.emit(PlayerEvent::CueStarted(Cue::TalkEnd));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        codec::OpusEncoder, similarity::normalised_cross_correlation, test_signal::speech_like, wav,
    };
    use std::sync::{Arc, Mutex};

    /// An in-memory sink paced by the wall clock, shared with the test.
    #[derive(Clone, Default)]
    struct MemorySink {
        samples: Arc<Mutex<Vec<i16>>>,
        started: Arc<Mutex<Option<Instant>>>,
    }

    impl FrameSink for MemorySink {
        fn frames_wanted(&mut self) -> crate::frames::Result<usize> {
            let mut started = self.started.lock().unwrap();
            let t0 = *started.get_or_insert_with(Instant::now);
            let due = t0.elapsed().as_millis() as usize / crate::codec::FRAME_MS as usize + 2;
            let written = self.samples.lock().unwrap().len() / FRAME_SAMPLES;
            Ok(due.saturating_sub(written))
        }
        fn write_frame(&mut self, frame: &Frame) -> crate::frames::Result<()> {
            self.samples.lock().unwrap().extend_from_slice(frame);
            Ok(())
        }
    }

    /// A device-like sink paced by the wall clock that takes pieces: it
    /// keeps `AHEAD` samples queued ahead of its clock and records the size
    /// of every write and whether any write was more than it asked for.
    #[derive(Clone, Default)]
    struct PieceSink {
        samples: Arc<Mutex<Vec<i16>>>,
        writes: Arc<Mutex<Vec<usize>>>,
        over_asked: Arc<Mutex<bool>>,
        started: Arc<Mutex<Option<Instant>>>,
        open: Arc<Mutex<bool>>,
    }

    impl PieceSink {
        const AHEAD: usize = 480;
    }

    impl FrameSink for PieceSink {
        fn frames_wanted(&mut self) -> crate::frames::Result<usize> {
            Ok(self.samples_wanted()?.div_ceil(FRAME_SAMPLES))
        }
        fn samples_wanted(&mut self) -> crate::frames::Result<usize> {
            let mut started = self.started.lock().unwrap();
            let t0 = *started.get_or_insert_with(Instant::now);
            let pulled = t0.elapsed().as_micros() as usize * 48 / 1000;
            let written = self.samples.lock().unwrap().len();
            Ok((pulled + Self::AHEAD).saturating_sub(written))
        }
        fn write_frame(&mut self, frame: &Frame) -> crate::frames::Result<()> {
            self.write_samples(frame)
        }
        fn is_open(&self) -> bool {
            *self.open.lock().unwrap()
        }
        fn suspend(&mut self) -> crate::frames::Result<()> {
            *self.open.lock().unwrap() = false;
            Ok(())
        }
        fn write_samples(&mut self, samples: &[i16]) -> crate::frames::Result<()> {
            let wanted = self.samples_wanted()?;
            if samples.len() > wanted {
                *self.over_asked.lock().unwrap() = true;
            }
            *self.open.lock().unwrap() = true;
            self.writes.lock().unwrap().push(samples.len());
            self.samples.lock().unwrap().extend_from_slice(samples);
            Ok(())
        }
    }

    #[test]
    fn a_device_taking_pieces_gets_the_talk_whole_in_pieces_it_asked_for() {
        let (player, sink, rx, speech, packets) = player_with_speech_on(PieceSink::default());
        // One frame per message, in real time.
        for (i, packet) in packets.iter().enumerate() {
            player.frames(
                "!g:x",
                "s1",
                i as u64,
                1_000 + i as u64 * 20,
                vec![packet.clone()],
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        player.talk_ended("s1");
        let finished = rx
            .iter()
            .find(|e| matches!(e, PlayerEvent::Queue(QueueEvent::Finished { .. })));
        assert!(finished.is_some());
        player.drain();
        // The user talks while another talk waits (held): the player stays
        // awake with nothing audible, closes the device after its idle
        // time, and must not open it again for the rest of a frame of
        // silence it had started writing.
        player.set_user_talking(true);
        player.talk_started(TalkMeta {
            group: "!g:x".into(),
            session: "s2".into(),
            sender: "@b:x".into(),
            start_ts_ms: 50_000,
        });
        player.frames("!g:x", "s2", 0, 50_000, vec![packets[0].clone()]);
        assert!(rx.iter().any(|e| e == PlayerEvent::OutputClosed));
        let next = rx.recv_timeout(Duration::from_millis(500));
        assert!(
            !matches!(next, Ok(PlayerEvent::OutputOpened)),
            "the idle player opened the device again"
        );
        drop(player);
        let out = sink.samples.lock().unwrap().clone();
        let (corr, lag) = normalised_cross_correlation(&speech, &out, out.len() - 1);
        assert!(corr > 0.9, "correlation {corr} at lag {lag}");
        assert!(
            !*sink.over_asked.lock().unwrap(),
            "a write exceeded what the sink asked for"
        );
        let writes = sink.writes.lock().unwrap().clone();
        let pieces = writes.iter().filter(|&&n| n < FRAME_SAMPLES).count();
        assert!(
            pieces * 2 > writes.len(),
            "most writes should be pieces of a frame: {pieces} of {}",
            writes.len()
        );
    }

    /// A player on `sink`, its events, one second of encoded speech and the
    /// talk (session "s1") announced.
    fn player_with_speech_on<S: FrameSink + Clone + 'static>(
        sink: S,
    ) -> (
        Player,
        S,
        mpsc::Receiver<PlayerEvent>,
        Vec<i16>,
        Vec<Vec<u8>>,
    ) {
        let (tx, rx) = mpsc::channel();
        let player = Player::start(
            Box::new(sink.clone()),
            PlayerConfig::default(),
            None,
            move |e| {
                let _ = tx.send(e);
            },
        )
        .unwrap();
        let speech = speech_like(1.0);
        let mut encoder = OpusEncoder::new().unwrap();
        let packets: Vec<Vec<u8>> = wav::frames(&speech)
            .map(|f| encoder.encode(&f).unwrap())
            .collect();
        player.talk_started(TalkMeta {
            group: "!g:x".into(),
            session: "s1".into(),
            sender: "@a:x".into(),
            start_ts_ms: 1_000,
        });
        (player, sink, rx, speech, packets)
    }

    /// The same on a memory sink.
    fn player_with_speech() -> (
        Player,
        MemorySink,
        mpsc::Receiver<PlayerEvent>,
        Vec<i16>,
        Vec<Vec<u8>>,
    ) {
        player_with_speech_on(MemorySink::default())
    }

    #[test]
    fn a_talk_plays_in_full_then_its_end_cue() {
        let (player, sink, rx, speech, packets) = player_with_speech();
        // Two frames per message, in real time.
        for (i, pair) in packets.chunks(2).enumerate() {
            player.frames(
                "!g:x",
                "s1",
                i as u64 * 2,
                1_000 + i as u64 * 40,
                pair.to_vec(),
            );
            std::thread::sleep(Duration::from_millis(40));
        }
        player.talk_ended("s1");
        let finished = rx
            .iter()
            .find(|e| matches!(e, PlayerEvent::Queue(QueueEvent::Finished { .. })));
        assert!(finished.is_some());
        player.drain();
        drop(player);
        let out = sink.samples.lock().unwrap().clone();
        // The speech is there, whole and in order (codec delay aside).
        let (corr, lag) = normalised_cross_correlation(&speech, &out, out.len() - 1);
        assert!(corr > 0.9, "correlation {corr} at lag {lag}");
        // The end cue follows the talk.
        let cue: Vec<i16> = cues::samples(Cue::TalkEnd)
            .iter()
            .map(|&v| f32_to_i16(v))
            .collect();
        // The end cue follows the talk's faded tail (one concealed frame):
        // search it just after the speech (a full-rate search, which a
        // steady tone needs).
        let end = lag as usize + speech.len();
        let region = &out[end.min(out.len())..(end + cue.len() + 1500).min(out.len())];
        let (cue_corr, cue_lag) = normalised_cross_correlation(&cue, region, 1500);
        assert!(
            cue_corr > 0.9,
            "end cue correlation {cue_corr} (output {} samples, speech ends at {end})",
            out.len()
        );
        assert!(
            (0..=1500).contains(&cue_lag),
            "end cue at {cue_lag} after the speech"
        );
    }

    #[test]
    fn malformed_opus_packets_are_concealed_not_fatal() {
        let (player, sink, rx, speech, mut packets) = player_with_speech();
        // Every 10th packet is garbage: a code-3 header claiming 63 frames.
        for p in packets.iter_mut().step_by(10) {
            *p = vec![0xFF, 0xFF, 0xFF, 0xFF];
        }
        player.frames("!g:x", "s1", 0, 1_000, packets);
        player.talk_ended("s1");
        assert!(rx
            .iter()
            .any(|e| matches!(e, PlayerEvent::Queue(QueueEvent::Finished { .. }))));
        player.drain();
        drop(player);
        let out = sink.samples.lock().unwrap().clone();
        assert!(out.len() >= speech.len(), "{} samples played", out.len());
        let (corr, _) = normalised_cross_correlation(&speech, &out, out.len() - 1);
        assert!(corr > 0.7, "correlation {corr}");
    }
}
