//! The group marker: `org.matrix.msc4002.walkie` room state (state key
//! `""`) that makes a room a walkie group, with its floor settings and where
//! recordings go.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{error::malformed, *};

/// Where a talk's recording is posted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Recordings {
    /// As an ordinary voice message in the room timeline.
    #[default]
    Timeline,
    /// In a thread (the room's walkie thread), against chat litter.
    Thread,
    /// Not at all: the talk is live only.
    None,
}

/// Content of `org.matrix.msc4002.walkie` (state key `""`): marks a room as a
/// walkie-talkie group and sets the parameters every client must share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkieGroup {
    /// Protocol version; only [`PROTOCOL_VERSION`] is understood.
    pub version: u32,
    /// Floor lease: a holder silent this long loses the floor.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// Longest single talk.
    #[serde(default = "default_max_talk")]
    pub max_talk_ms: u64,
    /// Where recordings go.
    #[serde(default)]
    pub recordings: Recordings,
    /// The event the group's recordings thread hangs from (with
    /// `recordings: thread`): posted once, when thread mode is first chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_root: Option<String>,
}

fn default_lease() -> u64 {
    DEFAULT_LEASE_MS
}
fn default_max_talk() -> u64 {
    DEFAULT_MAX_TALK_MS
}

impl Default for WalkieGroup {
    fn default() -> Self {
        Self {
            version: PROTOCOL_VERSION,
            lease_ms: DEFAULT_LEASE_MS,
            max_talk_ms: DEFAULT_MAX_TALK_MS,
            recordings: Recordings::Timeline,
            thread_root: None,
        }
    }
}

pub(crate) fn check_range(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), ProtocolError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ProtocolError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl WalkieGroup {
    /// Parses and validates the state event content. An empty object (the
    /// marker removed) is not a group and is refused as malformed.
    pub fn parse(content: &Value) -> Result<Self, ProtocolError> {
        let g: WalkieGroup = serde_json::from_value(content.clone()).map_err(malformed)?;
        g.validate()?;
        Ok(g)
    }

    /// Checks version and bounds.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        if self.version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(self.version));
        }
        check_range("lease_ms", self.lease_ms, MIN_LEASE_MS, MAX_LEASE_MS)?;
        check_range(
            "max_talk_ms",
            self.max_talk_ms,
            MIN_TALK_LIMIT_MS,
            MAX_TALK_LIMIT_MS,
        )?;
        if let Some(root) = &self.thread_root {
            if !root.starts_with('$') || root.len() > 255 || root.chars().any(char::is_whitespace) {
                return Err(ProtocolError::Malformed(format!(
                    "thread_root {root:?} is not an event id"
                )));
            }
        }
        Ok(())
    }

    /// The thread a talk's recording goes into, if the group posts into one.
    pub fn recordings_thread(&self) -> Option<&str> {
        match self.recordings {
            Recordings::Thread => self.thread_root.as_deref(),
            _ => None,
        }
    }

    /// The content to send.
    pub fn to_content(&self) -> Value {
        let mut content = serde_json::json!({
            "version": self.version,
            "lease_ms": self.lease_ms,
            "max_talk_ms": self.max_talk_ms,
            "recordings": self.recordings,
        });
        if let Some(root) = &self.thread_root {
            content["thread_root"] = Value::String(root.clone());
        }
        content
    }
}
