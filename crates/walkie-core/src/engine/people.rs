//! Who is in a group, as the shells show it: its members with their names,
//! the names other devices gave themselves (e.g. "Walkie echo"), inviting
//! someone to a group and making a new one. Reads the room and the crypto
//! store the sync keeps; writes go to the homeserver.

use matrix_sdk::{ruma::OwnedUserId, RoomMemberships};
use serde::Serialize;

use super::{Engine, EngineError};

/// A member of a group (joined or invited).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    /// The member's display name in the room, when set.
    pub display_name: Option<String>,
    /// Invited, not joined yet.
    pub invited: bool,
}

fn user_id(user: &str) -> Result<OwnedUserId, EngineError> {
    OwnedUserId::try_from(user.trim())
        .map_err(|_| walkie_protocol::ProtocolError::InvalidUserId(user.to_owned()).into())
}

impl Engine {
    /// The joined and invited members of `room`, by user id.
    pub async fn members(&self, room: &str) -> Result<Vec<Member>, EngineError> {
        let (sdk_room, _) = self.room(room)?;
        let mut members: Vec<Member> = sdk_room
            .members(RoomMemberships::JOIN | RoomMemberships::INVITE)
            .await?
            .into_iter()
            .map(|m| Member {
                user_id: m.user_id().to_string(),
                display_name: m.display_name().map(str::to_owned),
                invited: *m.membership()
                    == matrix_sdk::ruma::events::room::member::MembershipState::Invite,
            })
            .collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        Ok(members)
    }

    /// The display name `user`'s device `device` gave itself, as the
    /// crypto store last saw it (`None`: unknown or unnamed).
    pub async fn device_name(&self, user: &str, device: &str) -> Option<String> {
        let user = user_id(user).ok()?;
        let device = self
            .inner
            .client
            .encryption()
            .get_device(&user, device.into())
            .await
            .ok()??;
        device.display_name().map(str::to_owned)
    }

    /// Invites `user` (a full user id) to `room`.
    pub async fn invite(&self, room: &str, user: &str) -> Result<(), EngineError> {
        let user = user_id(user)?;
        let (sdk_room, _) = self.room(room)?;
        sdk_room.invite_user_by_id(&user).await?;
        Ok(())
    }

    /// Makes a new private, encrypted walkie group `name` with the default
    /// settings, inviting `invite` (full user ids). Returns its room id.
    pub async fn create_group(&self, name: &str, invite: &[String]) -> Result<String, EngineError> {
        self.inner
            .account
            .create_group(name, invite, &walkie_protocol::WalkieGroup::default())
            .await
    }

    /// Names this device (what other members see in their device lists).
    pub async fn rename_device(&self, name: &str) -> Result<(), EngineError> {
        let client = &self.inner.client;
        let device = client
            .device_id()
            .ok_or_else(|| EngineError::Stopped("not signed in".into()))?;
        client.rename_device(device, name).await?;
        Ok(())
    }
}
