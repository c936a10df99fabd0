//! The playback scheduler ("mixing queue") for received talks.
//!
//! Owns: which received talk plays and when, the talks waiting to play and
//! their stored packets, per-group mute / volume / priority, the bound on
//! stored audio and the overflow rule, and the hooks that let the app persist
//! unplayed talks ([`crate::queue_store`]). It is pure like
//! [`crate::jitter`]: no clock, no I/O, no decoder; the output clock calls
//! [`MixingQueue::tick`] every 20 ms with its `now_ms` (receiver monotonic
//! clock, milliseconds) and decodes what it gets. Despite the name nothing is
//! ever mixed: exactly one talk plays at a time.
//!
//! # Talks and their states
//!
//! A talk is one session ([`TalkMeta`]: group = Matrix room id, session id,
//! sender, `start_ts`). It is *current* (playing, or paused while the user
//! talks), *queued* (will play by itself) or *held* (kept for the user:
//! listed by [`MixingQueue::unplayed`], played by [`MixingQueue::play_now`],
//! dropped by [`MixingQueue::skip`]).
//!
//! * A talk that starts while nothing plays, the user is not talking, nothing
//!   is queued and its group is not muted becomes current at once and plays
//!   **live** through a [`JitterBuffer`] (seeded with the target delay of the
//!   sender's previous live talk).
//! * Any other talk is queued (held if its group is muted); it is never
//!   dropped for being late and never mixed over the current one. When
//!   nothing plays, the next queued talk is chosen: first the talks the user
//!   asked for with `play_now` (in the order asked), then the highest group
//!   priority, then arrival order. **Priority only orders the queue: a talk
//!   already playing is never preempted**, whatever its priority.
//! * A talk that waited plays from its stored packets (**replay**) in frame
//!   order: a present frame plays; a missing one is concealed when the talk
//!   has ended or when the next stored frame has been stored for
//!   [`REPLAY_GRACE_MS`], else the cursor waits; a hole longer than
//!   [`MAX_REPLAY_GAP_FRAMES`] is concealed that far and then jumped over. The
//!   talk may still be receiving while it plays.
//! * The user talking (`set_user_talking(true)`) pauses the current talk (a
//!   live one switches to replay from where it stopped, so nothing is lost)
//!   and nothing starts; when the user stops, the paused talk resumes first,
//!   then the queue goes on.
//! * Muting a group holds its queued talks and the rest of its current talk.
//!   Unmuting does not auto-play what was held: the user plays or skips it.
//! * Volume (a gain in 0.0..=2.0) is read at every tick and returned with the
//!   frame for the caller to apply, so changes apply at once.
//! * A talk that receives nothing for [`STALL_TIMEOUT_MS`] is taken as ended
//!   (the floor's lease ends it long before), so a vanished talker cannot
//!   block the queue.
//!
//! Frames are identified by their talk-relative index (`first_frame` in
//! [`MixingQueue::push`]); a receiver derives it from the message, e.g.
//! `(ts - start_ts) / 20` when the talker stamps frames on the 20 ms grid.
//!
//! # Bounds and the overflow rule
//!
//! Stored audio is bounded by [`QueueLimits`]: at most `max_talks` talks
//! besides the current one ([`MAX_QUEUED_TALKS`]), `max_total_frames`
//! ([`MAX_QUEUED_FRAMES`]) and `max_total_bytes` ([`MAX_QUEUED_BYTES`]) of
//! stored packets over all talks including the current one, and
//! `max_talk_frames` ([`MAX_TALK_FRAMES`]) per talk. When a new talk or a new
//! frame would exceed a bound, the **oldest unplayed talk of the lowest
//! priority** (queued or held; ties on arrival order) is evicted whole and an
//! [`QueueEvent::Overflowed`] names it; this repeats until the new talk or
//! frame fits. The current talk is never evicted, nor cut short to make room:
//! the limits are checked so that it always fits alone. The evicted talk can
//! be the one the frame belongs to (then the rest of it is refused) or the
//! new talk itself (when it is alone at the lowest priority). The talk is
//! still in the room as a voice message: the user loses the live replay
//! only, never the message. A frame at or beyond `max_talk_frames` is dropped
//! and the talk is marked cut ([`QueueEvent::Cut`], once per talk); the
//! frames before it still play. Besides the counted packets, a live talk's
//! jitter buffer holds a second copy of its unplayed frames (bounded by
//! [`crate::jitter::MAX_SEQ_AHEAD`]), so that a pause can switch it to replay
//! without losing any.
//!
//! # Hostile input
//!
//! Nothing a remote talker sends can panic the queue or grow it unbounded:
//! packets outside 1..=[`MAX_PACKET_BYTES`] bytes, more than
//! [`MAX_PACKETS_PER_PUSH`] packets in a message, identifiers longer than
//! [`MAX_ID_BYTES`] or a message for another group are refused with a typed
//! [`QueueError`] and change nothing; an unknown session is
//! [`QueueError::UnknownTalk`], one already played, skipped or evicted
//! [`QueueError::TalkOver`] (the last [`REMEMBERED_OVER_TALKS`] are
//! remembered); duplicate, late and absurdly numbered frames are counted and
//! ignored (see [`PushSummary`]); sender timestamps are only used by the
//! jitter buffer, which refuses off-timeline ones. Pending events are capped
//! at [`MAX_PENDING_EVENTS`] (oldest dropped, counted).
//!
//! # Persistence
//!
//! A talk that is not playing live emits [`QueueEvent::Persist`] once it has
//! ended (all its audio is stored); the app turns events into
//! [`PersistAction`]s with [`MixingQueue::persist_action`] (Save on Persist,
//! Delete on Finished / Skipped / Overflowed) and hands them to the store off
//! the audio thread. A talk still being received when the app dies is lost
//! from the queue (not from the room). At start, [`MixingQueue::restore`]
//! puts saved talks back, held, in their original arrival order.

