#!/usr/bin/env bash
# Idempotent set-up for Walkie on Debian 12: system packages, the Rust
# toolchain check, and the Synapse virtualenv used by the demo and the tests.
# Sourced or run by scripts/run.sh and scripts/test.sh; quick when all is there.
set -euo pipefail

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

WALKIE_CACHE="${WALKIE_CACHE:-$HOME/.cache/walkie}"
SYNAPSE_VERSION="${SYNAPSE_VERSION:-1.163.2}"
SYNAPSE_VENV="${SYNAPSE_VENV:-$WALKIE_CACHE/synapse-venv}"

# Debian packages: build (tauri/webkit, cmake for libopus), the local
# homeserver's Python, the headless desktop used by the tests, audio (ALSA
# headers for cpal; PulseAudio with null sinks in tests) and the Secret
# Service (gnome-keyring) the keyring crate talks to.
APT_PACKAGES=(
  build-essential pkg-config cmake curl ca-certificates
  libssl-dev libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev
  librsvg2-dev libxdo-dev libsoup-3.0-dev libjavascriptcoregtk-4.1-dev
  python3 python3-venv
  xvfb xauth dbus trayer xdotool x11-utils imagemagick iproute2
  espeak-ng sox opus-tools openssl
  libasound2-dev libasound2-plugins pulseaudio pulseaudio-utils
  libdbus-1-dev gnome-keyring libsecret-tools
  webkit2gtk-driver
  fonts-noto-color-emoji
)

# Installs the Debian packages given that are missing (apt-get, with one
# `apt-get update` retry); quick when all are there. Benches call it too.
apt_ensure() {
  local p missing=() still=() SUDO=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then
    say "Debian packages: all $# present"
    return 0
  fi
  say "installing missing Debian packages: ${missing[*]}"
  [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    say "apt-get install failed; refreshing the package lists (apt-get update) and trying again"
    $SUDO apt-get update >/dev/null 2>&1 || true
    if ! $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; then
      for p in "${missing[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || still+=("$p")
      done
      die "could not install Debian package(s): ${still[*]} (tried: ${SUDO:+sudo }apt-get install -y ${still[*]}). Install them by hand and run again."
    fi
  fi
}
apt_ensure "${APT_PACKAGES[@]}"

command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup, Rust 1.95) and run again"

# Synapse from PyPI into its own venv, pinned; reinstalled only on a version change.
if [[ -x "$SYNAPSE_VENV/bin/python" ]] \
  && "$SYNAPSE_VENV/bin/python" -c "import importlib.metadata as m,sys; sys.exit(m.version('matrix-synapse')!='$SYNAPSE_VERSION')" 2>/dev/null; then
  say "Synapse $SYNAPSE_VERSION: present in $SYNAPSE_VENV"
else
  say "installing Synapse $SYNAPSE_VERSION into $SYNAPSE_VENV (pip, about a minute)"
  mkdir -p "$WALKIE_CACHE"
  PY=/usr/bin/python3
  [[ -x $PY ]] || PY="$(command -v python3)"
  "$PY" -m venv "$SYNAPSE_VENV" || die "python3 -m venv failed: is Debian package python3-venv installed?"
  "$SYNAPSE_VENV/bin/pip" install --quiet --upgrade pip \
    || die "pip could not upgrade itself in $SYNAPSE_VENV"
  "$SYNAPSE_VENV/bin/pip" install --quiet "matrix-synapse==$SYNAPSE_VERSION" \
    || die "pip install matrix-synapse==$SYNAPSE_VERSION failed (see above)"
fi
export WALKIE_SYNAPSE_PYTHON="$SYNAPSE_VENV/bin/python"

# tauri-driver (WebDriver for Tauri apps, over WebKitWebDriver) into the
# cache, pinned; built once (cargo install, a few minutes), then only checked.
# Only the tests drive the app: the run command sets WALKIE_SETUP_TESTS=0
# and spares a first run those minutes.
TAURI_DRIVER_VERSION="${TAURI_DRIVER_VERSION:-2.1.0}"
WALKIE_TOOLS="${WALKIE_TOOLS:-$WALKIE_CACHE/tools}"
if [[ ${WALKIE_SETUP_TESTS:-1} == 0 ]]; then
  :
elif [[ -x "$WALKIE_TOOLS/bin/tauri-driver" ]] \
  && grep -q "^\"tauri-driver $TAURI_DRIVER_VERSION " "$WALKIE_TOOLS/.crates.toml" 2>/dev/null; then
  say "tauri-driver $TAURI_DRIVER_VERSION: present in $WALKIE_TOOLS/bin"
else
  say "installing tauri-driver $TAURI_DRIVER_VERSION into $WALKIE_TOOLS (cargo install, a few minutes)"
  cargo install --quiet --locked "tauri-driver@$TAURI_DRIVER_VERSION" --root "$WALKIE_TOOLS" \
    || die "cargo install tauri-driver@$TAURI_DRIVER_VERSION failed (see above)"
fi
export WALKIE_TAURI_DRIVER="$WALKIE_TOOLS/bin/tauri-driver"
