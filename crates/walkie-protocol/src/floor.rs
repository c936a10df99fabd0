//! Floor arbitration for one walkie room, as seen by one client: who may
//! talk, who is heard, and when a silent talker loses the floor.
//!
//! A sans-IO state machine in the shape of `quinn-proto`'s `Connection`:
//! getters (`holder`, `transmitting`), inputs (`press`, `release`,
//! `handle_chunk`, `handle_timeout`, `handle_revoked`), and outputs
//! (`poll_event`, `poll_transmit`, `poll_timeout`, `next_audio_header`).
//! Time is always passed in (`now`: the local wall clock in ms since the Unix
//! epoch, which the engine should derive from a monotonic clock). This module
//! owns the floor rules; message validation is `crate::audio`'s and
//! consent is `crate::consent`'s (the engine only hands in chunks from
//! devices allowed to talk).
//!
//! # Rules
//!
//! 1. **Claim.** Every message of a talk session carries its `start_ts` (the
//!    talker's clock when it pressed), so the first message a client sees of
//!    a session — normally `seq` 0, possibly sent before any audio — is the
//!    claim. Pressing while the floor is held by someone else yields
//!    [`FloorEvent::Busy`] and sends nothing.
//! 2. **Order.** Claims are totally ordered by
//!    `(start_ts, user_id, device_id, session_id)` (bytewise strings). The
//!    holder is the *lowest live* claim. Every client computes it the same
//!    way, so once the same messages have arrived everywhere all clients
//!    agree. A local talker that learns of a lower live claim stops
//!    ([`FloorEvent::StopTransmitting`] with [`StopReason::LostTo`], then
//!    [`FloorEvent::Busy`]); a listener already playing B that learns of a
//!    lower claim A switches to A. At most one remote holder is announced
//!    ([`FloorEvent::Holder`]) at a time, and only the holder's audio is
//!    [`ChunkVerdict::Play`]ed. A claim that has already ended when it is
//!    first seen does not stop a local talker: its talk is over.
//! 3. **Lease.** Each accepted message renews the session's lease to
//!    `now + lease_ms` (local clock, so skew does not matter); `end: true`
//!    releases; a session whose lease runs out has ended. A local talker
//!    with nothing to send emits a frameless keep-alive every `lease_ms / 4`
//!    (e.g. while the capture device is still starting).
//! 4. **Limits.** A talk lasts at most `max_talk_ms`: the talker stops
//!    itself, and receivers end a session whose `ts - start_ts` exceeds
//!    `max_talk_ms + MAX_TALK_SLACK_MS` (judged on message content alone, so
//!    every receiver ends it at the same message).
//! 5. **Freshness and replay.** A message whose `ts` is more than
//!    [`MAX_FUTURE_MS`] ahead of local now, or more than [`MAX_AGE_MS`]
//!    behind it, is ignored. A session that ended (released, expired,
//!    capped, superseded or revoked) is remembered and never accepted again
//!    until its messages could no longer pass the freshness check anyway
//!    ([`Floor::memory_horizon_ms`]), with at most [`MAX_REMEMBERED`] entries.
//!    Sequence numbers are checked against a 64-message sliding window, so
//!    duplicates are dropped while reordered messages still count. A newer
//!    session (greater `(start_ts, session_id)`) from the same device ends
//!    the older ones, and an older one seen afterwards is ignored. A claim
//!    whose `start_ts` is more than [`MAX_FUTURE_MS`] ahead is refused.
//!
//! 6. **Collision window.** Each live claim has the local time it was first
//!    seen (a local talk: the press). A claim first seen more than
//!    [`COLLISION_WINDOW_MS`] after another live claim, or whose `start_ts`
//!    was already more than [`MAX_AGE_MS`] old when first seen (a talk
//!    joined in the middle), is *late*: it takes part only once the claims
//!    it is late against have ended. The holder is the lowest claim that is
//!    not late; a local talker stops only for such a claim; a listener never
//!    switches away from a talker it has heard for longer than the window.
//!    Honest collisions reach every client within one network delay of each
//!    other, so while that delay is under the window every client still
//!    picks the lowest claim; a member who back-dates a claim later (to the
//!    talker alone, or to one listener) is ignored.
//! 7. **One hold per user.** A user's sessions that follow each other with
//!    less than [`CHAIN_GAP_MS`] between them (a new one superseding a live
//!    one included) form one hold of the floor. A hold that has lasted
//!    `max_talk_ms + MAX_TALK_SLACK_MS` at this client is ended
//!    ([`EndReason::MaxTalk`]), and the user's claims are refused for
//!    `lease_ms` (the cool-down), so nobody holds the floor past
//!    `max_talk_ms` plus the slack by chaining sessions.
//!
//! 9. **A collision loser never surfaces later.** A claim that started
//!    after a talk's claim, within the collision window, and more than
//!    [`RELEASE_SKEW_MS`] before that talk's `end` lost a collision with it
//!    (an honest client presses only on a free floor); once that talk is
//!    released the loser never becomes the holder here, even when its claim
//!    arrives late (across a slow federation link, after the winner's
//!    `end`).
//!
//! Residual risk: a device whose clock runs behind by up to
//! [`MAX_AGE_MS`] minus the network delay gets earlier `start_ts`s and so
//! wins overlapping claims it should have lost. Every client still agrees,
//! so this is unfair, not divergent. Clients can estimate each peer's skew
//! from `arrival - ts` and warn.

