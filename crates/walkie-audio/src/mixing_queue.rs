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

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use crate::jitter::{JitterBuffer, Playout, PushOutcome, FRAME_MS};

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
/// Highest gain a group may set.
pub const MAX_VOLUME: f32 = 2.0;
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
/// Jitter-buffer target for a sender heard for the first time. Two-frame
/// messages alone arrive with 20 ms of jitter and a loopback to-device hop
/// adds ~20 ms more; starting at the target the buffer would grow to anyway
/// saves inserting concealed frames into the first words of a talk.
pub const FIRST_TALK_TARGET_MS: u64 = 60;
/// Senders whose last live target delay is remembered as a jitter hint.
const REMEMBERED_HINTS: usize = 256;

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
        /// The group's volume: multiply the decoded samples by it.
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

#[derive(Debug, Default)]
struct Totals {
    frames: u64,
    bytes: u64,
}

impl Totals {
    fn remove(&mut self, talk_bytes: &mut u64, slot: &Slot) {
        let len = slot.packet.len() as u64;
        self.frames = self.frames.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
        *talk_bytes = talk_bytes.saturating_sub(len);
    }
}

enum Room {
    Made,
    /// The talk the frame is for was the victim.
    EvictedSelf,
    /// Nothing left to evict (only possible with a bug in the limits check).
    None,
}

/// The playback scheduler. See the module doc.
#[derive(Debug)]
pub struct MixingQueue {
    limits: QueueLimits,
    groups: HashMap<String, GroupSettings>,
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

    /// Sets a group's mute, volume and priority (unknown groups have
    /// [`GroupSettings::default`]). Muting holds the group's queued talks and
    /// the rest of its current talk; a new priority applies to the next
    /// choice; a new volume to the next tick.
    pub fn set_group(&mut self, group: &str, settings: GroupSettings) -> Result<(), QueueError> {
        check_id("group", group)?;
        if !(0.0..=MAX_VOLUME).contains(&settings.volume) {
            return Err(QueueError::InvalidVolume(settings.volume));
        }
        let was_muted = self.settings(group).muted;
        self.groups.insert(group.to_owned(), settings);
        if settings.muted && !was_muted {
            self.hold_group(group);
        }
        Ok(())
    }

    /// A group's current settings.
    pub fn group(&self, group: &str) -> GroupSettings {
        self.settings(group)
    }

    /// The user pressed (true) or released (false) their own talk button.
    /// While true nothing plays: the current talk pauses and resumes after.
    pub fn set_user_talking(&mut self, talking: bool) {
        if talking == self.user_talking {
            return;
        }
        self.user_talking = talking;
        let Some(session) = self.current.clone() else {
            return;
        };
        if talking {
            self.switch_to_replay(&session);
            self.emit(QueueEvent::Paused { session });
        } else {
            self.emit(QueueEvent::Resumed { session });
        }
    }

    /// Whether the user is talking.
    pub fn user_talking(&self) -> bool {
        self.user_talking
    }

    /// A remote talk started (its first message was accepted). It plays live
    /// at once when nothing else plays or waits, else it is queued or held.
    pub fn talk_started(&mut self, meta: TalkMeta, now_ms: u64) -> Result<(), QueueError> {
        check_id("group", &meta.group)?;
        check_id("session", &meta.session)?;
        check_id("sender", &meta.sender)?;
        if self.over_set.contains(&meta.session) {
            return Err(QueueError::TalkOver(meta.session));
        }
        if self.talks.contains_key(&meta.session) {
            return Err(QueueError::DuplicateTalk(meta.session));
        }
        let muted = self.settings(&meta.group).muted;
        let live = !muted
            && self.current.is_none()
            && !self.user_talking
            && !self.talks.values().any(|t| t.state == State::Queued);
        let order = self.next_order;
        self.next_order = self.next_order.saturating_add(1);
        let session = meta.session.clone();
        let group = meta.group.clone();
        let (state, mode) = if live {
            let jb = JitterBuffer::with_target_hint(self.hint_for(&meta.sender));
            let mode = Mode::Live {
                jb: Box::new(jb),
                started: false,
            };
            (State::Current, Some(mode))
        } else if muted {
            (State::Held, None)
        } else {
            (State::Queued, None)
        };
        self.talks.insert(
            session.clone(),
            Talk {
                meta,
                order,
                state,
                boost: None,
                frames: BTreeMap::new(),
                bytes: 0,
                ended: false,
                cut: false,
                last_activity_ms: now_ms,
                mode,
            },
        );
        match state {
            State::Current => {
                self.current = Some(session.clone());
                self.emit(QueueEvent::Started {
                    session,
                    group,
                    live: true,
                });
            }
            State::Held => self.emit(QueueEvent::Held { session, group }),
            State::Queued => self.emit(QueueEvent::Queued { session, group }),
        }
        self.enforce_bounds();
        Ok(())
    }

    /// Packets of a talk: `packets[i]` is frame `first_frame + i` of the talk
    /// (20 ms each), captured at `sender_ts_ms + i * 20` on the talker's
    /// clock. The whole message is refused (typed error, nothing changed)
    /// for an unknown or over talk, another group, too many packets or a bad
    /// packet size; single frames are dropped or ignored as counted in the
    /// summary.
    pub fn push(
        &mut self,
        group: &str,
        session: &str,
        first_frame: u64,
        sender_ts_ms: u64,
        packets: Vec<Vec<u8>>,
        now_ms: u64,
    ) -> Result<PushSummary, QueueError> {
        if packets.len() > MAX_PACKETS_PER_PUSH {
            return Err(QueueError::TooManyPackets {
                count: packets.len(),
                max: MAX_PACKETS_PER_PUSH,
            });
        }
        let talk = self.waiting_or_current(session)?;
        if talk.meta.group != group {
            return Err(QueueError::GroupMismatch {
                session: session.to_owned(),
                expected: talk.meta.group.clone(),
                got: group.to_owned(),
            });
        }
        if let Some((index, p)) = packets
            .iter()
            .enumerate()
            .find(|(_, p)| p.is_empty() || p.len() > MAX_PACKET_BYTES)
        {
            return Err(QueueError::BadPacket {
                index,
                len: p.len(),
                max: MAX_PACKET_BYTES,
            });
        }
        talk.last_activity_ms = talk.last_activity_ms.max(now_ms);

        let count = packets.len();
        let mut summary = PushSummary::default();
        for (i, packet) in packets.into_iter().enumerate() {
            let Some(talk) = self.talks.get_mut(session) else {
                summary.dropped += count - i;
                break;
            };
            let offset = i as u64;
            let index = match first_frame.checked_add(offset) {
                Some(index) if index < self.limits.max_talk_frames => index,
                _ => {
                    summary.dropped += 1;
                    if !talk.cut {
                        talk.cut = true;
                        let session = session.to_owned();
                        self.emit(QueueEvent::Cut { session });
                    }
                    continue;
                }
            };
            if talk.frames.contains_key(&index) {
                summary.duplicates += 1;
                continue;
            }
            match talk.mode.as_mut() {
                Some(Mode::Replay {
                    next: Some(next), ..
                }) if index < *next => {
                    summary.dropped += 1;
                    continue;
                }
                Some(Mode::Live { jb, .. }) => {
                    let ts = sender_ts_ms.saturating_add(offset.saturating_mul(FRAME_MS));
                    match jb.push(index, ts, packet.clone(), now_ms) {
                        Ok(PushOutcome::Buffered) => {}
                        Ok(PushOutcome::Duplicate) => {
                            summary.duplicates += 1;
                            continue;
                        }
                        Ok(PushOutcome::Late) | Err(_) => {
                            summary.dropped += 1;
                            continue;
                        }
                    }
                }
                _ => {}
            }
            let len = packet.len() as u64;
            match self.make_room(session, len) {
                Room::Made => {}
                Room::EvictedSelf => {
                    summary.dropped += count - i;
                    break;
                }
                Room::None => {
                    summary.dropped += 1;
                    continue;
                }
            }
            let Some(talk) = self.talks.get_mut(session) else {
                summary.dropped += count - i;
                break;
            };
            talk.frames.insert(
                index,
                Slot {
                    packet,
                    stored_ms: now_ms,
                },
            );
            talk.bytes = talk.bytes.saturating_add(len);
            self.totals.frames += 1;
            self.totals.bytes = self.totals.bytes.saturating_add(len);
            summary.stored += 1;
        }
        self.stats.duplicates += summary.duplicates as u64;
        self.stats.dropped_frames += summary.dropped as u64;
        Ok(summary)
    }

