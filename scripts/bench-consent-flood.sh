#!/usr/bin/env bash
# Bounded work whatever the room state holds (issue 12): alice talks 10 s
# to bob's device twice, before and after nine other members publish
# consent grants for 3000 made-up devices (scripts/tools/consent_flood.py),
# and the bench reports, for each, press -> claim and press -> first frame
# at bob's listener (arrival minus alice's start_ts, one clock) and the
# frames' capture -> accepted latency (p50 / p95 / max). Release CLI, throw-away
# Synapse.
#
#   bash scripts/bench-consent-flood.sh
#   ACCOUNTS=9 DEVICES=334 OUT=results.jsonl bash scripts/bench-consent-flood.sh
#
# Knobs: ACCOUNTS, DEVICES (per account; Synapse's 64 KiB event cap allows
# ~370), SECONDS_OF_TALK (10), WALKIE (a walkie binary instead of building
# the release CLI), KEEP=1, OUT (a JSON-lines file to which the two result
# lines are appended).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
source scripts/lib/bench-common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
ACCOUNTS="${ACCOUNTS:-9}"
DEVICES="${DEVICES:-334}"
SECONDS_OF_TALK="${SECONDS_OF_TALK:-10}"
PY="$WALKIE_SYNAPSE_PYTHON"

bench_walkie_cli
bench_workdir wflood
bench_homeserver
bench_walkie_group "consent flood bench" 1

say "a ${SECONDS_OF_TALK} s talk"
espeak-ng -s 150 -w "$WORK/raw.wav" "This is walkie talkie, testing one two three. The quick brown fox jumps over the lazy dog." 2>/dev/null
sox "$WORK/raw.wav" -r 48000 -c 1 -b 16 "$WORK/one.wav"
sox "$WORK/one.wav" "$WORK/talk.wav" repeat 10 trim 0 "$SECONDS_OF_TALK"

# One talk from alice to bob1; prints and appends its result line.
measure() {
  local label=$1 made_up=$2
  rm -rf "$WORK/out"
  LPIDS=()
  "$WALKIE" --data-dir "$WORK/bob1" listen "$ROOM" --out "$WORK/out" --talks 1 \
    --timeout $((SECONDS_OF_TALK + 120)) >"$WORK/listen1.jsonl" 2>"$WORK/listen1.err" &
  LPIDS+=("$!")
  PIDS+=("$!")
  bench_wait_listening 1 120
  q "$WALKIE" "${A[@]}" talk "$ROOM" --wav "$WORK/talk.wav" >/dev/null
  wait "${LPIDS[@]}" || die "bob's listener failed: $(tail -n 5 "$WORK/listen1.err")"
  "$PY" - "$label" "$made_up" "$WORK/listen1.jsonl" <<'PY' | tee -a "${OUT:-/dev/null}"
import json, sys
label, made_up, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
events = [json.loads(l) for l in open(path) if l.startswith("{")]
start = next(e for e in events if e.get("event") == "talk_started")
audio = [e for e in events if e.get("event") == "audio"]
lat = sorted(e["received_ms"] - e["ts"] for e in audio)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
first = min(audio, key=lambda e: e["received_ms"])
print(json.dumps({"kind": "consent_flood", "name": label, "made_up_devices": made_up,
                  # older CLIs do not print when the claim arrived
                  "press_to_claim_ms": start["received_ms"] - start["start_ts"] if "received_ms" in start else None,
                  "press_to_first_frame_ms": first["received_ms"] - start["start_ts"],
                  "messages": len(lat), "p50_ms": q(0.5), "p95_ms": q(0.95), "max_ms": lat[-1]}))
PY
}

measure "no flood" 0
say "flooding: $ACCOUNTS members publish grants for $DEVICES made-up devices each"
flood=$("$PY" scripts/tools/consent_flood.py --homeserver "$HOMESERVER_URL" \
  --shared-secret "$HS_SHARED_SECRET" --room "$ROOM" --alice-session "$WORK/alice/session.json" \
  --accounts "$ACCOUNTS" --devices "$DEVICES")
made_up=$(printf '%s' "$flood" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["made_up_devices"])')
# Both clients take the new state in (the next sync of each).
q "$WALKIE" "${A[@]}" status "$ROOM" >/dev/null
q "$WALKIE" --data-dir "$WORK/bob1" status "$ROOM" >/dev/null
measure "flood" "$made_up"