use std::collections::{HashMap, VecDeque};

use crate::{
    ChunkHeader, DeviceId, RoomId, SessionId, UserId, ValidatedChunk, WalkieGroup, FRAME_MS,
    MAX_SEQ,
};

#[cfg(test)]
mod sim;

/// How far ahead of local now a message's `ts` may be: tolerated clock skew
/// (a message cannot arrive before it is sent, so only skew makes it look
/// early). A talker whose clock is ahead only hurts itself (later claims).
pub const MAX_FUTURE_MS: u64 = 1_000;
/// How far behind local now a message's `ts` may be: the first burst of a
/// talk across a 1 s federation link arrived 5.2 s after capture (the Olm
/// key claim's round trip, then Synapse's one transaction in flight per
/// destination), plus [`MAX_FUTURE_MS`] of skew and margin. Later than
/// this, audio is useless and a claim could be a replay.
pub const MAX_AGE_MS: u64 = 8_000;
/// Slack on `max_talk_ms` when receivers judge `ts - start_ts`.
pub const MAX_TALK_SLACK_MS: u64 = 500;
/// Width of the per-session replay window, in sequence numbers.
pub const SEQ_WINDOW: u32 = 64;
/// Cap on remembered ended sessions (oldest forgotten first).
pub const MAX_REMEMBERED: usize = 4_096;
/// Cap on simultaneously live remote sessions tracked in one room.
pub const MAX_LIVE_SESSIONS: usize = 64;
/// Collision window: a claim first seen more than this long after another
/// live claim was first seen (at this client; our own claim: at the press)
/// arrived too late to contest it, whatever its `start_ts` says. An honest
/// claim reaches a client within the largest one-way delay (measured: 19–29
/// ms on one homeserver, up to 3.1 s across a 1 s federation link) plus
/// clock skew, so honest collisions are still resolved by the order; a
/// back-dated claim that turns up later cannot cut an established talker.
/// (3 s was too short: the simulator's bursty federation model then had two
/// talkers each keeping the floor, property (g).)
pub const COLLISION_WINDOW_MS: u64 = 5_000;
/// A user's new session that starts while another of its sessions is live,
/// or within this long of the last one ending, continues the same hold of
/// the floor (see [`Floor`]'s rule 6).
pub const CHAIN_GAP_MS: u64 = 1_000;
/// Our own sessions chain when less than this lies between them: receivers
/// may see a gap up to one collision window shorter than we do.
pub const LOCAL_CHAIN_GAP_MS: u64 = CHAIN_GAP_MS + COLLISION_WINDOW_MS;
/// A claim is a collision loser of a released talk (rule 9) only if it
/// started more than this before that talk's `end` (sender clocks): the
/// skew tolerated between two clients, so that an honest next talker, who
/// pressed after the `end` reached it, is never taken for a loser. (200 ms
/// was too little: the simulator, clocks ±300 ms, found it.)
pub const RELEASE_SKEW_MS: u64 = MAX_FUTURE_MS;
/// Released talks remembered for rule 9.
const RELEASED_KEPT: usize = 32;
/// Cap on users (and devices) tracked for holds, cool-downs and newest
/// sessions (oldest forgotten first). Senders reach the floor only with a
/// consent that counts, which the engine caps far lower.
pub const MAX_TRACKED_USERS: usize = 1_024;

/// Floor parameters; must be the same at every client of the room, so they
/// come from the room's `org.matrix.msc4002.walkie` state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloorConfig {
    pub lease_ms: u64,
    pub max_talk_ms: u64,
}

impl FloorConfig {
    pub fn from_group(group: &WalkieGroup) -> Self {
        Self {
            lease_ms: group.lease_ms,
            max_talk_ms: group.max_talk_ms,
        }
    }

    /// How long a local talker may stay silent before a keep-alive.
    pub fn keepalive_ms(&self) -> u64 {
        (self.lease_ms / 4).max(FRAME_MS)
    }
}

impl Default for FloorConfig {
    fn default() -> Self {
        Self::from_group(&WalkieGroup::default())
    }
}

/// One talk session's claim. The derived order is the floor order: lowest
/// wins (fields compare in declaration order).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    pub start_ts: u64,
    pub user_id: UserId,
    pub device_id: DeviceId,
    pub session_id: SessionId,
}

type SessionKey = (UserId, DeviceId, SessionId);
type DeviceKey = (UserId, DeviceId);