// Code layout, one concern per file (all of it one `MixingQueue`):
// - this file: the public types, the talk model shared by the parts, and the
//   queue's read-only views (listing, stats, events);
// - `policy`: which talk plays and when (start live or queue or hold, the
//   tick, the user talking, mute, play now, skip, stalls);
// - `storage`: storing received frames under the bounds, and eviction;
// - `replay`: a talk's playout per tick, live through the jitter buffer or
//   from stored packets (the replay cursor);
// - `persistence`: what goes to and comes back from `queue_store`;
// - `hints`: each sender's last live jitter target, to seed their next talk.

mod hints;
mod persistence;
mod policy;
mod replay;
mod storage;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::jitter::{JitterBuffer, Playout, FRAME_MS};

use storage::Totals;

/// Default [`QueueLimits::max_talks`]: talks waiting besides the current one.
pub const MAX_QUEUED_TALKS: usize = 64;
/// Default [`QueueLimits::max_talk_frames`]: 301 s, the protocol's longest
/// talk (300 s) plus the 1 s of `ts` slack receivers accept.
pub const MAX_TALK_FRAMES: u64 = 15_050;
/// Default [`QueueLimits::max_total_frames`]: 30 minutes of stored audio.
pub const MAX_QUEUED_FRAMES: u64 = 90_000;
/// Default [`QueueLimits::max_total_bytes`]: 48 MiB of stored packets (30
/// minutes at 24 kbit/s is ~5.4 MB; the rest is room for big packets).
pub const MAX_QUEUED_BYTES: u64 = 48 * 1024 * 1024;
/// Largest packet stored: the Opus maximum for one frame, and the protocol's.
pub const MAX_PACKET_BYTES: usize = 1275;
/// Most packets accepted in one [`MixingQueue::push`] (the protocol sends at
/// most 10 per message).
pub const MAX_PACKETS_PER_PUSH: usize = 50;
/// Longest group, session or sender identifier (a Matrix id's limit).
pub const MAX_ID_BYTES: usize = 255;
/// Highest gain a group or a talker may be given.
pub const MAX_VOLUME: f32 = 2.0;
/// Talkers with a volume of their own, at most (a bound on memory).
pub const MAX_SENDER_VOLUMES: usize = 4096;
/// In replay, how long a later frame must have been stored before a missing
/// frame before it is given up (concealed): covers reordering on the network.
pub const REPLAY_GRACE_MS: u64 = 500;
/// In replay, a hole longer than this many frames (500 ms) is concealed that
/// far and then jumped over instead of playing seconds of concealment.
pub const MAX_REPLAY_GAP_FRAMES: u32 = 25;
/// A talk that has received nothing for this long is taken as ended.
pub const STALL_TIMEOUT_MS: u64 = 10_000;
/// Events kept for [`MixingQueue::poll_event`]; beyond that the oldest go.
pub const MAX_PENDING_EVENTS: usize = 4096;
/// Talks over (played, skipped, evicted) remembered to refuse their late
/// messages with [`QueueError::TalkOver`] instead of `UnknownTalk`.
pub const REMEMBERED_OVER_TALKS: usize = 1024;
/// Jitter-buffer target for a sender heard for the first time: one-frame
/// messages through a loopback Synapse spread by ~10 ms (measured at the
/// devices: the buffer's target settles at 29 ms, `docs/benchmarks.md`),
/// plus one frame. Starting at the target the buffer would grow to anyway
/// saves inserting concealed frames into the first words of a talk;
/// starting higher holds every frame of the talk longer than needed (the
/// shrink waits 5 s). Messages of several frames (a talker that fell
/// behind) raise it by their span ([`JitterBuffer::note_message_frames`]).
pub const FIRST_TALK_TARGET_MS: u64 = 30;

