//! What the panel may call. Each command is a thin adapter onto the session
//! (sign-in / sign-out), the radio (talk room, mute, the talk button) or the
//! engine (groups, consent); errors come back as the text the panel shows.
//! `capabilities/panel.json` grants the panel exactly these.

use serde::Serialize;
use tauri::{AppHandle, Manager, State};
use walkie_core::{engine::now_ms, Engine};

use crate::{
    config::{AppConfig, Credentials},
    radio::Radio,
    session,
    status::SharedStatus,
};

fn engine(radio: &Radio) -> Result<Engine, String> {
    radio.engine().ok_or_else(|| "Not signed in".to_owned())
}

/// Signs in with a password. `homeserver` empty: found from the user id's
/// server (`.well-known`).
#[tauri::command]
pub async fn sign_in(
    app: AppHandle,
    user: String,
    password: String,
    homeserver: Option<String>,
) -> Result<(), String> {
    let user = user.trim().to_owned();
    if user.is_empty() || password.is_empty() {
        return Err("Enter your user id and password".into());
    }
    let homeserver = match homeserver
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
    {
        Some(h) => h,
        None => user
            .strip_prefix('@')
            .and_then(|u| u.split_once(':'))
            .map(|(_, server)| server.to_owned())
            .ok_or("Give the homeserver, or a full user id like @alice:example.org")?,
    };
    let config = app.state::<AppConfig>().inner().clone();
    let creds = Credentials {
        homeserver,
        user,
        password,
    };
    session::sign_in(&app, &config, &creds).await
}

#[tauri::command]
pub async fn sign_out(app: AppHandle) -> Result<(), String> {
    session::sign_out(&app).await
}

/// One device's consent in a group, for the panel's list and countdowns.
#[derive(Serialize)]
pub struct DeviceView {
    user_id: String,
    device_id: String,
    /// The name the device gave itself (e.g. "Walkie echo"), when known.
    name: Option<String>,
    talk: bool,
    /// Milliseconds since the epoch; `None`: until revoked.
    expires_ts: Option<u64>,
    mine: bool,
}

/// A device that consents but will not hear this one (nor be heard).
#[derive(Serialize)]
pub struct ExcludedView {
    user_id: String,
    device_id: String,
    /// `no_keys`, `not_signed_by_owner`, `identity_changed`,
    /// `bad_consent_signature`.
    reason: walkie_core::trust::Exclusion,
    /// The reason as the panel says it.
    why: String,
}

/// A walkie group with its consents, for the panel.
#[derive(Serialize)]
pub struct GroupView {
    room_id: String,
    name: String,
    talk_room: bool,
    holder: Option<String>,
    devices: Vec<DeviceView>,
    /// Consenting devices Walkie does not talk to, and why.
    excluded: Vec<ExcludedView>,
    /// Where the group's recordings go (`timeline`, `thread`, `none`).
    recordings: walkie_core::protocol::Recordings,
    /// Whether this user may change the group's settings (a room admin).
    can_change_settings: bool,
    /// This user's volume, mute and priority for the group.
    playback: crate::settings::GroupPlayback,
    /// The other members, with each one's volume.
    members: Vec<MemberView>,
    /// The panel's clock reference: the app's now, to count down from.
    now_ms: u64,
}

/// Another member of a group, for the panel's people list.
#[derive(Serialize)]
pub struct MemberView {
    user_id: String,
    name: Option<String>,
    invited: bool,
    /// Their volume here (1.0: as sent).
    volume: f32,
}

