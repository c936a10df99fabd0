#!/usr/bin/env bash
# Builds Walkie's Debian package the Tauri way: the Tauri bundler (tauri-cli,
# installed pinned into the cache on first use, a few minutes) makes a
# release build of the app and packs it with its icon and a desktop entry
# (bundle settings in src-tauri/tauri.conf.json). Prints the .deb's path.
#   bash scripts/package-deb.sh
#   sudo dpkg -i <that .deb>      # installs /usr/bin/walkie-app
#   bash scripts/check-deb.sh     # installs it, starts it, signs in, removes it
# Not part of the test command: the release build takes ~20 minutes here.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
TAURI_CLI_VERSION="${TAURI_CLI_VERSION:-2.12.4}"
TOOLS="${WALKIE_TOOLS:-$HOME/.cache/walkie/tools}"

if [[ -x "$TOOLS/bin/cargo-tauri" ]] \
  && grep -q "^\"tauri-cli $TAURI_CLI_VERSION " "$TOOLS/.crates.toml" 2>/dev/null; then
  echo "[package] tauri-cli $TAURI_CLI_VERSION: present in $TOOLS/bin" >&2
else
  echo "[package] installing tauri-cli $TAURI_CLI_VERSION into $TOOLS (cargo install, a few minutes)" >&2
  cargo install --quiet --locked "tauri-cli@$TAURI_CLI_VERSION" --root "$TOOLS" \
    || { echo "[package] error: cargo install tauri-cli@$TAURI_CLI_VERSION failed (see above)" >&2; exit 1; }
fi

echo "[package] building the release app and its .deb (the bundler's log follows)" >&2
(cd src-tauri && "$TOOLS/bin/cargo-tauri" build --bundles deb --ci -- --locked)

deb=$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb 2>/dev/null | head -1)
[[ -n $deb ]] || { echo "[package] error: the bundler made no .deb under $CARGO_TARGET_DIR/release/bundle/deb" >&2; exit 1; }
dpkg-deb --info "$deb" >&2
dpkg-deb --contents "$deb" >&2
echo "$deb"
