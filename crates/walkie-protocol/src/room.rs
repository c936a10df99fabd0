//! [`RoomMachine`]: one walkie room as one client sees it — its group
//! marker, its members' consents and its floor — and the admission rules
//! that join them: who may talk, whose audio is played, who is sent audio.
//!
//! Shaped like `quinn-proto`'s `Connection`: getters (`&self`), `handle_*`
//! for what arrives (room state, a validated audio chunk, a timer), mutators
//! for this client's commands (`press`, `send_audio`, `release`,
//! `revoke_own_consent`), and `poll_*` for what the driver must do next:
//! [`poll_transmit`](RoomMachine::poll_transmit) (a message and the devices
//! it goes to), [`poll_event`](RoomMachine::poll_event) (typed events for
//! the shell), [`poll_timeout`](RoomMachine::poll_timeout). Time (ms since
//! the Unix epoch, local clock) is always passed in; nothing here does I/O.
//!
//! The consents it is given ([`ConsentSet`]) are grants the engine has
//! already checked: read from each user's `org.matrix.msc4002.consent`
//! state (state key = that user's id, see [`crate::consent`]), each device's
//! entry counted only if its signature verifies against the device's key
//! and the device is cross-signed by its owner. A device without such a
//! grant does not consent.
//!
//! Admission rules, each with a unit test below:
//! - a room without a group marker (or with one this client does not
//!   understand, or one in an unencrypted room: the engine passes `None`)
//!   is not a walkie group: audio is dropped, presses refused;
//! - only joined members count: a consent of a user whose membership is not
//!   `join` grants nothing, a member who leaves or is kicked stops being
//!   sent to and heard at once (their live talk ends), and this device
//!   neither talks nor receives while its own user is not joined;
//! - received audio counts only while this device consents to receive, and
//!   only from a device that had talk consent at the claim's `start_ts`;
//! - the floor decides which of the admitted talks is played
//!   ([`crate::floor`]);
//! - this device may press only with talk consent at that instant, and not
//!   while someone else holds the floor;
//! - our messages go to the devices that consent to receive at the moment
//!   they are polled for sending, never to this device itself.

use std::collections::{BTreeSet, VecDeque};

use crate::{
    floor::{
        ChunkVerdict, Claim, EndReason, Floor, FloorConfig, FloorEvent, Rejection, SessionIdSource,
        StopReason,
    },
    frames_in, ChunkHeader, ConsentSet, DeviceId, RoomId, SessionId, UserId, ValidatedChunk,
    WalkieGroup,
};

/// A message for the sender: what to send and to which devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub header: ChunkHeader,
    /// Opus packets (empty for a claim, keep-alive or end).
    pub frames: Vec<Vec<u8>>,
    /// The devices that consent to receive now, this device excluded.
    pub to: Vec<(UserId, DeviceId)>,
}

/// What the room reports to its driver, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomEvent {
    /// This device holds the floor: capture and send.
    TransmitStarted { session_id: SessionId },
    /// This device's talk stopped (released, lost, capped, revoked).
    TransmitStopped {
        session_id: SessionId,
        reason: StopReason,
    },
    /// A remote talker holds the floor: play this session only.
    TalkStarted { claim: Claim },
    /// Audio of the playing session. `frame_index` places the first packet
    /// on the talk's 20 ms timeline (0 at the claim's `start_ts`).
    Audio {
        session_id: SessionId,
        seq: u32,
        ts: u64,
        frame_index: u64,
        frames: Vec<Vec<u8>>,
    },
    /// The playing session ended.
    TalkEnded { claim: Claim, reason: EndReason },
    /// Nobody holds the floor.
    FloorFree,
}

/// Why a received chunk was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    #[error("the room is not a walkie group here")]
    NotAGroup,
    #[error("the sender is not a joined member of the room")]
    NotAMember,
    #[error("this device does not consent to receive in this room")]
    NotReceiving,
    #[error("the sending device had no talk consent when the talk began")]
    NoTalkConsent,
    #[error("{0}")]
    Floor(Rejection),
}