impl Claim {
    fn key(&self) -> SessionKey {
        (
            self.user_id.clone(),
            self.device_id.clone(),
            self.session_id.clone(),
        )
    }
}

/// Why the local talk stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The user released.
    Released,
    /// A lower claim is live: this client lost the floor to it.
    LostTo(Claim),
    /// `max_talk_ms` reached.
    MaxTalk,
    /// This device's talk consent was withdrawn.
    Revoked,
}

/// Why a remote talk ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `end: true` received.
    Released,
    /// Silent for `lease_ms`.
    LeaseExpired,
    /// Exceeded `max_talk_ms`.
    MaxTalk,
    /// The same device started a newer session.
    Superseded,
    /// The talker's consent was withdrawn ([`Floor::handle_revoked`]).
    Revoked,
}

/// What the application should do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FloorEvent {
    /// We hold the floor: start capture and send (talk-permit cue).
    StartTransmitting {
        session_id: SessionId,
        start_ts: u64,
    },
    /// Stop capture; the final `end: true` message is in `poll_transmit`.
    StopTransmitting {
        session_id: SessionId,
        reason: StopReason,
    },
    /// Someone else holds the floor (busy tone, show who).
    Busy { holder: Claim },
    /// A remote talker now holds the floor: play this session only (stop
    /// playing any other).
    Holder { claim: Claim },
    /// The announced remote holder's talk is over (drain its audio).
    TalkEnded { claim: Claim, reason: EndReason },
    /// Nobody holds the floor.
    Free,
}

/// Why a received chunk was ignored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("chunk is for another room")]
    WrongRoom,
    #[error("chunk is from this device")]
    OwnDevice,
    #[error("session already ended")]
    Ended,
    #[error("a newer session of the same device exists")]
    Superseded,
    #[error("ts {ts} is more than {MAX_FUTURE_MS} ms ahead of now {now}")]
    FromFuture { ts: u64, now: u64 },
    #[error("ts {ts} is more than {MAX_AGE_MS} ms behind now {now}")]
    Stale { ts: u64, now: u64 },
    #[error("talk exceeds max_talk_ms")]
    OverMaxTalk,
    #[error("duplicate seq {0}")]
    Duplicate(u32),
    #[error("seq {seq} is older than the replay window (highest {highest})")]
    SeqTooOld { seq: u32, highest: u32 },
    #[error("start_ts differs from the session's claim")]
    StartChanged,
    #[error("too many live sessions in this room")]
    TooManySessions,
    #[error("the sender held the floor for max_talk_ms and is cooling down")]
    CoolingDown,
}

impl Rejection {
    /// A short name of the reason, one per kind (for rate-limited logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::WrongRoom => "wrong room",
            Rejection::OwnDevice => "own device",
            Rejection::Ended => "ended",
            Rejection::Superseded => "superseded",
            Rejection::FromFuture { .. } => "from the future",
            Rejection::Stale { .. } => "stale",
            Rejection::OverMaxTalk => "over max talk",
            Rejection::Duplicate(_) => "duplicate",
            Rejection::SeqTooOld { .. } => "seq too old",
            Rejection::StartChanged => "start changed",
            Rejection::TooManySessions => "too many sessions",
            Rejection::CoolingDown => "cooling down",
        }
    }
}

/// What to do with a received chunk's frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// From the floor holder (or its final message): feed the jitter buffer.
    Play,
    /// Valid and counted for arbitration, but not the holder: drop frames.
    Track,
    /// Ignored entirely.
    Ignored(Rejection),
}

struct Remote {
    claim: Claim,
    /// Local time this claim was first seen; `u64::MAX` for a claim whose
    /// `start_ts` was already stale then (late against every other claim).
    since: u64,
    /// Rule 9: a collision loser of a talk since released; never the holder.
    beaten: bool,
    highest_seq: u32,
    /// Bit i set: `highest_seq - i` seen.
    window: u64,
    lease_until: u64,
    forget_at: u64,
}

struct Local {
    claim: Claim,
    /// Local time of the press.
    since: u64,
    next_seq: u32,
    last_sent: u64,
    talk_deadline: u64,
}

/// Source of fresh session ids (random in production, a counter in tests).
pub type SessionIdSource = Box<dyn FnMut() -> SessionId + Send>;

