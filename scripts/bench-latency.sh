#!/usr/bin/env bash
# Live-audio latency on loopback, release build, measured with the CLI:
# a throw-away Synapse, alice talks a speech WAV for $SECONDS_OF_TALK s to
# $LISTENERS listening devices of bob, and every audio message each accepts is timed
# (received_ms - ts: from the capture of the message's first frame to its
# decryption and acceptance at the listener, both clocks the same machine).
#
#   bash scripts/bench-latency.sh [BATCH ...]     default batches: 1 2 3 5
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
SECONDS_OF_TALK="${SECONDS_OF_TALK:-20}"
LISTENERS="${LISTENERS:-1}"
BATCHES=("$@")
((${#BATCHES[@]})) || BATCHES=(1 2 3 5)

say "building the CLI (release)"
cargo build --release -p walkie-cli --locked
WALKIE="$CARGO_TARGET_DIR/release/walkie"

WORK=$(mktemp -d)
WALKIE_DATA="$WORK"
WALKIE_PORT=$("$WALKIE_SYNAPSE_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  if [[ -n ${HS_STARTED_PID:-} ]]; then kill "$HS_STARTED_PID" 2>/dev/null || true; wait "$HS_STARTED_PID" 2>/dev/null || true; fi
  stop_local_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
start_local_homeserver
"$WALKIE_SYNAPSE_PYTHON" scripts/demo_setup.py --homeserver "$HOMESERVER_URL" \
  --shared-secret "$HS_SHARED_SECRET" --state "$WORK/homeserver/demo-users.json" 2>/dev/null
pw() { "$WALKIE_SYNAPSE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/homeserver/demo-users.json" "$1"; }
A=(--data-dir "$WORK/alice")
WALKIE_PASSWORD="$(pw alice)" "$WALKIE" "${A[@]}" login --homeserver "$HOMESERVER_URL" --user @alice:localhost >/dev/null
ROOM=$("$WALKIE" "${A[@]}" create "latency bench" --invite @bob:localhost | sed 's/.*"room_id":"\([^"]*\)".*/\1/')
"$WALKIE" "${A[@]}" consent "$ROOM" --for 1h >/dev/null
for i in $(seq 1 "$LISTENERS"); do
  login=$(WALKIE_PASSWORD="$(pw bob)" "$WALKIE" --data-dir "$WORK/bob$i" login --homeserver "$HOMESERVER_URL" --user @bob:localhost)
  # bob's first device created his identity; the others are verified with
  # its recovery key (only devices their owner signed hear a talk).
  key=$(printf '%s' "$login" | "$WALKIE_SYNAPSE_PYTHON" -c 'import json,sys; print(json.load(sys.stdin).get("recovery_key") or "")')
  [[ -z $key ]] || BOB_RECOVERY_KEY=$key
  ((i == 1)) || WALKIE_RECOVERY_KEY="$BOB_RECOVERY_KEY" "$WALKIE" --data-dir "$WORK/bob$i" verify recovery-key >/dev/null
  ((i > 1)) || "$WALKIE" --data-dir "$WORK/bob$i" join "$ROOM" >/dev/null
  "$WALKIE" --data-dir "$WORK/bob$i" consent "$ROOM" --for 1h >/dev/null
done

espeak-ng -s 150 -w "$WORK/raw.wav" "This is walkie talkie, testing one two three. The quick brown fox jumps over the lazy dog, and the eagle lands at noon." 
sox "$WORK/raw.wav" -r 48000 -c 1 -b 16 "$WORK/one.wav"
sox "$WORK/one.wav" "$WORK/talk.wav" repeat 10 trim 0 "$SECONDS_OF_TALK"

for batch in "${BATCHES[@]}"; do
  LPIDS=()
  for i in $(seq 1 "$LISTENERS"); do
    "$WALKIE" --data-dir "$WORK/bob$i" listen "$ROOM" --out "$WORK/out$i" --talks 1 --timeout $((SECONDS_OF_TALK + 60)) >"$WORK/listen$i.jsonl" &
    LPIDS+=("$!")
  done
  for i in $(seq 1 "$LISTENERS"); do
    until grep -q '"listening"' "$WORK/listen$i.jsonl" 2>/dev/null; do sleep 0.05; done
  done
  before=$(grep -c 'PUT /_matrix/client/v3/sendToDevice/' "$WORK/homeserver/homeserver.log" || true)
  "$WALKIE" "${A[@]}" talk "$ROOM" --wav "$WORK/talk.wav" --batch "$batch" >/dev/null
  wait "${LPIDS[@]}"
  after=$(grep -c 'PUT /_matrix/client/v3/sendToDevice/' "$WORK/homeserver/homeserver.log" || true)
  "$WALKIE_SYNAPSE_PYTHON" - "$batch" "$((after - before))" "$SECONDS_OF_TALK" "$LISTENERS" "$WORK"/listen*.jsonl <<'PY'
import json, sys
batch, puts, secs, listeners, paths = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
events = [e for p in paths for e in map(json.loads, open(p)) if e.get("event") == "audio"]
lat = sorted(e["received_ms"] - e["ts"] for e in events)
frames = sum(e["frame_count"] for e in events)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"batch {batch} ({batch*20} ms/message), {listeners} listening device(s): {len(lat)} messages, "
      f"{frames} frames received; first-frame capture->accepted p50 {q(0.5)} ms, p95 {q(0.95)} ms, "
      f"max {lat[-1]} ms; {puts/secs:.1f} to-device PUT/s")
PY
done
