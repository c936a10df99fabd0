fn main() {
    // Declaring the app's commands generates `allow-<command>` permissions,
    // so capabilities/ can grant the panel exactly the commands it uses.
    tauri_build::try_build(
        tauri_build::Attributes::new()
            .app_manifest(tauri_build::AppManifest::new().commands(&["status"])),
    )
    .expect("tauri build script failed");
}