/// The floor of one room at one client. See the module docs for the rules.
pub struct Floor {
    room_id: RoomId,
    user_id: UserId,
    device_id: DeviceId,
    config: FloorConfig,
    new_session_id: SessionIdSource,
    local: Option<Local>,
    last_local_start: Option<u64>,
    /// Our own hold (rule 7): (press that began it, last time we talked).
    local_hold: Option<(u64, u64)>,
    /// Our presses are refused until then (we held the floor to the cap).
    local_cooldown_until: u64,
    remote: Vec<Remote>,
    remembered: HashMap<SessionKey, u64>,
    latest: HashMap<DeviceKey, (u64, SessionId, u64)>,
    /// Per remote user: (local time its current hold began, local time one
    /// of its sessions was last live).
    holds: HashMap<UserId, (u64, u64)>,
    /// Per remote user: claims refused until this local time.
    cooldowns: HashMap<UserId, u64>,
    announced: Option<Claim>,
    /// Talks that ended with their `end` message (ours too): the claim and
    /// the end's `ts` (rule 9).
    released: VecDeque<(Claim, u64)>,
    just_ended: Vec<(Claim, EndReason)>,
    events: VecDeque<FloorEvent>,
    transmit: VecDeque<ChunkHeader>,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor")
            .field("room_id", &self.room_id)
            .field("me", &(&self.user_id, &self.device_id))
            .field("holder", &self.announced)
            .field("live_remote", &self.remote.len())
            .finish_non_exhaustive()
    }
}

impl Floor {
    /// A floor for `room_id` at the client `user_id`/`device_id`.
    pub fn new(
        room_id: RoomId,
        user_id: UserId,
        device_id: DeviceId,
        config: FloorConfig,
        new_session_id: SessionIdSource,
    ) -> Self {
        Self {
            room_id,
            user_id,
            device_id,
            config,
            new_session_id,
            local: None,
            last_local_start: None,
            local_hold: None,
            local_cooldown_until: 0,
            remote: Vec::new(),
            remembered: HashMap::new(),
            latest: HashMap::new(),
            holds: HashMap::new(),
            cooldowns: HashMap::new(),
            announced: None,
            released: VecDeque::new(),
            just_ended: Vec::new(),
            events: VecDeque::new(),
            transmit: VecDeque::new(),
        }
    }

    // ------------------------------------------------------------- getters

    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    pub fn config(&self) -> FloorConfig {
        self.config
    }

    /// The current holder (ourselves while transmitting), if any.
    pub fn holder(&self) -> Option<&Claim> {
        self.announced.as_ref()
    }

    /// Our own claim while we transmit.
    pub fn transmitting(&self) -> Option<&Claim> {
        self.local.as_ref().map(|l| &l.claim)
    }

    pub fn is_transmitting(&self) -> bool {
        self.local.is_some()
    }

    /// Whether the holder is this device.
    pub fn holder_is_local(&self) -> bool {
        self.announced.as_ref().is_some_and(|c| self.is_me(c))
    }

    /// Until when our presses are refused because we held the floor for
    /// `max_talk_ms` (rule 7), if they are at `now`.
    pub fn cooling_down(&self, now: u64) -> Option<u64> {
        (self.local_cooldown_until > now).then_some(self.local_cooldown_until)
    }

    /// How long an ended session is remembered: after this, any message of
    /// it fails the freshness check (its `ts` is at most
    /// `start_ts + max_talk_ms + slack`, and `start_ts` was at most
    /// `MAX_FUTURE_MS` ahead when first seen).
    pub fn memory_horizon_ms(&self) -> u64 {
        MAX_FUTURE_MS + self.config.max_talk_ms + MAX_TALK_SLACK_MS + MAX_AGE_MS
    }

    // -------------------------------------------------------------- inputs

    /// Updates the parameters (the group state changed). Running leases
    /// keep their deadlines.
    pub fn set_config(&mut self, config: FloorConfig) {
        self.config = config;
    }

    /// The user pressed talk. Starts a session (and queues its claim) if the
    /// floor is free, else emits [`FloorEvent::Busy`]. No-op while already
    /// transmitting.
    pub fn press(&mut self, now: u64) {
        self.advance(now);
        if self.local.is_some() || self.cooling_down(now).is_some() {
            return;
        }
        if let Some(holder) = self.lowest_contender() {
            self.events.push_back(FloorEvent::Busy { holder });
            return;
        }
        // Our own start_ts strictly increases, or receivers would take the
        // new session for an old, superseded one.
        let start_ts = match self.last_local_start {
            Some(last) if last >= now => last.saturating_add(1),
            _ => now,
        };
        self.last_local_start = Some(start_ts);
        let claim = Claim {
            start_ts,
            user_id: self.user_id.clone(),
            device_id: self.device_id.clone(),
            session_id: (self.new_session_id)(),
        };
        self.transmit.push_back(ChunkHeader {
            session_id: claim.session_id.clone(),
            seq: 0,
            start_ts,
            ts: start_ts,
            end: false,
        });
        self.events.push_back(FloorEvent::StartTransmitting {
            session_id: claim.session_id.clone(),
            start_ts,
        });
        // Rule 7 at home, stricter than receivers apply it: a gap they may
        // see shortened by up to the collision window still chains.
        let hold_since = match self.local_hold {
            Some((since, last)) if now.saturating_sub(last) <= LOCAL_CHAIN_GAP_MS => since,
            _ => now,
        };
        self.local_hold = Some((hold_since, now));
        let max_talk = self.config.max_talk_ms;
        self.local = Some(Local {
            talk_deadline: start_ts
                .saturating_add(max_talk)
                .min(hold_since.saturating_add(max_talk)),
            since: now,
            claim,
            next_seq: 1,
            last_sent: now,
        });
        self.settle(now);
    }