/// Per-group playback settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSettings {
    /// Talks of a muted group are not auto-played: they are held for the user.
    pub muted: bool,
    /// Gain for the caller to apply, 0.0..=[`MAX_VOLUME`].
    pub volume: f32,
    /// Higher plays first among queued talks; never preempts.
    pub priority: i32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            muted: false,
            volume: 1.0,
            priority: 0,
        }
    }
}

/// Who and what a talk is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TalkMeta {
    /// The Matrix room id.
    pub group: String,
    /// The talk's session id (unique per talk).
    pub session: String,
    /// The talker's user id.
    pub sender: String,
    /// The talker's clock when the talk started (ms since epoch).
    pub start_ts_ms: u64,
}

/// Bounds on stored audio; see the module doc for the overflow rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Talks stored besides the current one (queued and held), at least 1.
    pub max_talks: usize,
    /// Frames of one talk: frame indices at or past this are cut.
    pub max_talk_frames: u64,
    /// Stored frames over all talks, at least `max_talk_frames`.
    pub max_total_frames: u64,
    /// Stored packet bytes over all talks, at least
    /// `max_talk_frames * MAX_PACKET_BYTES`.
    pub max_total_bytes: u64,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self {
            max_talks: MAX_QUEUED_TALKS,
            max_talk_frames: MAX_TALK_FRAMES,
            max_total_frames: MAX_QUEUED_FRAMES,
            max_total_bytes: MAX_QUEUED_BYTES,
        }
    }
}

impl QueueLimits {
    /// The current talk must always fit alone, so it never has to be cut to
    /// make room.
    fn check(&self) -> Result<(), QueueError> {
        if self.max_talks == 0 {
            return Err(QueueError::InvalidLimits("max_talks must be at least 1"));
        }
        if self.max_talk_frames == 0 {
            return Err(QueueError::InvalidLimits(
                "max_talk_frames must be at least 1",
            ));
        }
        if self.max_total_frames < self.max_talk_frames {
            return Err(QueueError::InvalidLimits(
                "max_total_frames must be at least max_talk_frames",
            ));
        }
        let one_talk = self.max_talk_frames.saturating_mul(MAX_PACKET_BYTES as u64);
        if self.max_total_bytes < one_talk {
            return Err(QueueError::InvalidLimits(
                "max_total_bytes must be at least max_talk_frames * MAX_PACKET_BYTES",
            ));
        }
        Ok(())
    }
}

