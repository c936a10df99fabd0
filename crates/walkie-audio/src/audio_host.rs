//! Which cpal host Walkie's devices come from, and how devices are named in
//! the settings and the device pickers.

use cpal::traits::DeviceTrait;

/// The host: cpal's default (ALSA on Linux, which reaches PulseAudio and
/// PipeWire through their ALSA plugins).
pub fn host() -> cpal::Host {
    cpal::default_host()
}

/// A device's user-visible name (its description), falling back to its id.
pub fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .or_else(|_| device.id().map(|id| id.to_string()))
        .unwrap_or_else(|_| "(unnamed device)".to_owned())
}
