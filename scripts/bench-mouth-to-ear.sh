#!/usr/bin/env bash
# Mouth-to-ear latency (issue 11) at (virtual) audio devices, measured with
# the CLI: a throw-away Synapse and a private PulseAudio server; alice talks
# from the microphone (`talk --mic`) to $LISTENERS devices of bob, the first
# of which plays to the speaker (`listen --play`); a click train played into
# alice's microphone is timed until it comes out of bob's speaker.
#
#   bash scripts/bench-mouth-to-ear.sh
#   LISTENERS=5 CLICKS=40 bash scripts/bench-mouth-to-ear.sh
#   WALKIE=$HOME/.cache/walkie/target/debug/walkie bash scripts/bench-mouth-to-ear.sh
#
# Knobs: LISTENERS (1) bob's devices, the first plays; CLICKS (40) clicks,
# SPACING_MS (300) apart after 1 s of silence; WALKIE: a walkie binary to use
# instead of building the release CLI; THRESHOLD (0.4) the click detection
# level, a fraction of full scale (the player's cues peak at 0.25); KEEP=1
# keeps the work directory (the recording, the logs) and prints its path.
#
# One sample clock for mouth and ear: the PulseAudio server has one 4-channel
# null sink `both` (front-left/right, rear-left/right). `micfeed` is a remap
# sink onto both's front pair, `speaker` (the default sink, bob's output) a
# remap sink onto its rear pair, and `mic` (the default source, alice's
# input) a remap source of both.monitor's front pair; remix=no everywhere, so
# nothing leaks between the pairs. A remap sink has no buffer or clock of its
# own: what is written to micfeed or speaker is mixed into `both` when `both`
# renders, i.e. when a null sink would have "played" it. One parec of
# both.monitor (4 channels) therefore holds what alice's microphone hears
# (channel 0) and what bob's speaker plays (channel 2) sample-aligned, with no
# offset to calibrate. The calibration step checks that: the same burst is
# played into micfeed and speaker by two paplay processes started together,
# and their ear - mouth offset is printed (it is the skew between the two
# paplay starts, a few ms at most; it is not subtracted). The recording asks
# for 1 ms latency, so `both` renders in ~1 ms blocks (the timing grain).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
LISTENERS="${LISTENERS:-1}"
CLICKS="${CLICKS:-40}"
SPACING_MS="${SPACING_MS:-300}"
LEAD_MS=1000
TOOL="$PWD/scripts/tools/mouth_to_ear.py"
PY="$WALKIE_SYNAPSE_PYTHON"
((LISTENERS >= 1)) || die "LISTENERS must be at least 1"

if [[ -n ${WALKIE:-} ]]; then
  [[ -x $WALKIE ]] || die "WALKIE=$WALKIE is not an executable"
  say "using $WALKIE (not rebuilt)"
else
  say "building the CLI (release)"
  cargo build --release -p walkie-cli --locked
  WALKIE="$CARGO_TARGET_DIR/release/walkie"
fi
for tool in pulseaudio pactl parec paplay; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs pulseaudio and pulseaudio-utils)"
done

