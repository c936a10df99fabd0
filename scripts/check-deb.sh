#!/usr/bin/env bash
# The installed-package check (issue 14): installs the .deb that
# scripts/package-deb.sh made (or the one given) with `dpkg -i`, lists what
# it put where, starts the installed app under Xvfb with a private D-Bus
# session, gnome-keyring and PulseAudio and checks that it shows its tray
# icon and signs in to a local Synapse (tests/examples/deb_check.rs), then
# removes it with `dpkg -r` and checks that the binary is gone.
#   bash scripts/check-deb.sh [path/to/walkie.deb]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
deb="${1:-$(ls -t "$CARGO_TARGET_DIR"/release/bundle/deb/*.deb 2>/dev/null | head -1)}"
[[ -f $deb ]] || { echo "[check-deb] error: no .deb; run bash scripts/package-deb.sh first" >&2; exit 1; }
package=$(dpkg-deb --field "$deb" Package)

echo "[check-deb] dpkg -i $deb" >&2
$SUDO dpkg -i "$deb"
echo "[check-deb] installed files of $package:" >&2
dpkg -L "$package" | grep -E '^/usr/bin/.|\.desktop$|\.png$' >&2
binary=$(dpkg -L "$package" | grep -E '^/usr/bin/' | head -1)
desktop_entry=$(dpkg -L "$package" | grep -E '\.desktop$' | head -1)
[[ -x $binary ]] || { echo "[check-deb] error: no program under /usr/bin in $package" >&2; exit 1; }
[[ -f $desktop_entry ]] || { echo "[check-deb] error: no desktop entry in $package" >&2; exit 1; }
grep -E '^(Exec|Icon|Name)=' "$desktop_entry" >&2

echo "[check-deb] starting the installed $binary under Xvfb" >&2
shots="$CARGO_TARGET_DIR/screenshots"; mkdir -p "$shots"
status=0
cargo run --quiet --locked -p walkie-tests --example deb_check -- "$binary" "$shots/deb-installed.png" || status=$?

echo "[check-deb] dpkg -r $package" >&2
$SUDO dpkg -r "$package"
if [[ -e $binary ]]; then echo "[check-deb] error: $binary is still there after dpkg -r" >&2; exit 1; fi
echo "[check-deb] removed: $binary is gone" >&2
exit "$status"