/// Where a talk stands, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TalkState {
    /// Will play by itself when its turn comes.
    Queued,
    /// Kept for the user (muted group, or restored): plays on `play_now`.
    Held,
    /// The current talk, playing.
    Playing,
    /// The current talk, paused while the user talks.
    Paused,
}

/// A talk as listed for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkSummary {
    pub meta: TalkMeta,
    pub state: TalkState,
    /// Arrival order (lower arrived earlier).
    pub order: u64,
    /// Frames stored and not yet played.
    pub frames: u64,
    /// `frames * 20 ms`.
    pub duration_ms: u64,
    /// The talk has ended: no more audio will arrive.
    pub complete: bool,
}

/// What the output clock should do for the current 20 ms tick.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// Output of the current talk. `playout` is never
    /// [`Playout::Finished`]: a talk that finishes is replaced within the
    /// same tick by the next one, or the tick is `Idle`. A new `session`
    /// means a new stream: reset the decoder.
    Play {
        session: String,
        group: String,
        playout: Playout,
        /// The group's volume times the talker's: multiply the decoded
        /// samples by it.
        gain: f32,
    },
    /// Nothing to play (no talk, or the user is talking).
    Idle,
}

/// Something the app may show, or persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// A talk started playing; `live` when through the jitter buffer as it
    /// arrives, else replayed from stored packets.
    Started {
        session: String,
        group: String,
        live: bool,
    },
    /// A talk waits behind the current one or the user's own talk.
    Queued { session: String, group: String },
    /// A talk is kept for the user (muted group, or restored).
    Held { session: String, group: String },
    /// The current talk paused because the user talks.
    Paused { session: String },
    /// The paused talk resumed.
    Resumed { session: String },
    /// A talk not playing live has all its audio: save it now
    /// ([`MixingQueue::persist_action`]).
    Persist { session: String },
    /// A talk played to its end.
    Finished { session: String },
    /// The user skipped a talk.
    Skipped { session: String },
    /// A talk was evicted whole by the overflow rule.
    Overflowed { session: String, group: String },
    /// A talk went past the longest talk stored; the rest is dropped.
    Cut { session: String },
}

impl QueueEvent {
    /// The session whose talk left the queue (played, skipped or evicted):
    /// its saved copy, if any, should be deleted.
    pub fn removed_talk(&self) -> Option<&str> {
        match self {
            Self::Finished { session }
            | Self::Skipped { session }
            | Self::Overflowed { session, .. } => Some(session),
            _ => None,
        }
    }
}

/// A talk as persisted: everything needed to play it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTalk {
    pub meta: TalkMeta,
    /// Arrival order in the queue that stored it; restored talks keep it.
    pub order: u64,
    /// `(frame index, packet)` in ascending index order.
    pub frames: Vec<(u64, Vec<u8>)>,
}

/// What to do to the store for an event (see [`MixingQueue::persist_action`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistAction {
    Save(StoredTalk),
    Delete { session: String },
}

/// What [`MixingQueue::push`] did with a message's packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushSummary {
    /// Stored for playout.
    pub stored: usize,
    /// Already stored or already played: ignored.
    pub duplicates: usize,
    /// Late (position already passed), cut (past the longest talk or an
    /// absurd index), refused by the jitter buffer, or refused because the
    /// talk was evicted by this very message.
    pub dropped: usize,
}

