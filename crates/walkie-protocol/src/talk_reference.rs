//! The reference from a talk's recording (an ordinary voice message) back
//! to its live session.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{error::malformed, ProtocolError, SessionId, TALK_REFERENCE_KEY};

/// `org.matrix.msc4002.talk: {session_id}` added to the recording's voice
/// message, so walkie clients that played the talk live mark it as heard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TalkReference {
    pub session_id: SessionId,
}

impl TalkReference {
    /// Adds the reference to a message content object (no-op if the content
    /// is not an object).
    pub fn insert_into(&self, content: &mut Value) {
        if let Some(obj) = content.as_object_mut() {
            obj.insert(
                TALK_REFERENCE_KEY.to_owned(),
                serde_json::json!({ "session_id": self.session_id }),
            );
        }
    }

    /// Reads the reference from a message content: `None` if absent,
    /// `Some(Err)` if present but invalid.
    pub fn from_message_content(content: &Value) -> Option<Result<Self, ProtocolError>> {
        let v = content.get(TALK_REFERENCE_KEY)?;
        Some(Self::deserialize(v).map_err(malformed))
    }
}