impl Dropped {
    /// A short name of the reason, one per kind (for rate-limited logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Dropped::NotAGroup => "not a group",
            Dropped::NotAMember => "not a member",
            Dropped::NotReceiving => "not receiving",
            Dropped::NoTalkConsent => "no talk consent",
            Dropped::Floor(r) => r.kind(),
        }
    }
}

/// Why a press did not give this device the floor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PressError {
    #[error("the room is not a walkie group")]
    NotAGroup,
    #[error("this device has no talk consent in this room")]
    NoConsent,
    #[error("the floor is busy")]
    Busy { holder: Claim },
    #[error("the floor refused the press")]
    Refused,
    #[error("you held the floor for the longest talk allowed; wait a moment")]
    CoolingDown { until: u64 },
}

/// Why our talk can no longer send.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TalkStopped {
    #[error("lost the floor")]
    LostTo(Claim),
    #[error("the talk stopped: {0:?}")]
    Other(StopReason),
    #[error("not transmitting")]
    NotTransmitting,
}

/// One walkie room at one client. See the module docs for the rules.
pub struct RoomMachine {
    user_id: UserId,
    device_id: DeviceId,
    group: Option<WalkieGroup>,
    consents: ConsentSet,
    /// Users whose membership is `join`.
    members: BTreeSet<UserId>,
    floor: Floor,
    /// Why our latest talk stopped, if it did.
    local_stop: Option<StopReason>,
    transmits: VecDeque<(ChunkHeader, Vec<Vec<u8>>)>,
    events: VecDeque<RoomEvent>,
    /// A `Busy` from the floor since the last press.
    busy: Option<Claim>,
}

impl RoomMachine {
    /// A room whose state is `group` (`None`: not a walkie group),
    /// `consents` (verified grants, see the module docs) and joined
    /// `members`, seen by `user_id`'s device `device_id`.
    pub fn new(
        room_id: RoomId,
        user_id: UserId,
        device_id: DeviceId,
        group: Option<WalkieGroup>,
        consents: ConsentSet,
        members: BTreeSet<UserId>,
        session_ids: SessionIdSource,
    ) -> Self {
        let config = group
            .as_ref()
            .map(FloorConfig::from_group)
            .unwrap_or_default();
        let floor = Floor::new(
            room_id,
            user_id.clone(),
            device_id.clone(),
            config,
            session_ids,
        );
        Self {
            user_id,
            device_id,
            group,
            consents,
            members,
            floor,
            local_stop: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            busy: None,
        }
    }

    // ------------------------------------------------------------ getters

    pub fn room_id(&self) -> &RoomId {
        self.floor.room_id()
    }

    /// The group settings, when the room is a walkie group.
    pub fn group(&self) -> Option<&WalkieGroup> {
        self.group.as_ref()
    }

    pub fn is_group(&self) -> bool {
        self.group.is_some()
    }

    pub fn consents(&self) -> &ConsentSet {
        &self.consents
    }

    /// Whether `user` is a joined member.
    pub fn is_member(&self, user: &UserId) -> bool {
        self.members.contains(user)
    }

    /// The devices that consent to receive at `now` and whose user is a
    /// joined member (this device included, if it does).
    pub fn receivers(&self, now: u64) -> Vec<(UserId, DeviceId)> {
        self.consents
            .receivers(now)
            .into_iter()
            .filter(|(u, _)| self.members.contains(u))
            .collect()
    }

    fn may_receive(&self, now: u64) -> bool {
        self.members.contains(&self.user_id)
            && self
                .consents
                .may_receive(&self.user_id, &self.device_id, now)
    }

    fn may_talk(&self, user: &UserId, device: &DeviceId, at: u64) -> bool {
        self.members.contains(user) && self.consents.may_talk(user, device, at)
    }