/// Counters and current totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Ticks that returned a frame.
    pub frames_played: u64,
    /// Ticks that returned a concealment.
    pub frames_concealed: u64,
    /// Frames stored (current totals).
    pub stored_frames: u64,
    /// Packet bytes stored (current totals).
    pub stored_bytes: u64,
    /// Duplicate frames ignored.
    pub duplicates: u64,
    /// Frames dropped (see [`PushSummary::dropped`]).
    pub dropped_frames: u64,
    /// Talks evicted by the overflow rule.
    pub evicted_talks: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
}

/// Refused input. Nothing was changed when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue limits: {0}")]
    InvalidLimits(&'static str),
    #[error("volume {0} is outside 0.0..=2.0")]
    InvalidVolume(f32),
    #[error("too many talkers with a volume of their own (at most {MAX_SENDER_VOLUMES})")]
    TooManySenderVolumes,
    #[error("{what} id is empty or longer than {max} bytes ({len})")]
    BadId {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("unknown talk {0}")]
    UnknownTalk(String),
    #[error("talk {0} is over (played, skipped or evicted)")]
    TalkOver(String),
    #[error("talk {0} was already started")]
    DuplicateTalk(String),
    #[error("talk {session} belongs to group {expected}, not {got}")]
    GroupMismatch {
        session: String,
        expected: String,
        got: String,
    },
    #[error("{count} packets in one message, at most {max}")]
    TooManyPackets { count: usize, max: usize },
    #[error("packet {index} is {len} bytes, not 1..={max}")]
    BadPacket {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("talk {0} is not waiting (unknown, over, or current)")]
    NotWaiting(String),
}

#[derive(Debug)]
struct Slot {
    packet: Vec<u8>,
    stored_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Held,
    Current,
}

#[derive(Debug)]
enum Mode {
    /// Through the jitter buffer; `started` once it returned a frame or a
    /// concealment (its position is then the play position).
    Live {
        jb: Box<JitterBuffer>,
        started: bool,
    },
    /// From stored packets; `next` is the next index to play (None: start at
    /// the lowest stored), `gap_run` the concealments in a row.
    Replay { next: Option<u64>, gap_run: u32 },
}

#[derive(Debug)]
struct Talk {
    meta: TalkMeta,
    order: u64,
    state: State,
    /// Set by `play_now`: plays before all other queued talks, in this order.
    boost: Option<u64>,
    /// Stored frames not yet played. For a live talk a copy of what the
    /// jitter buffer holds, so a pause can switch it to replay losslessly.
    frames: BTreeMap<u64, Slot>,
    bytes: u64,
    ended: bool,
    cut: bool,
    last_activity_ms: u64,
    /// Some while current.
    mode: Option<Mode>,
}

impl Talk {
    fn summary(&self, paused: bool) -> TalkSummary {
        let frames = self.frames.len() as u64;
        TalkSummary {
            meta: self.meta.clone(),
            state: match (self.state, paused) {
                (State::Queued, _) => TalkState::Queued,
                (State::Held, _) => TalkState::Held,
                (State::Current, false) => TalkState::Playing,
                (State::Current, true) => TalkState::Paused,
            },
            order: self.order,
            frames,
            duration_ms: frames.saturating_mul(FRAME_MS),
            complete: self.ended,
        }
    }
}

/// The playback scheduler. See the module doc.
#[derive(Debug)]
pub struct MixingQueue {
    limits: QueueLimits,
    groups: HashMap<String, GroupSettings>,
    /// Per-talker gain (user id → 0.0..=[`MAX_VOLUME`]); 1.0 when unset.
    senders: HashMap<String, f32>,
    talks: HashMap<String, Talk>,
    current: Option<String>,
    user_talking: bool,
    next_order: u64,
    next_boost: u64,
    totals: Totals,
    over: VecDeque<String>,
    over_set: HashSet<String>,
    hints: VecDeque<(String, u64)>,
    events: VecDeque<QueueEvent>,
    stats: QueueStats,
}

