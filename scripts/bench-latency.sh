#!/usr/bin/env bash
# Live-audio latency on loopback, release build, measured with the CLI:
# a throw-away Synapse, alice talks a speech WAV for $SECONDS_OF_TALK s to
# bob's one listening device, and every audio message bob accepts is timed
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
BATCHES=("$@")
((${#BATCHES[@]})) || BATCHES=(1 2 3 5)

say "building the CLI (release)"
cargo build --release -p walkie-cli --locked
WALKIE="$CARGO_TARGET_DIR/release/walkie"

WORK=$(mktemp -d)
WALKIE_DATA="$WORK"
WALKIE_PORT=$("$WALKIE_SYNAPSE_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { [[ -n ${HS_STARTED_PID:-} ]] && kill "$HS_STARTED_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
start_local_homeserver
"$WALKIE_SYNAPSE_PYTHON" scripts/demo_setup.py --homeserver "$HOMESERVER_URL" \
  --shared-secret "$HS_SHARED_SECRET" --state "$WORK/homeserver/demo-users.json" 2>/dev/null
pw() { "$WALKIE_SYNAPSE_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/homeserver/demo-users.json" "$1"; }
A=(--data-dir "$WORK/alice"); B=(--data-dir "$WORK/bob")
"$WALKIE" "${A[@]}" login --homeserver "$HOMESERVER_URL" --user @alice:localhost --password "$(pw alice)" >/dev/null
"$WALKIE" "${B[@]}" login --homeserver "$HOMESERVER_URL" --user @bob:localhost --password "$(pw bob)" >/dev/null
ROOM=$("$WALKIE" "${A[@]}" create "latency bench" --invite @bob:localhost | sed 's/.*"room_id":"\([^"]*\)".*/\1/')
"$WALKIE" "${B[@]}" join "$ROOM" >/dev/null
"$WALKIE" "${A[@]}" consent "$ROOM" --for 1h >/dev/null
"$WALKIE" "${B[@]}" consent "$ROOM" --for 1h >/dev/null

espeak-ng -s 150 -w "$WORK/raw.wav" "This is walkie talkie, testing one two three. The quick brown fox jumps over the lazy dog, and the eagle lands at noon." 
sox "$WORK/raw.wav" -r 48000 -c 1 -b 16 "$WORK/one.wav"
sox "$WORK/one.wav" "$WORK/talk.wav" repeat 10 trim 0 "$SECONDS_OF_TALK"

for batch in "${BATCHES[@]}"; do
  "$WALKIE" "${B[@]}" listen "$ROOM" --out "$WORK/out" --talks 1 --timeout $((SECONDS_OF_TALK + 60)) >"$WORK/listen.jsonl" &
  LPID=$!
  until grep -q '"listening"' "$WORK/listen.jsonl" 2>/dev/null; do sleep 0.05; done
  : >"$WORK/synapse-mark"; before=$(grep -c 'PUT /_matrix/client/v3/sendToDevice/' "$WORK/homeserver/homeserver.log" || true)
  "$WALKIE" "${A[@]}" talk "$ROOM" --wav "$WORK/talk.wav" --batch "$batch" >/dev/null
  wait "$LPID"
  after=$(grep -c 'PUT /_matrix/client/v3/sendToDevice/' "$WORK/homeserver/homeserver.log" || true)
  "$WALKIE_SYNAPSE_PYTHON" - "$WORK/listen.jsonl" "$batch" "$((after - before))" "$SECONDS_OF_TALK" <<'PY'
import json, sys
path, batch, puts, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lat = sorted(e["received_ms"] - e["ts"] for e in map(json.loads, open(path)) if e.get("event") == "audio")
frames = sum(e["frame_count"] for e in map(json.loads, open(path)) if e.get("event") == "audio")
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print(f"batch {batch} ({batch*20} ms/message): {len(lat)} messages, {frames} frames; "
      f"first-frame capture->accepted p50 {q(0.5)} ms, p95 {q(0.95)} ms, max {lat[-1]} ms; "
      f"{puts/secs:.1f} to-device PUT/s")
PY
done