    /// The user released talk: ends our session (an `end: true` message is
    /// queued). No-op when not transmitting.
    pub fn release(&mut self, now: u64) {
        self.advance(now);
        if self.local.is_some() {
            self.stop_local(StopReason::Released, now);
        }
        self.settle(now);
    }

    /// A validated audio message arrived (the engine has checked that the
    /// sender's device may talk). Returns what to do with its frames; floor
    /// changes are in [`poll_event`](Self::poll_event).
    pub fn handle_chunk(&mut self, chunk: &ValidatedChunk, now: u64) -> ChunkVerdict {
        self.advance(now);
        let before = self.announced.clone();
        let result = self.accept_chunk(chunk, now);
        self.settle(now);
        match result {
            Err(r) => ChunkVerdict::Ignored(r),
            Ok(claim) => {
                if before.as_ref() == Some(&claim) || self.announced.as_ref() == Some(&claim) {
                    ChunkVerdict::Play
                } else {
                    ChunkVerdict::Track
                }
            }
        }
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) passed (calling
    /// it early or late is harmless).
    pub fn handle_timeout(&mut self, now: u64) {
        self.advance(now);
    }

    /// The device's talk consent was revoked or expired: its live sessions
    /// end (ours stops with [`StopReason::Revoked`]).
    pub fn handle_revoked(&mut self, user_id: &UserId, device_id: &DeviceId, now: u64) {
        self.advance(now);
        if &self.user_id == user_id && &self.device_id == device_id && self.local.is_some() {
            self.stop_local(StopReason::Revoked, now);
        }
        while let Some(i) = self
            .remote
            .iter()
            .position(|r| &r.claim.user_id == user_id && &r.claim.device_id == device_id)
        {
            self.end_remote(i, EndReason::Revoked, now);
        }
        self.settle(now);
    }

    /// The user is no longer a joined member (left, kicked, banned): all
    /// its devices' live sessions end at once, ours too if it is us.
    pub fn handle_user_left(&mut self, user_id: &UserId, now: u64) {
        self.advance(now);
        if &self.user_id == user_id && self.local.is_some() {
            self.stop_local(StopReason::Revoked, now);
        }
        while let Some(i) = self.remote.iter().position(|r| &r.claim.user_id == user_id) {
            self.end_remote(i, EndReason::Revoked, now);
        }
        self.settle(now);
    }

    // ------------------------------------------------------------- outputs

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<FloorEvent> {
        self.events.pop_front()
    }

    /// Next frameless control message to send (claim, keep-alive, end) to
    /// every receiving device. Drain this before sending audio so sequence
    /// numbers go out in order.
    pub fn poll_transmit(&mut self) -> Option<ChunkHeader> {
        self.transmit.pop_front()
    }

    /// Header for the next audio message of our talk, whose first frame was
    /// captured at `first_frame_ts` (talker clock). `None` when not
    /// transmitting (drop the frames). `ts` is clamped into the talk.
    pub fn next_audio_header(&mut self, first_frame_ts: u64, now: u64) -> Option<ChunkHeader> {
        self.advance(now);
        let max_talk = self.config.max_talk_ms;
        if self.local.as_ref()?.next_seq >= MAX_SEQ {
            self.stop_local(StopReason::MaxTalk, now);
            self.settle(now);
            return None;
        }
        let local = self.local.as_mut()?;
        let start = local.claim.start_ts;
        let header = ChunkHeader {
            session_id: local.claim.session_id.clone(),
            seq: local.next_seq,
            start_ts: start,
            ts: first_frame_ts
                .max(start)
                .min(start.saturating_add(max_talk)),
            end: false,
        };
        local.next_seq += 1;
        local.last_sent = now;
        Some(header)
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout)
    /// must be called: a lease running out, our keep-alive, or our talk cap.
    pub fn poll_timeout(&self) -> Option<u64> {
        let leases = self.remote.iter().map(|r| r.lease_until);
        let holds = self
            .remote
            .iter()
            .filter_map(|r| self.holds.get(&r.claim.user_id))
            .map(|(since, _)| since.saturating_add(self.hold_cap_ms()).saturating_add(1));
        let local = self.local.iter().flat_map(|l| {
            [
                l.talk_deadline,
                l.last_sent.saturating_add(self.config.keepalive_ms()),
            ]
        });
        leases.chain(holds).chain(local).min()
    }

    // ------------------------------------------------------------ internals

    fn is_me(&self, c: &Claim) -> bool {
        c.user_id == self.user_id && c.device_id == self.device_id
    }

    /// Applies everything due at `now`: forgetting, lease expiry, our cap
    /// and keep-alive. Emits the resulting events.
    fn advance(&mut self, now: u64) {
        self.remembered.retain(|_, forget_at| *forget_at > now);
        self.latest.retain(|_, (_, _, forget_at)| *forget_at > now);
        while let Some(i) = self.remote.iter().position(|r| r.lease_until <= now) {
            self.end_remote(i, EndReason::LeaseExpired, now);
        }
        self.cap_holds(now);
        let keepalive = self.config.keepalive_ms();
        let capped = self.local.as_ref().is_some_and(|l| now >= l.talk_deadline);
        if capped {
            self.stop_local(StopReason::MaxTalk, now);
        } else if let Some(local) = self.local.as_mut() {
            if now >= local.last_sent.saturating_add(keepalive) {
                self.transmit.push_back(ChunkHeader {
                    session_id: local.claim.session_id.clone(),
                    seq: local.next_seq,
                    start_ts: local.claim.start_ts,
                    ts: now.max(local.claim.start_ts),
                    end: false,
                });
                local.next_seq += 1;
                local.last_sent = now;
            }
        }
        self.settle(now);
    }

    fn stop_local(&mut self, reason: StopReason, now: u64) {
        let Some(local) = self.local.take() else {
            return;
        };
        if let Some((_, last)) = self.local_hold.as_mut() {
            *last = now;
        }
        if reason == StopReason::MaxTalk {
            self.local_cooldown_until = now.saturating_add(LOCAL_CHAIN_GAP_MS);
        }
        self.note_released(&local.claim, now, now);
        let start = local.claim.start_ts;
        self.transmit.push_back(ChunkHeader {
            session_id: local.claim.session_id.clone(),
            seq: local.next_seq.min(MAX_SEQ),
            start_ts: start,
            ts: now
                .max(start)
                .min(start.saturating_add(self.config.max_talk_ms)),
            end: true,
        });
        self.events.push_back(FloorEvent::StopTransmitting {
            session_id: local.claim.session_id,
            reason,
        });
    }

    fn remember(&mut self, key: SessionKey, forget_at: u64) {
        if self.remembered.len() >= MAX_REMEMBERED && !self.remembered.contains_key(&key) {
            let oldest = self
                .remembered
                .iter()
                .min_by_key(|(_, f)| **f)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.remembered.remove(&k);
            }
        }
        self.remembered.insert(key, forget_at);
    }

