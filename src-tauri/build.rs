fn main() {
    // Declaring the app's commands generates `allow-<command>` permissions,
    // so capabilities/ can grant the panel exactly the commands it uses.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "status",
            "sign_in",
            "sign_out",
            "groups",
            "grant_consent",
            "revoke_consent",
            "set_recordings",
            "other_rooms",
            "make_group",
            "set_talk_room",
            "set_muted",
            "talk_press",
            "talk_release",
            "unplayed_talks",
            "play_talk",
            "skip_talk",
            "set_cues",
            "set_hotkey",
            "set_autostart",
            "audio_devices",
            "set_audio_devices",
            "mic_test_start",
            "mic_test_stop",
            "set_dnd",
            "recovery_key_saved",
            "verify_with_recovery_key",
            "verify_with_device",
            "verify_confirm",
            "verify_cancel",
            "accept_identity",
        ]),
    ))
    .expect("tauri build script failed");
}