    /// The talk ended (its last message, or the floor ended it): no more
    /// audio will come. A talk not playing live then emits `Persist`.
    pub fn talk_ended(&mut self, session: &str, now_ms: u64) -> Result<(), QueueError> {
        let talk = self.waiting_or_current(session)?;
        talk.last_activity_ms = talk.last_activity_ms.max(now_ms);
        self.mark_ended(session);
        Ok(())
    }

    /// Output for the current 20 ms tick. Call once per tick.
    pub fn tick(&mut self, now_ms: u64) -> Tick {
        self.end_stalled(now_ms);
        if self.user_talking {
            return Tick::Idle;
        }
        // Each pass returns, or removes a talk / clears `current`: it ends.
        loop {
            let session = match self.current.clone() {
                Some(session) => session,
                None => match self.start_next() {
                    Some(session) => session,
                    None => return Tick::Idle,
                },
            };
            let Some(talk) = self.talks.get_mut(&session) else {
                self.current = None;
                continue;
            };
            let playout = pop_talk(talk, now_ms, &mut self.totals);
            let group = talk.meta.group.clone();
            match playout {
                Playout::Finished => self.finish_current(false),
                playout => {
                    match playout {
                        Playout::Frame(_) => self.stats.frames_played += 1,
                        Playout::Conceal { .. } => self.stats.frames_concealed += 1,
                        _ => {}
                    }
                    let gain = self.settings(&group).volume;
                    return Tick::Play {
                        session,
                        group,
                        playout,
                        gain,
                    };
                }
            }
        }
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

    /// The user's "play": a queued or held talk plays next, before any other
    /// waiting talk (requests in the order made). It never cuts the current
    /// talk; it starts at the next tick when nothing plays and the user is
    /// not talking.
    pub fn play_now(&mut self, session: &str) -> Result<(), QueueError> {
        let boost = self.next_boost;
        let talk = self
            .talks
            .get_mut(session)
            .filter(|t| t.state != State::Current)
            .ok_or_else(|| QueueError::NotWaiting(session.to_owned()))?;
        talk.state = State::Queued;
        talk.boost = Some(boost);
        let group = talk.meta.group.clone();
        self.next_boost = self.next_boost.saturating_add(1);
        self.emit(QueueEvent::Queued {
            session: session.to_owned(),
            group,
        });
        Ok(())
    }

    /// The user's "skip": drops a queued, held or the current talk.
    pub fn skip(&mut self, session: &str) -> Result<(), QueueError> {
        if self.current.as_deref() == Some(session) {
            self.finish_current(true);
            return Ok(());
        }
        if !self.talks.contains_key(session) {
            return Err(QueueError::NotWaiting(session.to_owned()));
        }
        self.remove_talk(session);
        self.emit(QueueEvent::Skipped {
            session: session.to_owned(),
        });
        Ok(())
    }

    /// A snapshot of a talk for the store: its meta, arrival order and the
    /// frames not yet played.
    pub fn stored_talk(&self, session: &str) -> Option<StoredTalk> {
        let talk = self.talks.get(session)?;
        Some(StoredTalk {
            meta: talk.meta.clone(),
            order: talk.order,
            frames: talk
                .frames
                .iter()
                .map(|(&i, s)| (i, s.packet.clone()))
                .collect(),
        })
    }

    /// What the store should do for `event`: `Save` for `Persist` (None if
    /// the talk is already gone), `Delete` for a talk that left the queue.
    pub fn persist_action(&self, event: &QueueEvent) -> Option<PersistAction> {
        if let Some(session) = event.removed_talk() {
            return Some(PersistAction::Delete {
                session: session.to_owned(),
            });
        }
        match event {
            QueueEvent::Persist { session } => self.stored_talk(session).map(PersistAction::Save),
            _ => None,
        }
    }

    /// Puts saved talks back (call at start, before live talks arrive):
    /// held, complete, in their saved arrival order, under the bounds (the
    /// overflow rule applies). Returns the talks refused, with why.
    pub fn restore(
        &mut self,
        mut talks: Vec<StoredTalk>,
        now_ms: u64,
    ) -> Vec<(String, QueueError)> {
        talks.sort_by(|a, b| {
            a.order
                .cmp(&b.order)
                .then_with(|| a.meta.session.cmp(&b.meta.session))
        });
        let mut refused = Vec::new();
        for stored in talks {
            let session = stored.meta.session.clone();
            if let Err(error) = self.restore_one(stored, now_ms) {
                refused.push((session, error));
            }
        }
        refused
    }

    /// Counters and current totals.
    pub fn stats(&self) -> QueueStats {
        QueueStats {
            stored_frames: self.totals.frames,
            stored_bytes: self.totals.bytes,
            ..self.stats
        }
    }

    // ------------------------------------------------------------ internals

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

    fn hint_for(&self, sender: &str) -> u64 {
        self.hints
            .iter()
            .rev()
            .find(|(s, _)| s == sender)
            .map_or(FIRST_TALK_TARGET_MS, |&(_, h)| h)
    }

    fn remember_hint(&mut self, sender: &str, target_ms: u64) {
        self.hints.retain(|(s, _)| s != sender);
        if self.hints.len() >= REMEMBERED_HINTS {
            self.hints.pop_front();
        }
        self.hints.push_back((sender.to_owned(), target_ms));
    }

    fn remember_over(&mut self, session: &str) {
        if !self.over_set.insert(session.to_owned()) {
            return;
        }
        self.over.push_back(session.to_owned());
        while self.over.len() > REMEMBERED_OVER_TALKS {
            if let Some(old) = self.over.pop_front() {
                self.over_set.remove(&old);
            }
        }
    }

    fn mark_ended(&mut self, session: &str) {
        let Some(talk) = self.talks.get_mut(session) else {
            return;
        };
        if talk.ended {
            return;
        }
        talk.ended = true;
        if let Some(Mode::Live { jb, .. }) = talk.mode.as_mut() {
            jb.end();
        } else {
            self.emit(QueueEvent::Persist {
                session: session.to_owned(),
            });
        }
    }

    fn end_stalled(&mut self, now_ms: u64) {
        let mut stalled: Vec<(u64, String)> = self
            .talks
            .values()
            .filter(|t| !t.ended && now_ms.saturating_sub(t.last_activity_ms) >= STALL_TIMEOUT_MS)
            .map(|t| (t.order, t.meta.session.clone()))
            .collect();
        stalled.sort();
        for (_, session) in stalled {
            self.mark_ended(&session);
        }
    }

    /// A live current talk continues from stored packets where the jitter
    /// buffer stopped.
    fn switch_to_replay(&mut self, session: &str) {
        let Some(talk) = self.talks.get_mut(session) else {
            return;
        };
        let Some(Mode::Live { jb, started }) = &talk.mode else {
            return;
        };
        let started = *started;
        let next = started.then(|| jb.position());
        let target = jb.stats().target_delay_ms;
        let sender = talk.meta.sender.clone();
        let ended = talk.ended;
        talk.mode = Some(Mode::Replay { next, gap_run: 0 });
        if started {
            self.remember_hint(&sender, target);
        }
        if ended {
            self.emit(QueueEvent::Persist {
                session: session.to_owned(),
            });
        }
    }

    fn hold_group(&mut self, group: &str) {
        let mut held: Vec<(u64, String)> = Vec::new();
        for talk in self.talks.values_mut() {
            if talk.meta.group == group && talk.state == State::Queued {
                talk.state = State::Held;
                talk.boost = None;
                held.push((talk.order, talk.meta.session.clone()));
            }
        }
        held.sort();
        for (_, session) in held {
            let group = group.to_owned();
            self.emit(QueueEvent::Held { session, group });
        }
        let Some(session) = self.current.clone() else {
            return;
        };
        if self
            .talks
            .get(&session)
            .is_none_or(|t| t.meta.group != group)
        {
            return;
        }
        self.switch_to_replay(&session);
        if let Some(talk) = self.talks.get_mut(&session) {
            talk.state = State::Held;
            // Keeps its replay position; cleared when it is chosen again.
        }
        self.current = None;
        let group = group.to_owned();
        self.emit(QueueEvent::Held { session, group });
        // One more waiting talk: the bound on their number applies.
        self.enforce_bounds();
    }

    fn start_next(&mut self) -> Option<String> {
        let groups = &self.groups;
        let priority = |t: &Talk| groups.get(&t.meta.group).map_or(0, |g| g.priority);
        let session = self
            .talks
            .values()
            .filter(|t| t.state == State::Queued)
            .min_by(|a, b| {
                match (a.boost, b.boost) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => priority(b).cmp(&priority(a)),
                }
                .then_with(|| arrival_order(a, b))
            })
            .map(|t| t.meta.session.clone())?;
        let talk = self.talks.get_mut(&session)?;
        talk.state = State::Current;
        talk.boost = None;
        if !matches!(talk.mode, Some(Mode::Replay { .. })) {
            talk.mode = Some(Mode::Replay {
                next: None,
                gap_run: 0,
            });
        }
        let group = talk.meta.group.clone();
        self.current = Some(session.clone());
        self.emit(QueueEvent::Started {
            session: session.clone(),
            group,
            live: false,
        });
        Some(session)
    }

