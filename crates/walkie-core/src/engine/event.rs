//! [`EngineEvent`]: what the engine reports to its shell, in order, and
//! the typed reasons inside it. Serialises to one JSON object per event
//! (the CLI prints them as lines).

use serde::Serialize;
use walkie_protocol::floor::{Claim, EndReason, StopReason};

/// Why a remote talk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TalkEndReason {
    Released,
    LeaseExpired,
    MaxTalk,
    Superseded,
    Revoked,
}

impl From<EndReason> for TalkEndReason {
    fn from(r: EndReason) -> Self {
        match r {
            EndReason::Released => Self::Released,
            EndReason::LeaseExpired => Self::LeaseExpired,
            EndReason::MaxTalk => Self::MaxTalk,
            EndReason::Superseded => Self::Superseded,
            EndReason::Revoked => Self::Revoked,
        }
    }
}

/// Why our own talk stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TransmitStopReason {
    Released,
    /// Lost a collision to an earlier claim.
    LostTo {
        user_id: String,
        device_id: String,
    },
    MaxTalk,
    Revoked,
}

impl From<&StopReason> for TransmitStopReason {
    fn from(r: &StopReason) -> Self {
        match r {
            StopReason::Released => Self::Released,
            StopReason::LostTo(claim) => Self::LostTo {
                user_id: claim.user_id.to_string(),
                device_id: claim.device_id.to_string(),
            },
            StopReason::MaxTalk => Self::MaxTalk,
            StopReason::Revoked => Self::Revoked,
        }
    }
}

impl std::fmt::Display for TransmitStopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Released => f.write_str("released"),
            Self::LostTo { user_id, device_id } => {
                write!(f, "lost the floor to {user_id} ({device_id})")
            }
            Self::MaxTalk => f.write_str("reached the group's talk-time limit"),
            Self::Revoked => f.write_str("this device's consent was revoked"),
        }
    }
}

/// `user (device)`, as messages name a talker.
pub fn describe(claim: &Claim) -> String {
    format!("{} ({})", claim.user_id, claim.device_id)
}

/// What the engine reports to its shell, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// The first sync finished: room state is known.
    Ready,
    /// The homeserver no longer knows our access token (signed out from
    /// another client, or this device was deleted): sign in again. The
    /// engine stopped syncing; it sends no more requests.
    SignedOut,
    /// The homeserver cannot be reached (a sync failed): nothing is sent or
    /// received until [`EngineEvent::Online`]. The engine keeps retrying.
    Offline { reason: String },
    /// A sync succeeded again after [`EngineEvent::Offline`].
    Online,
    /// A remote talker holds the floor of a room: play only this session.
    TalkStarted {
        room_id: String,
        user_id: String,
        device_id: String,
        session_id: String,
        start_ts: u64,
    },
    /// Opus packets of the playing session (`seq` orders them).
    Audio {
        room_id: String,
        session_id: String,
        seq: u32,
        ts: u64,
        /// The first packet's place on the talk's 20 ms timeline (0 at the
        /// claim's `start_ts`).
        frame_index: u64,
        #[serde(skip)]
        frames: Vec<Vec<u8>>,
        frame_count: usize,
        /// When this client accepted the message (its clock, ms since epoch):
        /// `received_ms - ts` is the transport latency of the first frame.
        received_ms: u64,
    },
    /// The playing session ended (released, lease expired, superseded…).
    TalkEnded {
        room_id: String,
        session_id: String,
        user_id: String,
        reason: TalkEndReason,
    },
    /// Nobody holds the floor of the room.
    FloorFree { room_id: String },
    /// Our own talk was stopped (lost the floor, cap, revoked).
    TransmitStopped {
        room_id: String,
        session_id: String,
        reason: TransmitStopReason,
    },
    /// Something received was dropped; `reason` says why.
    Dropped { reason: String },
    /// A room's walkie state was read again (it became or stopped being a
    /// group, or its settings or consents changed): refresh what is shown.
    RoomChanged { room_id: String },
}