impl MixingQueue {
    /// An empty queue with these bounds.
    pub fn new(limits: QueueLimits) -> Result<Self, QueueError> {
        limits.check()?;
        Ok(Self {
            limits,
            groups: HashMap::new(),
            senders: HashMap::new(),
            talks: HashMap::new(),
            current: None,
            user_talking: false,
            next_order: 0,
            next_boost: 0,
            totals: Totals::default(),
            over: VecDeque::new(),
            over_set: HashSet::new(),
            hints: VecDeque::new(),
            events: VecDeque::new(),
            stats: QueueStats::default(),
        })
    }

    /// The bounds this queue enforces.
    pub fn limits(&self) -> QueueLimits {
        self.limits
    }

    /// A group's current settings.
    pub fn group(&self, group: &str) -> GroupSettings {
        self.settings(group)
    }

    /// Whether the user is talking.
    pub fn user_talking(&self) -> bool {
        self.user_talking
    }

    /// The next event to show or persist, oldest first.
    pub fn poll_event(&mut self) -> Option<QueueEvent> {
        self.events.pop_front()
    }

    /// Queued and held talks (not the current one), in arrival order.
    pub fn unplayed(&self) -> Vec<TalkSummary> {
        let mut talks: Vec<&Talk> = self
            .talks
            .values()
            .filter(|t| t.state != State::Current)
            .collect();
        talks.sort_by(|a, b| arrival_order(a, b));
        talks.into_iter().map(|t| t.summary(false)).collect()
    }

    /// Whether anything plays now or will play by itself (a current talk or
    /// a queued one; held talks wait for the user). Cheap: no allocation.
    pub fn has_work(&self) -> bool {
        self.current.is_some() || self.talks.values().any(|t| t.state == State::Queued)
    }

    /// The current talk (playing or paused), if any.
    pub fn current(&self) -> Option<TalkSummary> {
        let session = self.current.as_ref()?;
        let talk = self.talks.get(session)?;
        Some(talk.summary(self.user_talking))
    }

    /// Whether the current talk plays live (through its jitter buffer), not
    /// replayed from stored packets.
    pub fn current_is_live(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|session| self.talks.get(session))
            .is_some_and(|talk| matches!(talk.mode, Some(Mode::Live { .. })))
    }

    /// Counters and current totals.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            stored_frames: self.totals.frames,
            stored_bytes: self.totals.bytes,
            ..self.stats
        }
    }

    fn settings(&self, group: &str) -> GroupSettings {
        self.groups.get(group).copied().unwrap_or_default()
    }

    fn emit(&mut self, event: QueueEvent) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    /// The talk if it is known, else why not.
    fn waiting_or_current(&mut self, session: &str) -> Result<&mut Talk, QueueError> {
        if self.over_set.contains(session) {
            return Err(QueueError::TalkOver(session.to_owned()));
        }
        self.talks
            .get_mut(session)
            .ok_or_else(|| QueueError::UnknownTalk(session.to_owned()))
    }
}

impl MixingQueue {
    /// A talk about to be added (started live or restored): valid ids, not
    /// one that is over or already queued.
    fn check_new_talk(&self, meta: &TalkMeta) -> Result<(), QueueError> {
        check_id("group", &meta.group)?;
        check_id("session", &meta.session)?;
        check_id("sender", &meta.sender)?;
        if self.over_set.contains(&meta.session) {
            return Err(QueueError::TalkOver(meta.session.clone()));
        }
        if self.talks.contains_key(&meta.session) {
            return Err(QueueError::DuplicateTalk(meta.session.clone()));
        }
        Ok(())
    }
}

fn check_id(what: &'static str, id: &str) -> Result<(), QueueError> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(QueueError::BadId {
            what,
            len: id.len(),
            max: MAX_ID_BYTES,
        });
    }
    Ok(())
}

fn arrival_order(a: &Talk, b: &Talk) -> Ordering {
    a.order
        .cmp(&b.order)
        .then_with(|| a.meta.session.cmp(&b.meta.session))
}