    /// The longest one user may hold the floor at this client.
    fn hold_cap_ms(&self) -> u64 {
        self.config.max_talk_ms.saturating_add(MAX_TALK_SLACK_MS)
    }

    /// Rule 7: ends the sessions of every user whose hold has lasted the
    /// cap and starts its cool-down; forgets holds and cool-downs that are
    /// over.
    fn cap_holds(&mut self, now: u64) {
        let cap = self.hold_cap_ms();
        let over: Vec<UserId> = self
            .holds
            .iter()
            .filter(|(_, (since, _))| now.saturating_sub(*since) >= cap)
            .map(|(u, _)| u.clone())
            .filter(|u| self.remote.iter().any(|r| &r.claim.user_id == u))
            .collect();
        for user in over {
            while let Some(i) = self.remote.iter().position(|r| r.claim.user_id == user) {
                self.end_remote(i, EndReason::MaxTalk, now);
            }
            self.holds.remove(&user);
            if self.cooldowns.len() >= MAX_TRACKED_USERS {
                self.cooldowns.retain(|_, until| *until > now);
            }
            if self.cooldowns.len() < MAX_TRACKED_USERS {
                self.cooldowns
                    .insert(user, now.saturating_add(self.config.lease_ms));
            }
        }
        let remote = &self.remote;
        self.holds.retain(|u, (_, last)| {
            remote.iter().any(|r| &r.claim.user_id == u)
                || now.saturating_sub(*last) <= CHAIN_GAP_MS
        });
        self.cooldowns.retain(|_, until| *until > now);
    }