#[tauri::command]
pub async fn groups(
    app: AppHandle,
    radio: State<'_, Radio>,
    status: State<'_, SharedStatus>,
) -> Result<Vec<GroupView>, String> {
    let engine = engine(&radio)?;
    let snapshot = status.get();
    let me = (snapshot.user_id.clone(), snapshot.device_id.clone());
    let saved = crate::settings::Settings::load(&app.state::<AppConfig>().data_dir);
    let mut out = Vec::new();
    for group in &snapshot.groups {
        let Ok(room) = engine.status(&group.room_id) else {
            continue;
        };
        let can_change_settings = engine
            .can_change_settings(&group.room_id)
            .await
            .unwrap_or(false);
        let members = engine
            .members(&group.room_id)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|m| me.0.as_deref() != Some(m.user_id.as_str()))
            .map(|m| MemberView {
                volume: saved.people.get(&m.user_id).copied().unwrap_or(1.0),
                user_id: m.user_id,
                name: m.display_name,
                invited: m.invited,
            })
            .collect();
        let mut devices = Vec::with_capacity(room.devices.len());
        for d in room.devices {
            devices.push(DeviceView {
                mine: me.0.as_deref() == Some(d.user_id.as_str())
                    && me.1.as_deref() == Some(d.device_id.as_str()),
                name: engine.device_name(&d.user_id, &d.device_id).await,
                user_id: d.user_id,
                device_id: d.device_id,
                talk: d.talk,
                expires_ts: d.expires_ts,
            });
        }
        out.push(GroupView {
            playback: saved
                .groups
                .get(&group.room_id)
                .copied()
                .unwrap_or_default(),
            members,
            recordings: room.recordings,
            can_change_settings,
            room_id: group.room_id.clone(),
            name: group.name.clone(),
            talk_room: snapshot.talk_room.as_deref() == Some(group.room_id.as_str()),
            holder: room.holder,
            devices,
            excluded: room
                .excluded
                .into_iter()
                .map(|x| ExcludedView {
                    why: x.reason.to_string(),
                    user_id: x.user_id,
                    device_id: x.device_id,
                    reason: x.reason,
                })
                .collect(),
            now_ms: now_ms(),
        });
    }
    Ok(out)
}

/// Sets where a group's recordings go: `timeline`, `thread` or `none`
/// (a room admin's choice).
#[tauri::command]
pub async fn set_recordings(
    radio: State<'_, Radio>,
    room: String,
    mode: String,
) -> Result<(), String> {
    use walkie_core::protocol::Recordings;
    let recordings = match mode.as_str() {
        "timeline" => Recordings::Timeline,
        "thread" => Recordings::Thread,
        "none" => Recordings::None,
        other => return Err(format!("unknown recordings mode {other:?}")),
    };
    let engine = engine(&radio)?;
    engine
        .set_recordings(&room, recordings)
        .await
        .map(drop)
        .map_err(|e| format!("Could not change where recordings go: {e}"))
}

/// Grants this device's consent for `minutes` (`None`: until revoked).
#[tauri::command]
pub async fn grant_consent(
    radio: State<'_, Radio>,
    room: String,
    minutes: Option<u64>,
) -> Result<(), String> {
    let engine = engine(&radio)?;
    let duration = minutes.map(|m| std::time::Duration::from_secs(m.saturating_mul(60)));
    engine
        .grant_consent(&room, duration, true)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tauri::command]
pub async fn revoke_consent(radio: State<'_, Radio>, room: String) -> Result<(), String> {
    let engine = engine(&radio)?;
    engine
        .revoke_consent(&room)
        .await
        .map_err(|e| e.to_string())
}

/// A joined, end-to-end encrypted room that is not a walkie group yet.
#[derive(Serialize)]
pub struct RoomView {
    room_id: String,
    name: String,
}