    /// The floor's state, read-only (the simulator checks it).
    pub fn floor(&self) -> &Floor {
        &self.floor
    }

    /// The remote talker being played, if any.
    pub fn holder(&self) -> Option<&Claim> {
        self.floor.holder()
    }

    /// Our own live talk, if any.
    pub fn transmitting(&self) -> Option<&Claim> {
        self.floor.transmitting()
    }

    /// Why our latest talk stopped (`None` while it runs or before any).
    pub fn local_stop(&self) -> Option<&StopReason> {
        self.local_stop.as_ref()
    }

    // ------------------------------------------------------------- inputs

    /// The room's state was read again: its group marker (`None`: not, or
    /// no longer, a walkie group), all verified consents and the joined
    /// members.
    pub fn handle_state(
        &mut self,
        group: Option<WalkieGroup>,
        consents: ConsentSet,
        members: BTreeSet<UserId>,
        now: u64,
    ) {
        if let Some(g) = &group {
            if self.group.as_ref() != Some(g) {
                self.floor.set_config(FloorConfig::from_group(g));
            }
        }
        let stopped_being_group = group.is_none() && self.group.is_some();
        let left: Vec<UserId> = self.members.difference(&members).cloned().collect();
        self.group = group;
        self.consents = consents;
        self.members = members;
        for user in &left {
            self.floor.handle_user_left(user, now);
        }
        if stopped_being_group && self.floor.is_transmitting() {
            self.floor.release(now);
        }
        // Our consent revoked or lapsed elsewhere (another client of ours,
        // an expiry): our talk stops as if revoked here.
        if self.floor.is_transmitting() && !self.may_talk(&self.user_id, &self.device_id, now) {
            self.floor
                .handle_revoked(&self.user_id, &self.device_id, now);
        }
        self.drain_floor();
    }

    /// A validated audio message arrived from `chunk.sender()`'s device (the
    /// sender as the Olm session authenticated it).
    pub fn handle_chunk(&mut self, chunk: ValidatedChunk, now: u64) -> Result<(), Dropped> {
        if self.group.is_none() {
            return Err(Dropped::NotAGroup);
        }
        if !self.members.contains(chunk.sender()) {
            return Err(Dropped::NotAMember);
        }
        if !self.may_receive(now) {
            return Err(Dropped::NotReceiving);
        }
        if !self.may_talk(
            chunk.sender(),
            chunk.sender_device(),
            chunk.header().start_ts,
        ) {
            return Err(Dropped::NoTalkConsent);
        }
        let verdict = self.floor.handle_chunk(&chunk, now);
        self.drain_floor();
        match verdict {
            ChunkVerdict::Play => {
                let header = chunk.header().clone();
                let frames = chunk.into_frames();
                if !frames.is_empty() {
                    self.events.push_back(RoomEvent::Audio {
                        frame_index: frames_in(header.ts.saturating_sub(header.start_ts)),
                        session_id: header.session_id,
                        seq: header.seq,
                        ts: header.ts,
                        frames,
                    });
                }
                Ok(())
            }
            ChunkVerdict::Track => Ok(()),
            ChunkVerdict::Ignored(rejection) => Err(Dropped::Floor(rejection)),
        }
    }

    /// A deadline from [`poll_timeout`](Self::poll_timeout) passed (early
    /// or late is harmless).
    pub fn handle_timeout(&mut self, now: u64) {
        self.floor.handle_timeout(now);
        self.drain_floor();
    }

    // ----------------------------------------------------------- commands