# A short path: the PulseAudio socket path must stay under 108 bytes.
WORK=$(mktemp -d /tmp/wm2e.XXXXXX)
WALKIE_DATA="$WORK"
PIDS=()
PA_PID=""
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n ${HS_STARTED_PID:-} ]] && kill "$HS_STARTED_PID" 2>/dev/null
  if [[ -n $PA_PID ]]; then kill "$PA_PID" 2>/dev/null; wait "$PA_PID" 2>/dev/null; fi
  if [[ -n ${KEEP:-} ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- PulseAudio ---------------------------------------------------------------
P="$WORK/pulse"
mkdir -p "$P/home/.config" "$P/runtime" "$P/state"
cat >"$P/server.pa" <<PA
load-module module-native-protocol-unix socket=$P/native auth-anonymous=1
load-module module-null-sink sink_name=both rate=48000 channels=4 channel_map=front-left,front-right,rear-left,rear-right sink_properties='device.description="Bench mouth and ear"'
load-module module-remap-sink sink_name=micfeed master=both channels=2 channel_map=front-left,front-right master_channel_map=front-left,front-right remix=no sink_properties='device.description="Bench microphone feed"'
load-module module-remap-sink sink_name=speaker master=both channels=2 channel_map=front-left,front-right master_channel_map=rear-left,rear-right remix=no sink_properties='device.description="Bench speaker"'
load-module module-remap-source source_name=mic master=both.monitor channels=2 channel_map=front-left,front-right master_channel_map=front-left,front-right remix=no source_properties='device.description="Bench microphone"'
set-default-sink speaker
set-default-source mic
PA
printf 'autospawn = no\nenable-shm = no\n' >"$P/client.conf"
say "starting a private PulseAudio server ($P/native)"
env -i PATH="$PATH" HOME="$P/home" XDG_CONFIG_HOME="$P/home/.config" XDG_RUNTIME_DIR="$P/runtime" \
  PULSE_RUNTIME_PATH="$P/runtime" PULSE_STATE_PATH="$P/state" PULSE_CLIENTCONFIG="$P/client.conf" \
  pulseaudio -n -F "$P/server.pa" --daemonize=no --use-pid-file=no --system=no --exit-idle-time=-1 \
  --realtime=no --high-priority=no --disable-shm=yes --log-target=stderr --log-level=info >"$P/pulse.log" 2>&1 &
PA_PID=$!
export PULSE_SERVER="unix:$P/native" PULSE_COOKIE="$P/cookie" PULSE_CLIENTCONFIG="$P/client.conf"
unset PULSE_SINK PULSE_SOURCE
pa_ready=""
for _ in $(seq 100); do
  kill -0 "$PA_PID" 2>/dev/null || { tail -n 30 "$P/pulse.log" >&2; die "PulseAudio exited during start-up (log above)"; }
  if info=$(pactl info 2>/dev/null) && grep -q 'Default Sink: speaker' <<<"$info" && grep -q 'Default Source: mic' <<<"$info"; then
    pa_ready=1; break
  fi
  sleep 0.1
done
[[ -n $pa_ready ]] || { tail -n 30 "$P/pulse.log" >&2; die "PulseAudio did not answer with speaker/mic as defaults within 10 s (log above)"; }
if grep -q '^E: ' "$P/pulse.log"; then
  grep '^E: ' "$P/pulse.log" >&2
  die "PulseAudio logged errors during start-up (above)"
fi
say "PulseAudio $(pulseaudio --version | awk '{print $2}') ready: micfeed/mic and speaker on one 4-channel sink"

# --- Synapse, users, group -------------------------------------------------------
WALKIE_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
start_local_homeserver
say "creating users alice and bob; signing in alice and $LISTENERS device(s) of bob"
"$PY" scripts/demo_setup.py --homeserver "$HOMESERVER_URL" \
  --shared-secret "$HS_SHARED_SECRET" --state "$WORK/homeserver/demo-users.json" 2>/dev/null
# Quiet set-up steps: their stderr (the SDK's expected 404s) goes to a log,
# shown if the step fails.
q() { "$@" 2>>"$WORK/setup.err" || { tail -n 20 "$WORK/setup.err" >&2; die "failed: $(basename "$1") ${*:2}"; }; }
pw() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/homeserver/demo-users.json" "$1"; }
A=(--data-dir "$WORK/alice")
WALKIE_PASSWORD="$(pw alice)" q "$WALKIE" "${A[@]}" login --homeserver "$HOMESERVER_URL" --user @alice:localhost >/dev/null
ROOM=$(q "$WALKIE" "${A[@]}" create "mouth-to-ear bench" --invite @bob:localhost | sed 's/.*"room_id":"\([^"]*\)".*/\1/')
q "$WALKIE" "${A[@]}" consent "$ROOM" --for 1h >/dev/null
for i in $(seq 1 "$LISTENERS"); do
  login=$(WALKIE_PASSWORD="$(pw bob)" q "$WALKIE" --data-dir "$WORK/bob$i" login --homeserver "$HOMESERVER_URL" --user @bob:localhost)
  # bob's first device created his identity; the others are verified with
  # its recovery key (only devices their owner signed hear a talk).
  key=$(printf '%s' "$login" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("recovery_key") or "")')
  [[ -z $key ]] || BOB_RECOVERY_KEY=$key
  ((i == 1)) || WALKIE_RECOVERY_KEY="$BOB_RECOVERY_KEY" q "$WALKIE" --data-dir "$WORK/bob$i" verify recovery-key >/dev/null
  ((i > 1)) || q "$WALKIE" --data-dir "$WORK/bob$i" join "$ROOM" >/dev/null
  q "$WALKIE" --data-dir "$WORK/bob$i" consent "$ROOM" --for 1h >/dev/null
done

# --- Recording and calibration ---------------------------------------------------
"$PY" "$TOOL" clicks "$WORK/clicks.wav" --clicks "$CLICKS" --spacing-ms "$SPACING_MS" --lead-ms "$LEAD_MS"
"$PY" "$TOOL" clicks "$WORK/cal.wav" --clicks 1 --lead-ms 200
say "recording both.monitor (4 channels: mouth = 0/1, ear = 2/3)"
parec --device=both.monitor --rate=48000 --channels=4 --channel-map=front-left,front-right,rear-left,rear-right \
  --format=s16le --latency-msec=1 --client-name=mouth-to-ear-recorder >"$WORK/rec.raw" 2>"$WORK/parec.log" &
REC_PID=$!
PIDS+=("$REC_PID")
for _ in $(seq 100); do
  pactl list short source-outputs 2>/dev/null | grep -q . && break
  sleep 0.05
done
kill -0 "$REC_PID" 2>/dev/null || { cat "$WORK/parec.log" >&2; die "parec did not start (above)"; }
# A null sink renders in 2 s blocks until a stream asks for less, and a new
# request takes effect at the next block: let the 1 ms request settle.
pactl suspend-sink both 1 && pactl suspend-sink both 0
sleep 2.5
say "calibration: the same burst into micfeed and speaker at once, 3 times"
for _ in 1 2 3; do
  paplay --device=micfeed "$WORK/cal.wav" & c1=$!
  paplay --device=speaker "$WORK/cal.wav" & c2=$!
  wait "$c1" "$c2"
  sleep 0.3
done
sleep 0.5
BOUNDARY=$(($(stat -c %s "$WORK/rec.raw") / 8))

# --- The talk --------------------------------------------------------------------
TALK_S=$("$PY" -c "print(($LEAD_MS + $CLICKS * $SPACING_MS) / 1000 + 2)")
LPIDS=()
for i in $(seq 1 "$LISTENERS"); do
  play=()
  ((i > 1)) || play=(--play)
  RUST_LOG=info "$WALKIE" --data-dir "$WORK/bob$i" listen "$ROOM" --out "$WORK/out$i" "${play[@]}" --talks 1 \
    --timeout "$("$PY" -c "print(int($TALK_S) + 60)")" >"$WORK/listen$i.jsonl" 2>"$WORK/listen$i.err" &
  LPIDS+=("$!")
  PIDS+=("$!")
done
for i in $(seq 1 "$LISTENERS"); do
  for _ in $(seq 600); do
    grep -q '"listening"' "$WORK/listen$i.jsonl" 2>/dev/null && break
    kill -0 "${LPIDS[$((i - 1))]}" 2>/dev/null || { tail -n 20 "$WORK/listen$i.err" >&2; die "listener $i exited before listening (above)"; }
    sleep 0.05
  done
  grep -q '"listening"' "$WORK/listen$i.jsonl" || die "listener $i not listening after 30 s"
done
say "$LISTENERS listener(s) ready (bob1 plays to speaker); alice talks from mic for $TALK_S s"
RUST_LOG=info "$WALKIE" "${A[@]}" talk "$ROOM" --mic --no-cues --seconds "$TALK_S" >"$WORK/talk.jsonl" 2>"$WORK/talk.err" &
TALK_PID=$!
PIDS+=("$TALK_PID")
for _ in $(seq 600); do
  grep -q '"capture_live"' "$WORK/talk.jsonl" 2>/dev/null && break
  kill -0 "$TALK_PID" 2>/dev/null || { cat "$WORK/talk.jsonl"; tail -n 20 "$WORK/talk.err" >&2; die "talk exited before capture was live (above)"; }
  sleep 0.02
done
grep -q '"capture_live"' "$WORK/talk.jsonl" || die "talk not live after 12 s"
say "capture live ($(grep '"capture_live"' "$WORK/talk.jsonl")); playing $CLICKS clicks into micfeed"
paplay --device=micfeed "$WORK/clicks.wav"
say "clicks played; waiting for the talk to end and the listeners to finish"
wait "$TALK_PID" || { tail -n 20 "$WORK/talk.err" >&2; die "talk failed (above)"; }
for i in $(seq 1 "$LISTENERS"); do
  wait "${LPIDS[$((i - 1))]}" || say "listener $i exited with $? (log: $WORK/listen$i.err)"
done
sleep 0.5
kill -INT "$REC_PID" 2>/dev/null || true
wait "$REC_PID" 2>/dev/null || true
grep -q '"output_opened"' "$WORK/listen1.jsonl" \
  || say "warning: bob1 never opened its output: $(grep -h '"output_failed"' "$WORK/listen1.jsonl" | head -1)"

# --- Analysis ----------------------------------------------------------------------
say "analysing $(($(stat -c %s "$WORK/rec.raw") / 8 / 48)) ms of recording (talk from sample $BOUNDARY)"
echo "binary: $WALKIE"
sed 's/\x1b\[[0-9;]*m//g' "$WORK/talk.err" "$WORK/listen1.err" | grep -ho 'capture opened.*\|output opened.*' | sed 's/^/devices: /' || true
sed 's/\x1b\[[0-9;]*m//g' "$WORK/listen1.err" | grep -ho 'live talk played.*' | sed 's/^/bob1 player: /' || true
"$PY" "$TOOL" analyse "$WORK/rec.raw" --channels 4 --mouth 0 --ear 2 --boundary "$BOUNDARY" \
  --clicks "$CLICKS" --spacing-ms "$SPACING_MS" --listeners "$LISTENERS" --threshold "${THRESHOLD:-0.4}"