#[tauri::command]
pub async fn other_rooms(radio: State<'_, Radio>) -> Result<Vec<RoomView>, String> {
    let engine = engine(&radio)?;
    let mut out = Vec::new();
    for room in engine.rooms().await {
        // Only end-to-end encrypted rooms can become walkie groups.
        if room.walkie || !room.encrypted {
            continue;
        }
        let name = room.name.unwrap_or_else(|| room.room_id.clone());
        out.push(RoomView {
            room_id: room.room_id,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Makes a joined room a walkie group.
#[tauri::command]
pub async fn make_group(radio: State<'_, Radio>, room: String) -> Result<(), String> {
    engine(&radio)?
        .enable(&room)
        .await
        .map_err(|e| e.to_string())
}

/// Makes a new walkie group `name`, inviting `invitees` (user ids
/// separated by spaces or commas). Returns its room id.
#[tauri::command]
pub async fn create_group(
    radio: State<'_, Radio>,
    name: String,
    invitees: String,
) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the group a name".into());
    }
    let invite: Vec<String> = invitees
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let room = engine(&radio)?
        .create_group(name, &invite)
        .await
        .map_err(|e| format!("Could not make the group: {e}"))?;
    tracing::info!(%room, invited = invite.len(), "group created from the panel");
    Ok(room)
}

/// Invites `user` (a full user id) to a group.
#[tauri::command]
pub async fn invite(radio: State<'_, Radio>, room: String, user: String) -> Result<(), String> {
    let user = user.trim();
    if user.is_empty() {
        return Err("Give a user id like @bob:example.org".into());
    }
    engine(&radio)?
        .invite(&room, user)
        .await
        .map_err(|e| format!("Could not invite {user}: {e}"))?;
    tracing::info!(%room, user, "invited from the panel");
    Ok(())
}

/// Changes a group's volume (0.0..=2.0), mute or priority for this user:
/// the ones given; the others stay as they are.
#[tauri::command]
pub fn set_group_playback(
    app: AppHandle,
    radio: State<'_, Radio>,
    room: String,
    volume: Option<f32>,
    muted: Option<bool>,
    priority: Option<i32>,
) -> Result<(), String> {
    radio.set_group_playback(&app, &room, |p| {
        if let Some(v) = volume {
            p.volume = v;
        }
        if let Some(m) = muted {
            p.muted = m;
        }
        if let Some(r) = priority {
            p.priority = r;
        }
    })
}

/// One person's volume (0.0..=2.0) in every group.
#[tauri::command]
pub fn set_person_volume(
    app: AppHandle,
    radio: State<'_, Radio>,
    user: String,
    volume: f32,
) -> Result<(), String> {
    radio.set_person_volume(&app, &user, volume)
}

/// How long a talk goes on after the key is released (0 to 2000 ms).
#[tauri::command]
pub fn set_release_tail(app: AppHandle, radio: State<'_, Radio>, ms: u64) -> Result<(), String> {
    radio.set_release_tail(&app, ms)
}

#[tauri::command]
pub fn set_talk_room(app: AppHandle, radio: State<'_, Radio>, room: String) {
    radio.set_talk_room(&app, &room);
}

#[tauri::command]
pub fn set_muted(app: AppHandle, radio: State<'_, Radio>, muted: bool) {
    radio.set_muted(&app, muted);
}

/// The panel's talk button (works where global shortcuts cannot).
#[tauri::command]
pub fn talk_press(app: AppHandle, radio: State<'_, Radio>) {
    radio.press(&app);
}

#[tauri::command]
pub fn talk_release(app: AppHandle, radio: State<'_, Radio>) {
    radio.release(&app);
}

/// A talk waiting to be played, for the panel.
#[derive(Serialize)]
pub struct UnplayedView {
    session: String,
    room_id: String,
    sender: String,
    start_ts: u64,
    duration_ms: u64,
    /// Held for the user (muted group, do not disturb, or restored after a
    /// restart) rather than queued to play by itself.
    held: bool,
}

#[tauri::command]
pub fn unplayed_talks(radio: State<'_, Radio>) -> Vec<UnplayedView> {
    radio
        .player()
        .map(|p| p.unplayed())
        .unwrap_or_default()
        .into_iter()
        .map(|t| UnplayedView {
            session: t.meta.session,
            room_id: t.meta.group,
            sender: t.meta.sender,
            start_ts: t.meta.start_ts_ms,
            duration_ms: t.duration_ms,
            held: t.state == walkie_audio::mixing_queue::TalkState::Held,
        })
        .collect()
}

#[tauri::command]
pub fn play_talk(radio: State<'_, Radio>, session: String) {
    if let Some(player) = radio.player() {
        player.play_now(&session);
    }
}

#[tauri::command]
pub fn skip_talk(radio: State<'_, Radio>, session: String) {
    if let Some(player) = radio.player() {
        player.skip(&session);
    }
}

/// Which cues sound (talk permit, busy, end of talk).
#[tauri::command]
pub fn set_cues(
    radio: State<'_, Radio>,
    status: State<'_, SharedStatus>,
    app: AppHandle,
    talk_permit: bool,
    busy: bool,
    talk_end: bool,
) {
    let cues = walkie_audio::cues::CueSettings {
        talk_permit,
        busy,
        talk_end,
    };
    if let Some(player) = radio.player() {
        player.set_cues(cues);
    }
    status.update(&app, |s| s.cues = cues);
    let data_dir = &app.state::<AppConfig>().data_dir;
    crate::settings::Settings::update(data_dir, |s| s.cues = Some(cues));
}

/// Rebinds the push-to-talk shortcut (`mode`: `hold` or `toggle`).
#[tauri::command]
pub fn set_hotkey(app: AppHandle, shortcut: String, mode: String) -> Result<(), String> {
    let mode = crate::hotkey::HotkeyMode::parse(&mode).ok_or("mode must be hold or toggle")?;
    let shortcut = shortcut.trim();
    if shortcut.is_empty() {
        return Err("Type a shortcut such as ctrl+alt+Space".into());
    }
    crate::hotkey::rebind(&app, shortcut, mode)
}

/// Starts Walkie with the desktop session (an XDG autostart entry on Linux).
#[tauri::command]
pub fn set_autostart(app: AppHandle, enabled: bool) -> Result<(), String> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    let result = if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    };
    result.map_err(|e| format!("Could not change autostart: {e}"))?;
    show_autostart(&app);
    Ok(())
}