    fn finish_current(&mut self, skipped: bool) {
        let Some(session) = self.current.take() else {
            return;
        };
        let Some(talk) = self.remove_talk(&session) else {
            return;
        };
        if let Some(Mode::Live { jb, started: true }) = &talk.mode {
            let stats = jb.stats();
            tracing::info!(
                %session,
                played = stats.played,
                concealed = stats.concealed,
                stretched = stats.stretched,
                shrunk = stats.shrink_dropped,
                late = stats.late_dropped,
                target_ms = stats.target_delay_ms,
                mean_added_ms = stats.mean_added_delay_ms(),
                "live talk played"
            );
            self.remember_hint(&talk.meta.sender, stats.target_delay_ms);
        }
        self.emit(if skipped {
            QueueEvent::Skipped { session }
        } else {
            QueueEvent::Finished { session }
        });
    }

    /// Removes a talk and its stored audio, and remembers it as over.
    fn remove_talk(&mut self, session: &str) -> Option<Talk> {
        let talk = self.talks.remove(session)?;
        self.totals.frames = self.totals.frames.saturating_sub(talk.frames.len() as u64);
        self.totals.bytes = self.totals.bytes.saturating_sub(talk.bytes);
        if self.current.as_deref() == Some(session) {
            self.current = None;
        }
        self.remember_over(session);
        Some(talk)
    }

    /// The oldest waiting talk of the lowest priority.
    fn eviction_victim(&self) -> Option<String> {
        let priority = |t: &Talk| self.settings(&t.meta.group).priority;
        self.talks
            .values()
            .filter(|t| t.state != State::Current)
            .min_by(|a, b| {
                priority(a)
                    .cmp(&priority(b))
                    .then_with(|| arrival_order(a, b))
            })
            .map(|t| t.meta.session.clone())
    }

    fn evict(&mut self, session: &str) {
        if let Some(talk) = self.remove_talk(session) {
            self.stats.evicted_talks += 1;
            self.emit(QueueEvent::Overflowed {
                session: talk.meta.session,
                group: talk.meta.group,
            });
        }
    }

    fn waiting_count(&self) -> usize {
        self.talks
            .len()
            .saturating_sub(usize::from(self.current.is_some()))
    }

    fn over_bounds(&self) -> bool {
        self.waiting_count() > self.limits.max_talks
            || self.totals.frames > self.limits.max_total_frames
            || self.totals.bytes > self.limits.max_total_bytes
    }

    fn enforce_bounds(&mut self) {
        while self.over_bounds() {
            let Some(victim) = self.eviction_victim() else {
                return;
            };
            self.evict(&victim);
        }
    }

    /// Evicts until one more frame of `bytes` fits.
    fn make_room(&mut self, session: &str, bytes: u64) -> Room {
        loop {
            let fits = self.totals.frames < self.limits.max_total_frames
                && self.totals.bytes.saturating_add(bytes) <= self.limits.max_total_bytes;
            if fits {
                return Room::Made;
            }
            let Some(victim) = self.eviction_victim() else {
                return Room::None;
            };
            self.evict(&victim);
            if victim == session {
                return Room::EvictedSelf;
            }
        }
    }

    fn restore_one(&mut self, stored: StoredTalk, now_ms: u64) -> Result<(), QueueError> {
        let StoredTalk {
            meta,
            order,
            frames: stored_frames,
        } = stored;
        check_id("group", &meta.group)?;
        check_id("session", &meta.session)?;
        check_id("sender", &meta.sender)?;
        if self.over_set.contains(&meta.session) {
            return Err(QueueError::TalkOver(meta.session));
        }
        if self.talks.contains_key(&meta.session) {
            return Err(QueueError::DuplicateTalk(meta.session));
        }
        let mut frames = BTreeMap::new();
        let mut bytes = 0u64;
        for (index, packet) in stored_frames {
            let fits = index < self.limits.max_talk_frames
                && (1..=MAX_PACKET_BYTES).contains(&packet.len());
            if !fits || frames.contains_key(&index) {
                self.stats.dropped_frames += 1;
                continue;
            }
            bytes += packet.len() as u64;
            frames.insert(
                index,
                Slot {
                    packet,
                    stored_ms: now_ms,
                },
            );
        }
        self.next_order = self.next_order.max(order.saturating_add(1));
        self.totals.frames += frames.len() as u64;
        self.totals.bytes = self.totals.bytes.saturating_add(bytes);
        let session = meta.session.clone();
        let group = meta.group.clone();
        self.talks.insert(
            session.clone(),
            Talk {
                meta,
                order,
                state: State::Held,
                boost: None,
                frames,
                bytes,
                ended: true,
                cut: false,
                last_activity_ms: now_ms,
                mode: None,
            },
        );
        self.emit(QueueEvent::Held { session, group });
        self.enforce_bounds();
        Ok(())
    }