    /// Records that `user` has a live session, claimed at `start_ts`, at
    /// `now` (rule 7). A hold began when it was first seen here or at its
    /// first claim's `start_ts` (plus the tolerated skew), whichever is
    /// earlier: a client that starts in the middle of a chain (or syncs a
    /// backlog of it) caps it as soon as the others do. A sender can move
    /// that start later by at most the skew it is allowed.
    fn note_hold(&mut self, user: &UserId, start_ts: u64, now: u64) {
        let began = now.min(start_ts.saturating_add(MAX_FUTURE_MS));
        if let Some((since, last)) = self.holds.get_mut(user) {
            *since = (*since).min(began);
            *last = now;
            return;
        }
        if self.holds.len() >= MAX_TRACKED_USERS {
            let oldest = self
                .holds
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(u, _)| u.clone());
            if let Some(u) = oldest {
                self.holds.remove(&u);
            }
        }
        self.holds.insert(user.clone(), (began, now));
    }

    /// Live claims (ours included) with the local time each was first seen.
    /// (Beaten claims, rule 9, take no part: they neither hold nor make
    /// others late.)
    fn live_claims(&self) -> impl Iterator<Item = (&Claim, u64)> {
        self.local.iter().map(|l| (&l.claim, l.since)).chain(
            self.remote
                .iter()
                .filter(|r| !r.beaten)
                .map(|r| (&r.claim, r.since)),
        )
    }

    /// Rule 6: whether a claim first seen at `since` arrived too late to
    /// contest some other live claim.
    fn is_late(&self, claim: &Claim, since: u64) -> bool {
        self.live_claims().any(|(other, other_since)| {
            other != claim && since > other_since.saturating_add(COLLISION_WINDOW_MS)
        })
    }

    /// Rule 9: remembers that `claim`'s talk ended with `end_ts`.
    fn note_released(&mut self, claim: &Claim, end_ts: u64, now: u64) {
        let horizon = MAX_AGE_MS + COLLISION_WINDOW_MS;
        self.released
            .retain(|(_, end)| end.saturating_add(horizon) >= now);
        if self.released.len() >= RELEASED_KEPT {
            self.released.pop_front();
        }
        self.released.push_back((claim.clone(), end_ts));
        // Live claims that lost to it and are waiting behind it (not the
        // one being played) will not take over.
        let announced = self.announced.clone();
        for i in 0..self.remote.len() {
            let c = &self.remote[i].claim;
            if Some(c) != announced.as_ref() && self.beaten(c) {
                self.remote[i].beaten = true;
            }
        }
        // And if ours lost to it (its claim reaches us only now, with its
        // end), we stop as everyone else ignores us.
        if self.local.as_ref().is_some_and(|l| self.beaten(&l.claim)) {
            self.stop_local(StopReason::LostTo(claim.clone()), now);
            self.events.push_back(FloorEvent::Busy {
                holder: claim.clone(),
            });
        }
    }

    /// Rule 9: whether `claim` lost a collision with a talk that has since
    /// been released: it started after that talk's claim, within the
    /// collision window, and before its `end`. Its talker stops (or has
    /// stopped) once it learns of the winner; it never holds the floor here.
    fn beaten(&self, claim: &Claim) -> bool {
        self.released.iter().any(|(winner, end_ts)| {
            winner < claim
                && claim.start_ts <= winner.start_ts.saturating_add(COLLISION_WINDOW_MS)
                && claim.start_ts.saturating_add(RELEASE_SKEW_MS) < *end_ts
        })
    }

    /// The lowest live claim that is neither late (rule 6) nor beaten
    /// (rule 9): the holder.
    fn lowest_contender(&self) -> Option<Claim> {
        self.live_claims()
            .filter(|(c, since)| !self.is_late(c, *since))
            .map(|(c, _)| c)
            .min()
            .cloned()
    }

    fn end_remote(&mut self, index: usize, reason: EndReason, now: u64) {
        let r = self.remote.swap_remove(index);
        if let Some((_, last)) = self.holds.get_mut(&r.claim.user_id) {
            *last = now;
        }
        let forget_at = r
            .forget_at
            .max(now.saturating_add(MAX_AGE_MS + MAX_FUTURE_MS));
        self.remember(r.claim.key(), forget_at);
        self.just_ended.push((r.claim, reason));
    }

    /// Checks a chunk against the floor state and records it. Returns the
    /// session's claim if it was accepted.
    fn accept_chunk(&mut self, chunk: &ValidatedChunk, now: u64) -> Result<Claim, Rejection> {
        if chunk.room_id() != &self.room_id {
            return Err(Rejection::WrongRoom);
        }
        if chunk.sender() == &self.user_id && chunk.sender_device() == &self.device_id {
            return Err(Rejection::OwnDevice);
        }
        let h = chunk.header();
        let key: SessionKey = (
            chunk.sender().clone(),
            chunk.sender_device().clone(),
            h.session_id.clone(),
        );
        if self.remembered.contains_key(&key) {
            return Err(Rejection::Ended);
        }
        if h.ts > now.saturating_add(MAX_FUTURE_MS) {
            return Err(Rejection::FromFuture { ts: h.ts, now });
        }
        if h.ts.saturating_add(MAX_AGE_MS) < now {
            return Err(Rejection::Stale { ts: h.ts, now });
        }
        let over_max_talk = h.ts.saturating_sub(h.start_ts)
            > self.config.max_talk_ms.saturating_add(MAX_TALK_SLACK_MS);
        let horizon = now.saturating_add(self.memory_horizon_ms());
        let lease_until = now.saturating_add(self.config.lease_ms);

        if let Some(i) = self.remote.iter().position(|r| r.claim.key() == key) {
            let r = &mut self.remote[i];
            if r.claim.start_ts != h.start_ts {
                return Err(Rejection::StartChanged);
            }
            if over_max_talk {
                self.end_remote(i, EndReason::MaxTalk, now);
                return Err(Rejection::OverMaxTalk);
            }
            if h.seq > r.highest_seq {
                let shift = h.seq - r.highest_seq;
                r.window = if shift >= SEQ_WINDOW {
                    1
                } else {
                    (r.window << shift) | 1
                };
                r.highest_seq = h.seq;
            } else {
                let back = r.highest_seq - h.seq;
                if back >= SEQ_WINDOW {
                    return Err(Rejection::SeqTooOld {
                        seq: h.seq,
                        highest: r.highest_seq,
                    });
                }
                let bit = 1u64 << back;
                if r.window & bit != 0 {
                    return Err(Rejection::Duplicate(h.seq));
                }
                r.window |= bit;
            }
            r.lease_until = r.lease_until.max(lease_until);
            let claim = r.claim.clone();
            self.note_hold(&claim.user_id, claim.start_ts, now);
            if h.end {
                self.note_released(&claim, h.ts, now);
                self.end_remote(i, EndReason::Released, now);
            }
            return Ok(claim);
        }

        // A session we have not seen: this message is its claim.
        if self.cooldowns.get(&key.0).is_some_and(|&until| until > now) {
            return Err(Rejection::CoolingDown);
        }
        if h.start_ts > now.saturating_add(MAX_FUTURE_MS) {
            return Err(Rejection::FromFuture {
                ts: h.start_ts,
                now,
            });
        }
        if over_max_talk {
            self.remember(key, horizon);
            return Err(Rejection::OverMaxTalk);
        }
        let device: DeviceKey = (key.0.clone(), key.1.clone());
        let superseded = self
            .latest
            .get(&device)
            .is_some_and(|(start, sid, _)| (h.start_ts, &h.session_id) < (*start, sid));
        if superseded {
            self.remember(key, horizon);
            return Err(Rejection::Superseded);
        }
        while let Some(i) = self.remote.iter().position(|r| {
            r.claim.user_id == key.0
                && r.claim.device_id == key.1
                && (r.claim.start_ts, &r.claim.session_id) < (h.start_ts, &h.session_id)
        }) {
            self.end_remote(i, EndReason::Superseded, now);
        }
        if self.remote.len() >= MAX_LIVE_SESSIONS {
            return Err(Rejection::TooManySessions);
        }
        if self.latest.len() >= MAX_TRACKED_USERS && !self.latest.contains_key(&device) {
            let oldest = self
                .latest
                .iter()
                .min_by_key(|(_, (_, _, forget_at))| *forget_at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.latest.remove(&k);
            }
        }
        self.latest
            .insert(device, (h.start_ts, h.session_id.clone(), horizon));
        let claim = Claim {
            start_ts: h.start_ts,
            user_id: key.0,
            device_id: key.1,
            session_id: key.2,
        };
        // A claim whose start was already stale when first seen (a talk
        // joined in its middle) is late against every other claim.
        let stale_start = h.start_ts.saturating_add(MAX_AGE_MS) < now;
        self.note_hold(&claim.user_id, claim.start_ts, now);
        let beaten = self.beaten(&claim);
        self.remote.push(Remote {
            claim: claim.clone(),
            since: if stale_start { u64::MAX } else { now },
            beaten,
            highest_seq: h.seq,
            window: 1,
            lease_until,
            forget_at: horizon,
        });
        if h.end {
            self.note_released(&claim, h.ts, now);
            let i = self.remote.len() - 1;
            self.end_remote(i, EndReason::Released, now);
        }
        Ok(claim)
    }

    /// Resolves the floor after inputs: a local talker facing a lower live
    /// claim stops; then the holder (lowest live claim) is recomputed and
    /// changes are announced.
    fn settle(&mut self, now: u64) {
        if let Some(local) = &self.local {
            let winner = self
                .remote
                .iter()
                .filter(|r| r.claim < local.claim && !r.beaten && !self.is_late(&r.claim, r.since))
                .map(|r| &r.claim)
                .min()
                .cloned();
            if let Some(winner) = winner {
                self.stop_local(StopReason::LostTo(winner.clone()), now);
                self.events.push_back(FloorEvent::Busy { holder: winner });
            }
        }
        let holder = self.lowest_contender();
        if holder != self.announced {
            if let Some(old) = self.announced.take() {
                let still_live = self.remote.iter().any(|r| r.claim == old);
                if !self.is_me(&old) && !still_live {
                    let reason = self
                        .just_ended
                        .iter()
                        .find(|(c, _)| *c == old)
                        .map_or(EndReason::LeaseExpired, |(_, r)| *r);
                    self.events
                        .push_back(FloorEvent::TalkEnded { claim: old, reason });
                }
            }
            match &holder {
                Some(c) if !self.is_me(c) => self
                    .events
                    .push_back(FloorEvent::Holder { claim: c.clone() }),
                Some(_) => {}
                None => self.events.push_back(FloorEvent::Free),
            }
            self.announced = holder;
        }
        self.just_ended.clear();
    }
}

#[cfg(test)]
mod tests;
