//! Which cpal host Walkie's devices come from, and how devices are named in
//! the settings and the device pickers.
//!
//! The native PulseAudio host (cpal's `pulseaudio` feature, a pure-Rust
//! client of PulseAudio's protocol, also spoken by PipeWire's pipewire-pulse)
//! when a server is reachable, else ALSA. Through ALSA's pulse plugin a
//! short output buffer failed with I/O errors and the default one put
//! ~114 ms of stream latency behind the player (issue 11); the native host
//! takes a short fixed buffer (see `output::OUTPUT_PERIOD_MS`).
//! `WALKIE_AUDIO_HOST=alsa` forces ALSA, `pulseaudio` insists on PulseAudio.

use cpal::traits::{DeviceTrait, HostTrait};

/// The host: PulseAudio when reachable, else ALSA (see the module docs).
pub fn host() -> cpal::Host {
    let wanted = std::env::var("WALKIE_AUDIO_HOST").unwrap_or_default();
    if wanted != "alsa" {
        match cpal::host_from_id(cpal::HostId::PulseAudio) {
            Ok(host) => return host,
            Err(e) => tracing::debug!(error = %e, "PulseAudio host unavailable; using ALSA"),
        }
    }
    alsa()
}

/// The ALSA host (cpal's default without PulseAudio).
fn alsa() -> cpal::Host {
    cpal::host_from_id(cpal::HostId::Alsa).unwrap_or_else(|_| cpal::default_host())
}

/// Whether `host` is the native PulseAudio one.
pub fn is_pulseaudio(host: &cpal::Host) -> bool {
    host.id() == cpal::HostId::PulseAudio
}

/// The named output (`input == false`) or input device, or the default one,
/// from [`host`]. A name the host does not know is also looked up on ALSA:
/// names saved while ALSA was the host ("default", "pulse", a card) keep
/// working.
pub fn find_device(name: Option<&str>, input: bool) -> Option<(cpal::Host, cpal::Device)> {
    let host = host();
    let find = |host: &cpal::Host| -> Option<cpal::Device> {
        match name {
            None if input => host.default_input_device(),
            None => host.default_output_device(),
            Some(wanted) => {
                let all = if input {
                    host.input_devices().ok()?.collect::<Vec<_>>()
                } else {
                    host.output_devices().ok()?.collect::<Vec<_>>()
                };
                all.into_iter().find(|d| device_name(d) == wanted)
            }
        }
    };
    if let Some(device) = find(&host) {
        return Some((host, device));
    }
    if is_pulseaudio(&host) && name.is_some() {
        let alsa = alsa();
        if let Some(device) = find(&alsa) {
            return Some((alsa, device));
        }
    }
    None
}

/// A device's user-visible name (its description), falling back to its id.
pub fn device_name(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .or_else(|_| device.id().map(|id| id.to_string()))
        .unwrap_or_else(|_| "(unnamed device)".to_owned())
}