    /// Totals match the talks; bounds hold; the current talk is consistent.
    #[cfg(test)]
    fn check_invariants(&self) {
        let frames: u64 = self.talks.values().map(|t| t.frames.len() as u64).sum();
        let bytes: u64 = self
            .talks
            .values()
            .map(|t| {
                t.frames
                    .values()
                    .map(|s| s.packet.len() as u64)
                    .sum::<u64>()
            })
            .sum();
        assert_eq!(frames, self.totals.frames);
        assert_eq!(bytes, self.totals.bytes);
        for t in self.talks.values() {
            let b: u64 = t.frames.values().map(|s| s.packet.len() as u64).sum();
            assert_eq!(b, t.bytes);
            assert!(t.frames.keys().all(|&i| i < self.limits.max_talk_frames));
            assert_eq!(
                t.state == State::Current,
                self.current.as_ref() == Some(&t.meta.session)
            );
        }
        assert!(self.totals.frames <= self.limits.max_total_frames);
        assert!(self.totals.bytes <= self.limits.max_total_bytes);
        assert!(self.waiting_count() <= self.limits.max_talks);
        assert!(self.events.len() <= MAX_PENDING_EVENTS);
        assert!(self.over.len() <= REMEMBERED_OVER_TALKS);
        assert_eq!(self.over.len(), self.over_set.len());
        assert!(self.hints.len() <= REMEMBERED_HINTS);
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

/// One tick of the current talk.
fn pop_talk(talk: &mut Talk, now_ms: u64, totals: &mut Totals) -> Playout {
    let Talk {
        frames,
        bytes,
        ended,
        mode,
        ..
    } = talk;
    let mode = mode.get_or_insert(Mode::Replay {
        next: None,
        gap_run: 0,
    });
    match mode {
        Mode::Live { jb, started } => {
            let out = jb.pop(now_ms);
            if matches!(out, Playout::Frame(_) | Playout::Conceal { .. }) {
                *started = true;
            }
            if *started {
                // Drop the copies of what the buffer has passed.
                let position = jb.position();
                while let Some(entry) = frames.first_entry() {
                    if *entry.key() >= position {
                        break;
                    }
                    totals.remove(bytes, &entry.remove());
                }
            }
            out
        }
        Mode::Replay { next, gap_run } => {
            replay_pop(frames, bytes, next, gap_run, *ended, now_ms, totals)
        }
    }
}

/// The replay cursor: see the module doc.
fn replay_pop(
    frames: &mut BTreeMap<u64, Slot>,
    bytes: &mut u64,
    next: &mut Option<u64>,
    gap_run: &mut u32,
    ended: bool,
    now_ms: u64,
    totals: &mut Totals,
) -> Playout {
    loop {
        let Some(entry) = frames.first_entry() else {
            return if ended {
                Playout::Finished
            } else {
                Playout::Wait
            };
        };
        let first = *entry.key();
        let cursor = *next.get_or_insert(first);
        if first < cursor {
            // Already passed (push refuses these): drop it.
            totals.remove(bytes, &entry.remove());
            continue;
        }
        let give_up = first == cursor
            || ended
            || now_ms.saturating_sub(entry.get().stored_ms) >= REPLAY_GRACE_MS;
        if !give_up {
            return Playout::Wait;
        }
        if first == cursor || *gap_run >= MAX_REPLAY_GAP_FRAMES {
            let slot = entry.remove();
            totals.remove(bytes, &slot);
            *next = Some(first.saturating_add(1));
            *gap_run = 0;
            return Playout::Frame(slot.packet);
        }
        *gap_run += 1;
        *next = Some(cursor.saturating_add(1));
        let fec = frames
            .get(&cursor.saturating_add(1))
            .map(|s| s.packet.clone());
        return Playout::Conceal { next: fec };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet that names its talk and frame.
    fn pkt(talk: u8, index: u64) -> Vec<u8> {
        let mut p = vec![talk];
        p.extend_from_slice(&index.to_le_bytes());
        p
    }

    fn id_of(p: &[u8]) -> (u8, u64) {
        let mut b = [0u8; 8];
        b.copy_from_slice(&p[1..9]);
        (p[0], u64::from_le_bytes(b))
    }

    fn meta(group: &str, session: &str) -> TalkMeta {
        TalkMeta {
            group: group.into(),
            session: session.into(),
            sender: format!("@{session}:example.org"),
            start_ts_ms: 1_767_225_600_000,
        }
    }

    fn queue() -> MixingQueue {
        MixingQueue::new(QueueLimits::default()).unwrap()
    }

    fn events(q: &mut MixingQueue) -> Vec<QueueEvent> {
        std::iter::from_fn(|| q.poll_event()).collect()
    }

    /// Pushes frames `from..to` of talk `n` in messages of two frames.
    fn push_range(
        q: &mut MixingQueue,
        group: &str,
        session: &str,
        n: u8,
        from: u64,
        to: u64,
        now: u64,
    ) {
        let mut i = from;
        while i < to {
            let end = (i + 2).min(to);
            let packets = (i..end).map(|k| pkt(n, k)).collect();
            let s = q
                .push(group, session, i, 5_000_000 + i * FRAME_MS, packets, now)
                .unwrap();
            assert_eq!(s.stored, (end - i) as usize);
            i = end;
        }
    }

    #[derive(Debug, Default)]
    struct Played {
        /// (session, packet or None for a concealment) per non-Wait tick.
        out: Vec<(String, Option<Vec<u8>>)>,
        gains: Vec<f32>,
        waits: usize,
    }

    impl Played {
        fn sessions_in_order(&self) -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            for (s, _) in &self.out {
                if v.last() != Some(s) {
                    v.push(s.clone());
                }
            }
            v
        }
        fn frames_of(&self, session: &str) -> Vec<u64> {
            self.out
                .iter()
                .filter(|(s, _)| s == session)
                .filter_map(|(_, p)| p.as_ref().map(|p| id_of(p).1))
                .collect()
        }
        fn concealed(&self, session: &str) -> usize {
            self.out
                .iter()
                .filter(|(s, p)| s == session && p.is_none())
                .count()
        }
    }

    /// Ticks every 20 ms from `*now` until the queue is idle.
    fn play_until_idle(q: &mut MixingQueue, now: &mut u64, max_ticks: usize) -> Played {
        let mut played = Played::default();
        for _ in 0..max_ticks {
            *now += FRAME_MS;
            match q.tick(*now) {
                Tick::Idle => return played,
                Tick::Play {
                    session,
                    playout,
                    gain,
                    ..
                } => {
                    played.gains.push(gain);
                    match playout {
                        Playout::Frame(p) => played.out.push((session, Some(p))),
                        Playout::Conceal { .. } => played.out.push((session, None)),
                        Playout::Wait => played.waits += 1,
                        Playout::Finished => panic!("Finished is never returned"),
                    }
                }
            }
            q.check_invariants();
        }
        panic!("not idle after {max_ticks} ticks");
    }

    #[test]
    fn overlapping_talks_while_user_talks_play_one_at_a_time_in_arrival_order() {
        let mut q = queue();
        q.set_user_talking(true);
        let talks = [
            ("!a:x", "sa", 1u8, 90u64),
            ("!b:x", "sb", 2, 60),
            ("!c:x", "sc", 3, 120),
        ];
        let mut now = 1_000;
        for (k, (g, s, _, _)) in talks.iter().enumerate() {
            q.talk_started(meta(g, s), now + k as u64 * 10).unwrap();
        }
        // Interleaved arrival, two frames per message per talk every 40 ms.
        let longest = talks.iter().map(|t| t.3).max().unwrap();
        let mut i = 0;
        while i < longest {
            now += 40;
            for (g, s, n, len) in &talks {
                if i < *len {
                    push_range(&mut q, g, s, *n, i, (i + 2).min(*len), now);
                }
            }
            q.check_invariants();
            assert_eq!(
                q.tick(now),
                Tick::Idle,
                "nothing plays while the user talks"
            );
            i += 2;
        }
        for (_, s, _, _) in &talks {
            q.talk_ended(s, now).unwrap();
        }
        let ev = events(&mut q);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, QueueEvent::Queued { .. }))
                .count(),
            3
        );
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, QueueEvent::Persist { .. }))
                .count(),
            3
        );
        let listed: Vec<_> = q.unplayed().into_iter().map(|t| t.meta.session).collect();
        assert_eq!(listed, ["sa", "sb", "sc"]);

        q.set_user_talking(false);
        let played = play_until_idle(&mut q, &mut now, 1_000);
        assert_eq!(played.sessions_in_order(), ["sa", "sb", "sc"]);
        assert_eq!(played.waits, 0);
        for (_, s, n, len) in &talks {
            assert_eq!(played.frames_of(s), (0..*len).collect::<Vec<_>>(), "{s}");
            assert_eq!(played.concealed(s), 0);
            assert!(played
                .out
                .iter()
                .filter(|(x, _)| x == s)
                .all(|(_, p)| id_of(p.as_ref().unwrap()).0 == *n));
        }
        let ev = events(&mut q);
        let order: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                QueueEvent::Started { session, live, .. } => {
                    assert!(!live);
                    Some(format!("start {session}"))
                }
                QueueEvent::Finished { session } => Some(format!("end {session}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            order,
            ["start sa", "end sa", "start sb", "end sb", "start sc", "end sc"]
        );
        assert!(q.unplayed().is_empty());
        assert_eq!(q.stats().stored_frames, 0);
        assert_eq!(q.stats().stored_bytes, 0);
        assert_eq!(q.stats().frames_played, 270);
    }

    #[test]
    fn priority_reorders_the_queue_but_never_preempts() {
        let mut q = queue();
        let high = GroupSettings {
            priority: 5,
            ..GroupSettings::default()
        };
        q.set_group("!hi:x", high).unwrap();
        q.set_group("!hi2:x", high).unwrap();
        let mut now = 0;
        // A low-priority talk plays live; higher ones arrive during it.
        q.talk_started(meta("!lo:x", "live"), now).unwrap();
        q.talk_started(meta("!lo:x", "low"), now + 1).unwrap();
        q.talk_started(meta("!hi:x", "high1"), now + 2).unwrap();
        q.talk_started(meta("!hi2:x", "high2"), now + 3).unwrap();
        for (s, g, n) in [
            ("live", "!lo:x", 0u8),
            ("low", "!lo:x", 1),
            ("high1", "!hi:x", 2),
            ("high2", "!hi2:x", 3),
        ] {
            push_range(&mut q, g, s, n, 0, 10, now);
            q.talk_ended(s, now).unwrap();
        }
        let played = play_until_idle(&mut q, &mut now, 500);
        assert_eq!(
            played.sessions_in_order(),
            ["live", "high1", "high2", "low"]
        );
        for s in ["live", "low", "high1", "high2"] {
            assert_eq!(played.frames_of(s), (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn muted_group_talk_is_held_listed_and_plays_on_play_now() {
        let mut q = queue();
        q.set_group(
            "!m:x",
            GroupSettings {
                muted: true,
                volume: 0.7,
                priority: 0,
            },
        )
        .unwrap();
        let mut now = 0;
        q.talk_started(meta("!m:x", "muted"), now).unwrap();
        push_range(&mut q, "!m:x", "muted", 4, 0, 25, now);
        q.talk_ended("muted", now).unwrap();
        assert!(matches!(events(&mut q)[0], QueueEvent::Held { .. }));
        for _ in 0..50 {
            now += FRAME_MS;
            assert_eq!(q.tick(now), Tick::Idle);
        }
        let unplayed = q.unplayed();
        assert_eq!(unplayed.len(), 1);
        assert_eq!(unplayed[0].meta.session, "muted");
        assert_eq!(unplayed[0].state, TalkState::Held);
        assert_eq!(unplayed[0].frames, 25);
        assert_eq!(unplayed[0].duration_ms, 500);
        assert!(unplayed[0].complete);

        // Another talk of an unmuted group still plays live meanwhile.
        q.talk_started(meta("!o:x", "other"), now).unwrap();
        push_range(&mut q, "!o:x", "other", 5, 0, 5, now);
        q.talk_ended("other", now).unwrap();
        let played = play_until_idle(&mut q, &mut now, 100);
        assert_eq!(played.sessions_in_order(), ["other"]);

        // Unmuting does not auto-play what was held; play_now does.
        q.set_group("!m:x", GroupSettings::default()).unwrap();
        assert_eq!(q.tick(now + 20), Tick::Idle);
        assert_eq!(
            q.play_now("nope"),
            Err(QueueError::NotWaiting("nope".into()))
        );
        q.play_now("muted").unwrap();
        let played = play_until_idle(&mut q, &mut now, 100);
        assert_eq!(played.frames_of("muted"), (0..25).collect::<Vec<_>>());
        assert!(q.unplayed().is_empty());
    }

    #[test]
    fn muting_the_playing_group_holds_the_rest_of_its_talk() {
        let mut q = queue();
        let mut now = 0;
        q.talk_started(meta("!g:x", "t"), now).unwrap();
        push_range(&mut q, "!g:x", "t", 1, 0, 50, now);
        q.talk_ended("t", now).unwrap();
        let mut first = Vec::new();
        while first.len() < 20 {
            now += FRAME_MS;
            if let Tick::Play {
                playout: Playout::Frame(p),
                ..
            } = q.tick(now)
            {
                first.push(id_of(&p).1);
            }
        }
        q.set_group(
            "!g:x",
            GroupSettings {
                muted: true,
                ..GroupSettings::default()
            },
        )
        .unwrap();
        assert_eq!(q.tick(now + 20), Tick::Idle);
        assert!(events(&mut q)
            .iter()
            .any(|e| matches!(e, QueueEvent::Persist { .. })));
        let held = q.unplayed();
        assert_eq!(held[0].state, TalkState::Held);
        q.play_now("t").unwrap();
        let played = play_until_idle(&mut q, &mut now, 200);
        first.extend(played.frames_of("t"));
        assert_eq!(first, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn volume_is_carried_with_every_frame_and_checked() {
        let mut q = queue();
        q.set_group(
            "!v:x",
            GroupSettings {
                volume: 0.25,
                ..GroupSettings::default()
            },
        )
        .unwrap();
        let mut now = 0;
        q.set_user_talking(true);
        q.talk_started(meta("!v:x", "v"), now).unwrap();
        push_range(&mut q, "!v:x", "v", 1, 0, 10, now);
        q.talk_ended("v", now).unwrap();
        q.set_user_talking(false);
        let played = play_until_idle(&mut q, &mut now, 100);
        assert_eq!(played.gains, vec![0.25; 10]);
        for bad in [-0.1, 2.01, f32::NAN, f32::INFINITY] {
            assert!(matches!(
                q.set_group(
                    "!v:x",
                    GroupSettings {
                        volume: bad,
                        ..GroupSettings::default()
                    }
                ),
                Err(QueueError::InvalidVolume(_))
            ));
        }
        assert_eq!(q.group("!v:x").volume, 0.25);
        // A change applies at the next tick.
        q.talk_started(meta("!v:x", "w"), now).unwrap();
        push_range(&mut q, "!v:x", "w", 2, 0, 10, now);
        q.talk_ended("w", now).unwrap();
        let mut gains = Vec::new();
        for k in 0..40 {
            if k == 5 {
                let loud = GroupSettings {
                    volume: 2.0,
                    ..GroupSettings::default()
                };
                q.set_group("!v:x", loud).unwrap();
            }
            now += FRAME_MS;
            if let Tick::Play {
                playout: Playout::Frame(_),
                gain,
                ..
            } = q.tick(now)
            {
                gains.push(gain);
            }
        }
        assert_eq!(gains.len(), 10);
        assert!(gains.contains(&0.25) && gains.ends_with(&[2.0]));
    }

    fn small_limits() -> QueueLimits {
        QueueLimits {
            max_talks: 3,
            max_talk_frames: 100,
            max_total_frames: 250,
            max_total_bytes: 100 * MAX_PACKET_BYTES as u64,
        }
    }

    #[test]
    fn limits_are_checked() {
        let ok = small_limits();
        assert!(MixingQueue::new(ok).is_ok());
        for bad in [
            QueueLimits { max_talks: 0, ..ok },
            QueueLimits {
                max_talk_frames: 0,
                ..ok
            },
            QueueLimits {
                max_total_frames: 99,
                ..ok
            },
            QueueLimits {
                max_total_bytes: 1000,
                ..ok
            },
        ] {
            assert!(matches!(
                MixingQueue::new(bad),
                Err(QueueError::InvalidLimits(_))
            ));
        }
    }

    #[test]
    fn overflow_evicts_the_oldest_talk_of_the_lowest_priority_whole() {
        let mut q = MixingQueue::new(small_limits()).unwrap();
        let prio = |p| GroupSettings {
            priority: p,
            ..GroupSettings::default()
        };
        q.set_group("!hi:x", prio(3)).unwrap();
        q.set_group("!lo:x", prio(-1)).unwrap();
        let now = 0;
        // The live talk is never evicted, whatever its priority.
        q.talk_started(meta("!lo:x", "live"), now).unwrap();
        q.talk_started(meta("!hi:x", "h1"), now).unwrap();
        q.talk_started(meta("!lo:x", "l1"), now).unwrap();
        q.talk_started(meta("!lo:x", "l2"), now).unwrap();
        events(&mut q);
        // A fourth waiting talk: l1 (oldest of the lowest priority) goes.
        q.talk_started(meta("!hi:x", "h2"), now).unwrap();
        assert_eq!(
            events(&mut q),
            [
                QueueEvent::Queued {
                    session: "h2".into(),
                    group: "!hi:x".into()
                },
                QueueEvent::Overflowed {
                    session: "l1".into(),
                    group: "!lo:x".into()
                }
            ]
        );
        assert_eq!(
            q.push("!lo:x", "l1", 0, 0, vec![pkt(0, 0)], now),
            Err(QueueError::TalkOver("l1".into()))
        );
        let waiting: Vec<_> = q.unplayed().into_iter().map(|t| t.meta.session).collect();
        assert_eq!(waiting, ["h1", "l2", "h2"]);

        // Frames: 250 total. The live talk takes 100, h1 90, h2 50: the
        // next frames of l2 do not fit, and l2 itself is the victim.
        push_range(&mut q, "!lo:x", "live", 0, 0, 100, now);
        push_range(&mut q, "!hi:x", "h1", 1, 0, 90, now);
        push_range(&mut q, "!hi:x", "h2", 2, 0, 50, now);
        q.check_invariants();
        let s = q
            .push(
                "!lo:x",
                "l2",
                0,
                0,
                (0..20).map(|k| pkt(3, k)).collect(),
                now,
            )
            .unwrap();
        assert_eq!((s.stored, s.dropped), (10, 10));
        assert_eq!(
            events(&mut q),
            [QueueEvent::Overflowed {
                session: "l2".into(),
                group: "!lo:x".into()
            }]
        );
        // Now the oldest high one goes for new frames of the live talk? No:
        // the live talk is full at 100 frames (its max) and cut instead.
        let s = q
            .push("!lo:x", "live", 100, 0, vec![pkt(0, 100)], now)
            .unwrap();
        assert_eq!(s.dropped, 1);
        assert_eq!(
            events(&mut q),
            [QueueEvent::Cut {
                session: "live".into()
            }]
        );
        // A new talk's frames evict h1 (oldest among equal priorities).
        q.talk_started(meta("!hi:x", "h3"), now).unwrap();
        push_range(&mut q, "!hi:x", "h3", 4, 0, 20, now);
        let ev = events(&mut q);
        assert!(ev.contains(&QueueEvent::Overflowed {
            session: "h1".into(),
            group: "!hi:x".into()
        }));
        assert!(q.stats().evicted_talks >= 3);
        q.check_invariants();
        // The live talk still plays whole.
        q.talk_ended("live", now).unwrap();
        let mut now = now;
        let played = play_until_idle(&mut q, &mut now, 1_000);
        assert_eq!(played.frames_of("live"), (0..100).collect::<Vec<_>>());
        assert_eq!(played.sessions_in_order()[0], "live");
    }

    #[test]
    fn bytes_bound_evicts_too() {
        let limits = QueueLimits {
            max_talks: 10,
            max_talk_frames: 10,
            max_total_frames: 1_000,
            max_total_bytes: 10 * MAX_PACKET_BYTES as u64,
        };
        let mut q = MixingQueue::new(limits).unwrap();
        q.set_user_talking(true);
        q.talk_started(meta("!g:x", "a"), 0).unwrap();
        q.talk_started(meta("!g:x", "b"), 0).unwrap();
        let big = |n| vec![vec![n; MAX_PACKET_BYTES]; 6];
        assert_eq!(q.push("!g:x", "a", 0, 0, big(1), 0).unwrap().stored, 6);
        assert_eq!(q.push("!g:x", "b", 0, 0, big(2), 0).unwrap().stored, 6);
        assert!(events(&mut q).contains(&QueueEvent::Overflowed {
            session: "a".into(),
            group: "!g:x".into()
        }));
        assert_eq!(q.stats().stored_bytes, 6 * MAX_PACKET_BYTES as u64);
        q.check_invariants();
    }

    #[test]
    fn live_talk_plays_through_the_jitter_buffer_in_order() {
        let mut q = queue();
        let mut now = 10_000;
        q.talk_started(meta("!g:x", "live"), now).unwrap();
        assert!(matches!(
            events(&mut q)[..],
            [QueueEvent::Started { live: true, .. }]
        ));
        assert_eq!(q.current().unwrap().state, TalkState::Playing);
        // 200 frames sent two per message every 40 ms, arriving with 0-30 ms
        // of jitter (reordering messages) and one duplicate message.
        let mut arrivals: Vec<(u64, u64)> = (0..100u64)
            .map(|m| (now + 50 + m * 40 + (m * 7919) % 31, m * 2))
            .collect();
        arrivals.push((now + 50 + 33 * 40 + 60, 66));
        arrivals.sort();
        let mut next = 0;
        let mut played = Vec::new();
        let mut concealed = 0;
        let mut ended = false;
        for _ in 0..1_000 {
            while next < arrivals.len() && arrivals[next].0 <= now {
                let (at, first) = arrivals[next];
                q.push(
                    "!g:x",
                    "live",
                    first,
                    5_000_000 + first * FRAME_MS,
                    vec![pkt(1, first), pkt(1, first + 1)],
                    at,
                )
                .unwrap();
                next += 1;
            }
            if next == arrivals.len() && !ended {
                q.talk_ended("live", now).unwrap();
                ended = true;
            }
            match q.tick(now) {
                Tick::Idle => break,
                Tick::Play { playout, .. } => match playout {
                    Playout::Frame(p) => played.push(id_of(&p).1),
                    Playout::Conceal { .. } => concealed += 1,
                    _ => {}
                },
            }
            q.check_invariants();
            now += FRAME_MS;
        }
        assert!(played.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(
            played,
            (0..200).collect::<Vec<_>>(),
            "{concealed} concealed"
        );
        assert_eq!(q.stats().duplicates, 2);
        assert_eq!(q.stats().stored_frames, 0);
        assert!(events(&mut q).contains(&QueueEvent::Finished {
            session: "live".into()
        }));
        // No Persist for a talk played live.
        assert!(!events(&mut q)
            .iter()
            .any(|e| matches!(e, QueueEvent::Persist { .. })));
    }

    #[test]
    fn talk_still_receiving_when_dequeued_plays_to_its_end() {
        let mut q = queue();
        let mut now = 0;
        q.set_user_talking(true);
        q.talk_started(meta("!g:x", "t"), now).unwrap();
        // 200 ms arrives while the user talks; the rest arrives while it
        // plays, in bursts of 400 ms every 400 ms (a federation-like link),
        // so the cursor catches up with the live edge and waits at times.
        push_range(&mut q, "!g:x", "t", 1, 0, 10, now);
        q.set_user_talking(false);
        let mut played = Vec::new();
        let mut waits = 0;
        let mut sent = 10;
        for _ in 0..2_000 {
            now += FRAME_MS;
            if now % 400 == 0 && sent < 200 {
                let to = (sent + 20).min(200);
                push_range(&mut q, "!g:x", "t", 1, sent, to, now);
                sent = to;
                if sent >= 200 {
                    q.talk_ended("t", now).unwrap();
                }
            }
            match q.tick(now) {
                Tick::Idle => break,
                Tick::Play { playout, .. } => match playout {
                    Playout::Frame(p) => played.push(id_of(&p).1),
                    Playout::Wait => waits += 1,
                    other => panic!("{other:?}"),
                },
            }
        }
        assert_eq!(played, (0..200).collect::<Vec<_>>());
        assert!(waits > 0 && waits < 100, "{waits}");
        let ev = events(&mut q);
        assert!(ev.contains(&QueueEvent::Finished {
            session: "t".into()
        }));
        assert!(ev.contains(&QueueEvent::Persist {
            session: "t".into()
        }));
    }

    #[test]
    fn user_talking_pauses_a_live_talk_and_it_resumes_losslessly() {
        let mut q = queue();
        let mut now = 0;
        q.talk_started(meta("!g:x", "t"), now).unwrap();
        let mut played = Vec::new();
        let mut sent = 0;
        for step in 0..1_000 {
            now += FRAME_MS;
            if now % 40 == 0 && sent < 300 {
                push_range(&mut q, "!g:x", "t", 1, sent, sent + 2, now);
                sent += 2;
                if sent == 300 {
                    q.talk_ended("t", now).unwrap();
                }
            }
            if step == 60 {
                q.set_user_talking(true);
                assert_eq!(q.current().unwrap().state, TalkState::Paused);
            }
            if step == 160 {
                q.set_user_talking(false);
            }
            match q.tick(now) {
                Tick::Idle if step > 160 => break,
                Tick::Idle => assert!((60..160).contains(&step), "{step}"),
                Tick::Play { playout, .. } => {
                    if let Playout::Frame(p) = playout {
                        played.push(id_of(&p).1)
                    }
                }
            }
            q.check_invariants();
        }
        assert_eq!(played, (0..300).collect::<Vec<_>>());
        let ev = events(&mut q);
        assert!(ev.contains(&QueueEvent::Paused {
            session: "t".into()
        }));
        assert!(ev.contains(&QueueEvent::Resumed {
            session: "t".into()
        }));
    }

    #[test]
    fn replay_waits_for_a_hole_then_conceals_and_jumps_long_gaps() {
        let mut q = queue();
        q.set_user_talking(true);
        let mut now = 0;
        q.talk_started(meta("!g:x", "t"), now).unwrap();
        push_range(&mut q, "!g:x", "t", 1, 0, 3, now);
        push_range(&mut q, "!g:x", "t", 1, 4, 6, now + 100);
        q.set_user_talking(false);
        let mut out = Vec::new();
        for _ in 0..5 {
            now += FRAME_MS;
            out.push(q.tick(now));
        }
        let kinds: Vec<_> = out
            .iter()
            .map(|t| match t {
                Tick::Play { playout, .. } => match playout {
                    Playout::Frame(p) => format!("f{}", id_of(p).1),
                    Playout::Conceal { next } => format!("c{}", next.is_some()),
                    Playout::Wait => "w".into(),
                    Playout::Finished => "end".into(),
                },
                Tick::Idle => "idle".into(),
            })
            .collect();
        // Frame 3 is missing; frame 4 came at 100 ms: wait until 600 ms.
        assert_eq!(kinds, ["f0", "f1", "f2", "w", "w"]);
        now = 100 + REPLAY_GRACE_MS;
        match q.tick(now) {
            Tick::Play {
                playout: Playout::Conceal { next: Some(p) },
                ..
            } => assert_eq!(id_of(&p).1, 4),
            other => panic!("{other:?}"),
        }
        // A long gap once ended: MAX_REPLAY_GAP_FRAMES concealments, then on.
        push_range(&mut q, "!g:x", "t", 1, 1_000, 1_002, now);
        q.talk_ended("t", now).unwrap();
        let played = {
            let mut frames = Vec::new();
            let mut conceals = 0;
            loop {
                now += FRAME_MS;
                match q.tick(now) {
                    Tick::Idle => break,
                    Tick::Play { playout, .. } => match playout {
                        Playout::Frame(p) => frames.push(id_of(&p).1),
                        Playout::Conceal { .. } => conceals += 1,
                        other => panic!("{other:?}"),
                    },
                }
            }
            assert_eq!(conceals, MAX_REPLAY_GAP_FRAMES as usize);
            frames
        };
        assert_eq!(played, [4, 5, 1_000, 1_001]);
    }

    #[test]
    fn stalled_talk_is_ended_and_does_not_block_the_queue() {
        let mut q = queue();
        let mut now = 0;
        q.talk_started(meta("!g:x", "gone"), now).unwrap();
        push_range(&mut q, "!g:x", "gone", 1, 0, 5, now);
        q.talk_started(meta("!g:x", "next"), now).unwrap();
        push_range(&mut q, "!g:x", "next", 2, 0, 5, now);
        q.talk_ended("next", now).unwrap();
        let played = play_until_idle(&mut q, &mut now, 2_000);
        assert_eq!(played.sessions_in_order(), ["gone", "next"]);
        assert!(now >= STALL_TIMEOUT_MS);
        assert_eq!(played.frames_of("gone"), (0..5).collect::<Vec<_>>());
    }

    #[test]
    fn skip_and_play_now_order() {
        let mut q = queue();
        q.set_user_talking(true);
        let now = 0;
        for (k, s) in ["a", "b", "c", "d"].iter().enumerate() {
            q.talk_started(meta("!g:x", s), now).unwrap();
            push_range(&mut q, "!g:x", s, k as u8, 0, 3, now);
            q.talk_ended(s, now).unwrap();
        }
        q.skip("b").unwrap();
        assert_eq!(q.skip("b"), Err(QueueError::NotWaiting("b".into())));
        q.play_now("d").unwrap();
        q.play_now("c").unwrap();
        q.set_user_talking(false);
        let mut now = now;
        // The current talk can be skipped too.
        now += FRAME_MS;
        assert!(matches!(q.tick(now), Tick::Play { ref session, .. } if session == "d"));
        q.skip("d").unwrap();
        let played = play_until_idle(&mut q, &mut now, 100);
        assert_eq!(played.sessions_in_order(), ["c", "a"]);
        let skipped: Vec<_> = events(&mut q)
            .into_iter()
            .filter_map(|e| match e {
                QueueEvent::Skipped { session } => Some(session),
                _ => None,
            })
            .collect();
        assert_eq!(skipped, ["b", "d"]);
        assert_eq!(
            q.push("!g:x", "d", 3, 0, vec![pkt(0, 3)], now),
            Err(QueueError::TalkOver("d".into()))
        );
    }

    #[test]
    fn hostile_input_is_refused_or_ignored() {
        let mut q = MixingQueue::new(small_limits()).unwrap();
        let now = 0;
        assert_eq!(
            q.push("!g:x", "ghost", 0, 0, vec![pkt(0, 0)], now),
            Err(QueueError::UnknownTalk("ghost".into()))
        );
        assert_eq!(
            q.talk_ended("ghost", now),
            Err(QueueError::UnknownTalk("ghost".into()))
        );
        assert!(matches!(
            q.talk_started(meta("!g:x", &"s".repeat(300)), now),
            Err(QueueError::BadId {
                what: "session",
                ..
            })
        ));
        assert!(matches!(
            q.talk_started(meta("", "s"), now),
            Err(QueueError::BadId { what: "group", .. })
        ));
        q.set_user_talking(true);
        q.talk_started(meta("!g:x", "t"), now).unwrap();
        assert_eq!(
            q.talk_started(meta("!g:x", "t"), now),
            Err(QueueError::DuplicateTalk("t".into()))
        );
        assert!(matches!(
            q.push("!other:x", "t", 0, 0, vec![pkt(0, 0)], now),
            Err(QueueError::GroupMismatch { .. })
        ));
        assert!(matches!(
            q.push("!g:x", "t", 0, 0, vec![vec![1]; 51], now),
            Err(QueueError::TooManyPackets { count: 51, max: 50 })
        ));
        assert_eq!(
            q.push("!g:x", "t", 0, 0, vec![vec![1], vec![]], now),
            Err(QueueError::BadPacket {
                index: 1,
                len: 0,
                max: MAX_PACKET_BYTES
            })
        );
        assert!(matches!(
            q.push("!g:x", "t", 0, 0, vec![vec![1; MAX_PACKET_BYTES + 1]], now),
            Err(QueueError::BadPacket { index: 0, .. })
        ));
        assert_eq!(
            q.stats().stored_frames,
            0,
            "refused messages change nothing"
        );
        // Absurd indices and timestamps: dropped, cut once, no overflow.
        let s = q
            .push("!g:x", "t", u64::MAX - 1, u64::MAX, vec![vec![1]; 5], now)
            .unwrap();
        assert_eq!(s.dropped, 5);
        assert_eq!(
            q.push("!g:x", "t", 1 << 40, 0, vec![vec![1]], now)
                .unwrap()
                .dropped,
            1
        );
        let cuts = events(&mut q)
            .into_iter()
            .filter(|e| matches!(e, QueueEvent::Cut { .. }))
            .count();
        assert_eq!(cuts, 1);
        // Duplicates are counted and played once.
        for _ in 0..3 {
            q.push("!g:x", "t", 0, 0, vec![pkt(1, 0), pkt(1, 1)], now)
                .unwrap();
        }
        assert_eq!(q.stats().duplicates, 4);
        q.talk_ended("t", now).unwrap();
        q.set_user_talking(false);
        let mut now = now;
        let played = play_until_idle(&mut q, &mut now, 50);
        assert_eq!(played.frames_of("t"), [0, 1]);
        assert_eq!(
            q.talk_ended("t", now),
            Err(QueueError::TalkOver("t".into()))
        );
        assert_eq!(
            q.talk_started(meta("!g:x", "t"), now),
            Err(QueueError::TalkOver("t".into()))
        );
    }

    /// xorshift64*, seeded.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn random_operations_keep_bounds_and_never_panic() {
        let mut rng = Rng(0x5eed_1234);
        let mut q = MixingQueue::new(small_limits()).unwrap();
        let groups = ["!a:x", "!b:x", "!c:x"];
        let mut now = 0u64;
        // (session, group), newest last; most operations hit recent talks.
        let mut talks: Vec<(String, &str)> = Vec::new();
        let pick = |rng: &mut Rng, talks: &[(String, &'static str)]| {
            let recent = (talks.len() as u64).min(6);
            let back = if rng.below(10) == 0 {
                rng.below(talks.len() as u64)
            } else {
                rng.below(recent)
            };
            talks[talks.len() - 1 - back as usize].clone()
        };
        for step in 0..60_000u64 {
            now += rng.below(25);
            let g = groups[rng.below(3) as usize];
            let roll = rng.below(100);
            if talks.is_empty() || roll < 2 {
                let s = format!("s{step}");
                let _ = q.talk_started(meta(g, &s), now);
                talks.push((s, g));
                continue;
            }
            let (s, group) = pick(&mut rng, &talks);
            match roll {
                2..=49 => {
                    let group = if rng.below(10) == 0 { g } else { group };
                    let first = match rng.below(20) {
                        0 => rng.next(),
                        1 => rng.below(200),
                        _ => rng.below(110),
                    };
                    let n = rng.below(12) as usize;
                    let packets = (0..n)
                        .map(|k| {
                            let len = match rng.below(50) {
                                0 => rng.below(MAX_PACKET_BYTES as u64 + 2) as usize,
                                _ => 1 + rng.below(80) as usize,
                            };
                            vec![k as u8; len]
                        })
                        .collect();
                    let _ = q.push(group, &s, first, rng.next() % 1_000_000, packets, now);
                }
                50..=52 => {
                    let _ = q.talk_ended(&s, now);
                }
                53 => q.set_user_talking(rng.below(3) == 0),
                54 => {
                    let settings = GroupSettings {
                        muted: rng.below(4) == 0,
                        volume: rng.below(300) as f32 / 100.0,
                        priority: rng.below(5) as i32 - 2,
                    };
                    let _ = q.set_group(g, settings);
                }
                55 => {
                    let _ = q.play_now(&s);
                }
                56 => {
                    let _ = q.skip(&s);
                }
                57..=60 => {
                    let _ = q.poll_event();
                }
                _ => {
                    let _ = q.tick(now);
                }
            }
            if talks.len() > 2_000 {
                talks.drain(..1_000);
            }
            q.check_invariants();
        }
        let stats = q.stats();
        println!("random ops: {stats:?}");
        assert!(stats.evicted_talks > 0);
        assert!(stats.frames_played > 1_000);
        assert!(stats.duplicates > 0 && stats.dropped_frames > 0);
    }

    #[test]
    fn persist_actions_and_restore_keep_order() {
        let mut q = queue();
        q.set_user_talking(true);
        for (k, s) in ["x", "y", "z"].iter().enumerate() {
            q.talk_started(meta("!g:x", s), 0).unwrap();
            push_range(&mut q, "!g:x", s, k as u8, 0, 4, 0);
            q.talk_ended(s, 0).unwrap();
        }
        let saved: Vec<StoredTalk> = events(&mut q)
            .iter()
            .filter_map(|e| match q.persist_action(e) {
                Some(PersistAction::Save(t)) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(saved.len(), 3);
        assert_eq!(saved[1].frames.len(), 4);

        // Restore into a fresh queue, in shuffled order: back in order, held.
        let mut q2 = queue();
        let mut shuffled = saved.clone();
        shuffled.reverse();
        assert!(q2.restore(shuffled, 0).is_empty());
        let listed: Vec<_> = q2
            .unplayed()
            .iter()
            .map(|t| t.meta.session.clone())
            .collect();
        assert_eq!(listed, ["x", "y", "z"]);
        assert!(q2.unplayed().iter().all(|t| t.state == TalkState::Held));
        // Restoring again is refused (already there); new talks come after.
        let refused = q2.restore(saved, 0);
        assert_eq!(refused.len(), 3);
        q2.set_user_talking(true);
        q2.talk_started(meta("!g:x", "new"), 0).unwrap();
        assert_eq!(q2.unplayed().last().unwrap().meta.session, "new");
        assert!(q2.unplayed().last().unwrap().order > 2);
        let ev = events(&mut q2);
        assert_eq!(
            q2.persist_action(&QueueEvent::Finished {
                session: "x".into()
            }),
            Some(PersistAction::Delete {
                session: "x".into()
            })
        );
        assert!(ev.iter().all(|e| q2.persist_action(e).is_none()));
    }
}
