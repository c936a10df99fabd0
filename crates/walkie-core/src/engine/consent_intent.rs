//! What this device last asked for in each room: its own signed consent
//! entry (or none, after a revoke), kept in
//! `<account dir>/consent-intents.json` (0600) so any later process of this
//! device can put the entry back when a concurrent write by another of the
//! user's devices dropped it (read-modify-write of one state event per
//! user cannot be atomic). Re-assertions in flight are tracked so a room
//! is not rewritten again before the first rewrite comes back.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde_json::Value;
use walkie_protocol::{ConsentContent, DeviceId, RoomId, SignedConsent};

/// The intents of one device, by room.
pub(super) struct Intents {
    path: PathBuf,
    device: DeviceId,
    by_room: Mutex<HashMap<String, Value>>,
    in_flight: Mutex<HashSet<String>>,
}

impl Intents {
    /// Loads the intents file of the account directory (absent: none).
    pub fn open(dir: &Path, device: DeviceId) -> Self {
        let path = dir.join("consent-intents.json");
        let by_room = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "unreadable consent intents; starting afresh");
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        Self {
            path,
            device,
            by_room: Mutex::new(by_room),
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Our last entry in `room` (`None`: revoked or never granted).
    pub fn get(&self, room: &RoomId) -> Option<SignedConsent> {
        let map = self.by_room.lock().unwrap_or_else(|p| p.into_inner());
        let value = map.get(room.as_str())?;
        let mut parsed = ConsentContent::parse(value).ok()?.content;
        parsed.devices.remove(&self.device)
    }

    /// Records what we just wrote in `room`.
    pub fn set(&self, room: &RoomId, entry: Option<SignedConsent>) {
        let mut map = self.by_room.lock().unwrap_or_else(|p| p.into_inner());
        let content = ConsentContent::default().with_device(&self.device, entry);
        map.insert(room.to_string(), content.to_content());
        let saved = serde_json::to_vec(&*map)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let tmp = self.path.with_extension("json.tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = saved {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot save the consent intent");
        }
    }

    /// Marks a rewrite of `room` as started; `false` if one already is.
    pub fn begin_rewrite(&self, room: &RoomId) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(room.to_string())
    }

    /// Marks a rewrite of `room` as done (sent or failed).
    pub fn end_rewrite(&self, room: &RoomId) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(room.as_str());
    }
}
