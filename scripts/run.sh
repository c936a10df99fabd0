#!/usr/bin/env bash
# The README's run command: set-up (idempotent), a local Synapse with two
# demo users and an encrypted demo room that is a walkie group (unless
# --homeserver is given) with bob in it as an echo peer (`walkie echo`: it
# plays each talk back), then the tray app signed in as alice. Ctrl-C stops
# the app, the echo peer and the homeserver this script started.
#
#   bash scripts/run.sh                       local homeserver, signed in as alice
#   bash scripts/run.sh --homeserver URL --user NAME   an existing server
#                        (password from WALKIE_PASSWORD or asked for)
#   bash scripts/run.sh --xvfb                no desktop here: run on a virtual X display
set -euo pipefail
cd "$(dirname "$0")/.."

HOMESERVER="${WALKIE_HOMESERVER:-}"
USER_NAME="${WALKIE_USER:-}"
XVFB=0
while (($#)); do
  case $1 in
    --homeserver) HOMESERVER=${2:?--homeserver needs a URL}; shift 2 ;;
    --user) USER_NAME=${2:?--user needs a name}; shift 2 ;;
    --xvfb) XVFB=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Cheap checks first, before any set-up or build.
if ((!XVFB)) && [[ -z ${DISPLAY:-}${WAYLAND_DISPLAY:-} ]]; then
  echo "run.sh: no graphical session (DISPLAY and WAYLAND_DISPLAY are unset): run from a desktop, or add --xvfb" >&2
  exit 1
fi

WALKIE_SETUP_TESTS=0 source scripts/setup.sh
source scripts/local-homeserver.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
WALKIE_DATA="${XDG_DATA_HOME:-$HOME/.local/share}/walkie"
mkdir -p "$WALKIE_DATA"

CHILDREN=()
cleanup() {
  local pid
  for ((i=${#CHILDREN[@]}-1; i>=0; i--)); do
    pid=${CHILDREN[i]}
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z $HOMESERVER ]]; then
  # SQLite: the demo's homeserver keeps its data between runs (the
  # PostgreSQL option is the benches' throw-away cluster).
  WALKIE_HS_DB=sqlite start_local_homeserver
  [[ -n $HS_STARTED_PID ]] && CHILDREN+=("$HS_STARTED_PID")
  "$WALKIE_SYNAPSE_PYTHON" scripts/demo_setup.py --homeserver "$HOMESERVER_URL" \
    --shared-secret "$HS_SHARED_SECRET" --state "$WALKIE_DATA/homeserver/demo-users.json"
  HOMESERVER=$HOMESERVER_URL
  # The full user id keeps the app's local account store (and so its device
  # and keys) the same even when the local homeserver's port changes.
  USER_NAME=@alice:localhost
  WALKIE_PASSWORD=$("$WALKIE_SYNAPSE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["alice"])' \
    "$WALKIE_DATA/homeserver/demo-users.json")
  # bob answers as an echo peer in the demo group (a walkie group).
  demo() { "$WALKIE_SYNAPSE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$WALKIE_DATA/homeserver/demo-users.json" "$1"; }
  DEMO_ROOM=$(demo room_id)
  BOB_PASSWORD=$(demo bob)
else
  [[ -n $USER_NAME ]] || die "--homeserver needs --user NAME (or WALKIE_USER)"
  if [[ -z ${WALKIE_PASSWORD:-} ]]; then
    read -rsp "Password for $USER_NAME on $HOMESERVER: " WALKIE_PASSWORD; echo >&2
  fi
fi

if ((XVFB)); then
  command -v Xvfb >/dev/null || die "Xvfb is missing (Debian package xvfb)"
  dfile=$(mktemp)
  Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$dfile" >/dev/null 2>&1 &
  CHILDREN+=("$!")
  for _ in $(seq 1 100); do [[ -s $dfile ]] && break; sleep 0.05; done
  export DISPLAY=":$(tr -d '\n' <"$dfile")"
  rm -f "$dfile"
  trayer --edge top --align right --widthtype request --height 32 >/dev/null 2>&1 &
  CHILDREN+=("$!")
  say "virtual display $DISPLAY (screenshot: DISPLAY=$DISPLAY import -window root shot.png)"
fi

say "building the app (cargo build -p walkie-app)"
cargo build -p walkie-app --locked

if [[ -n ${DEMO_ROOM:-} ]]; then
  say "building the CLI (cargo build -p walkie-cli) for the echo peer"
  cargo build -p walkie-cli --locked
  WALKIE_CLI="$CARGO_TARGET_DIR/debug/walkie"
  ECHO_DIR="$WALKIE_DATA/echo-bob"
  ECHO_LOG="$WALKIE_DATA/echo.log"
  if ! "$WALKIE_CLI" --data-dir "$ECHO_DIR" rooms >/dev/null 2>"$ECHO_LOG"; then
    WALKIE_PASSWORD="$BOB_PASSWORD" "$WALKIE_CLI" --data-dir "$ECHO_DIR" login \
      --homeserver "$HOMESERVER" --user @bob:localhost >/dev/null 2>>"$ECHO_LOG" \
      || die "the echo peer (bob) could not sign in: see $ECHO_LOG"
  fi
  "$WALKIE_CLI" --data-dir "$ECHO_DIR" echo "$DEMO_ROOM" >>"$ECHO_LOG" 2>&1 &
  CHILDREN+=("$!")
  say "bob is an echo peer in the \"Walkie demo\" group: consent in the panel, then hold Ctrl+Alt+Space, talk, release, and hear yourself back (log: $ECHO_LOG)"
fi

say "starting Walkie as $USER_NAME on $HOMESERVER (Ctrl-C stops it)"
if [[ -z ${DBUS_SESSION_BUS_ADDRESS:-} ]]; then
  # No desktop session: a private session bus with its own Secret Service
  # (gnome-keyring, its keyring files under $WALKIE_DATA/demo-keyring, not in
  # your home's login keyring), so the app can keep its session and keys.
  mkdir -p "$WALKIE_DATA/demo-keyring"
  say "no session bus: starting one with a demo keyring in $WALKIE_DATA/demo-keyring"
  APP=(dbus-run-session -- bash -c '
    eval "$(printf %s walkie-demo | XDG_DATA_HOME="$0" gnome-keyring-daemon --unlock --components=secrets)" >/dev/null
    exec "$1"' "$WALKIE_DATA/demo-keyring" "$CARGO_TARGET_DIR/debug/walkie-app")
else
  APP=("$CARGO_TARGET_DIR/debug/walkie-app")
fi
WALKIE_HOMESERVER="$HOMESERVER" WALKIE_USER="$USER_NAME" WALKIE_PASSWORD="$WALKIE_PASSWORD" "${APP[@]}" &
CHILDREN+=("$!")
wait "${CHILDREN[-1]}"