/// Reads whether autostart is on into the status.
pub fn show_autostart(app: &AppHandle) {
    use tauri_plugin_autostart::ManagerExt;
    match app.autolaunch().is_enabled() {
        Ok(on) => app
            .state::<SharedStatus>()
            .update(app, |s| s.autostart = on),
        Err(e) => tracing::warn!(error = %e, "cannot read the autostart setting"),
    }
}

/// The audio devices to choose from, and the chosen ones.
#[derive(Serialize)]
pub struct DevicesView {
    inputs: Vec<String>,
    outputs: Vec<String>,
    input: Option<String>,
    output: Option<String>,
}

#[tauri::command]
pub fn audio_devices(app: AppHandle) -> DevicesView {
    let saved = crate::settings::Settings::load(&app.state::<AppConfig>().data_dir);
    DevicesView {
        inputs: walkie_audio::capture::input_device_names().unwrap_or_default(),
        outputs: walkie_audio::output::output_device_names().unwrap_or_default(),
        input: saved.input_device,
        output: saved.output_device,
    }
}

/// Chooses the microphone and the speakers (`None`: the system's default).
/// The microphone applies from the next talk; the speakers from the next
/// sign-in or start.
#[tauri::command]
pub fn set_audio_devices(
    app: AppHandle,
    radio: State<'_, Radio>,
    input: Option<String>,
    output: Option<String>,
) {
    let data_dir = &app.state::<AppConfig>().data_dir;
    crate::settings::Settings::update(data_dir, |s| {
        s.input_device = input.clone();
        s.output_device = output.clone();
    });
    radio.set_input_device(input);
}

/// Starts (or restarts) the microphone test with the chosen input.
#[tauri::command]
pub fn mic_test_start(
    app: AppHandle,
    test: State<'_, crate::mic_test::MicTest>,
) -> Result<(), String> {
    let device = crate::settings::Settings::load(&app.state::<AppConfig>().data_dir).input_device;
    test.start(&app, device)
}

#[tauri::command]
pub fn mic_test_stop(test: State<'_, crate::mic_test::MicTest>) {
    test.stop();
}

/// Do not disturb for `minutes`, until turned off (`None`), or off (`0`).
#[tauri::command]
pub fn set_dnd(app: AppHandle, radio: State<'_, Radio>, minutes: Option<u64>) {
    radio.set_dnd(
        &app,
        minutes.map(|m| std::time::Duration::from_secs(m.saturating_mul(60))),
    );
}