    /// The user pressed talk: on success this device holds the floor under
    /// the returned session (its claim is queued for sending).
    pub fn press(&mut self, now: u64) -> Result<SessionId, PressError> {
        if self.group.is_none() {
            return Err(PressError::NotAGroup);
        }
        if !self.may_talk(&self.user_id, &self.device_id, now) {
            return Err(PressError::NoConsent);
        }
        self.local_stop = None;
        self.busy = None;
        self.floor.press(now);
        self.drain_floor();
        match (self.floor.transmitting(), self.busy.take()) {
            (Some(claim), _) => Ok(claim.session_id.clone()),
            (None, Some(holder)) => Err(PressError::Busy { holder }),
            (None, None) => Err(match self.floor.cooling_down(now) {
                Some(until) => PressError::CoolingDown { until },
                None => PressError::Refused,
            }),
        }
    }

    /// Queues one message of our talk `session_id`, whose first frame was
    /// captured at `first_frame_ts`, and returns its frames as queued (the
    /// caller journals them without a copy). Fails once that talk has
    /// stopped.
    pub fn send_audio(
        &mut self,
        session_id: &SessionId,
        frames: Vec<Vec<u8>>,
        first_frame_ts: u64,
        now: u64,
    ) -> Result<&[Vec<u8>], TalkStopped> {
        self.floor.handle_timeout(now);
        self.drain_floor();
        match self.floor.next_audio_header(first_frame_ts, now) {
            Some(header) if &header.session_id == session_id => {
                self.transmits.push_back((header, frames));
                Ok(self.transmits.back().map_or(&[], |(_, f)| f.as_slice()))
            }
            _ => {
                self.drain_floor();
                Err(match self.local_stop.clone() {
                    Some(StopReason::LostTo(claim)) => TalkStopped::LostTo(claim),
                    Some(other) => TalkStopped::Other(other),
                    None => TalkStopped::NotTransmitting,
                })
            }
        }
    }

    /// Ends our talk `session_id` if it still holds the floor (its final
    /// message is queued). Harmless when it already stopped.
    pub fn release(&mut self, session_id: &SessionId, now: u64) {
        if self
            .floor
            .transmitting()
            .is_some_and(|c| &c.session_id == session_id)
        {
            self.floor.release(now);
        }
        self.drain_floor();
    }

    /// This device revoked its own consent: it no longer receives, and its
    /// talk (if any) stops at once, before the state event comes back.
    pub fn revoke_own_consent(&mut self, now: u64) {
        self.consents.revoke(&self.user_id, &self.device_id);
        self.floor
            .handle_revoked(&self.user_id, &self.device_id, now);
        self.drain_floor();
    }

    // ------------------------------------------------------------ outputs

    /// The next message to send, in order, with the devices that consent to
    /// receive at `now` (this device excluded).
    pub fn poll_transmit(&mut self, now: u64) -> Option<Transmit> {
        self.drain_floor();
        let (header, frames) = self.transmits.pop_front()?;
        let to = self
            .receivers(now)
            .into_iter()
            .filter(|(u, d)| !(u == &self.user_id && d == &self.device_id))
            .collect();
        Some(Transmit { header, frames, to })
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<RoomEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.floor.poll_timeout()
    }

    /// Moves the floor's outputs into this machine's queues, keeping their
    /// order (control messages before later audio).
    fn drain_floor(&mut self) {
        while let Some(header) = self.floor.poll_transmit() {
            self.transmits.push_back((header, Vec::new()));
        }
        while let Some(event) = self.floor.poll_event() {
            let out = match event {
                FloorEvent::StartTransmitting { session_id, .. } => {
                    RoomEvent::TransmitStarted { session_id }
                }
                FloorEvent::StopTransmitting { session_id, reason } => {
                    self.local_stop = Some(reason.clone());
                    RoomEvent::TransmitStopped { session_id, reason }
                }
                FloorEvent::Busy { holder } => {
                    self.busy = Some(holder);
                    continue;
                }
                FloorEvent::Holder { claim } => RoomEvent::TalkStarted { claim },
                FloorEvent::TalkEnded { claim, reason } => RoomEvent::TalkEnded { claim, reason },
                FloorEvent::Free => RoomEvent::FloorFree,
            };
            self.events.push_back(out);
        }
    }
}

#[cfg(test)]
mod tests;
