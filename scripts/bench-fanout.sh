#!/usr/bin/env bash
# Live-audio fan-out (issue 11), release build: one throw-away Synapse, alice
# talks a speech WAV to N listening devices of bob, for each N in $COUNTS and
# each fan-out in $MODES (sealed: talk keys over Olm and batches sealed once,
# the default; olm: every batch Olm-encrypted per device, the old path). For
# every audio message each listener accepts it reports received_ms - ts
# (capture of the message's first frame -> decrypted and accepted at the
# listener, one machine, one clock), and the CPU the talker, the listeners
# and Synapse used during the talk (from /proc, in % of one core).
#
#   bash scripts/bench-fanout.sh
#   COUNTS="1 5" MODES="sealed olm" BATCH=1 SECONDS_OF_TALK=10 bash scripts/bench-fanout.sh
#
# Knobs: COUNTS ("1 5 10 20 50"), MODES ("sealed"), BATCH (1) frames per
# message, SECONDS_OF_TALK (10), WALKIE_HS_DB (sqlite; postgres: Synapse on
# a private PostgreSQL cluster, its CPU counted with Synapse's), OUT (a
# JSON-lines file for the results; default: only printed), WALKIE (a walkie binary instead of building it).
# Each run has its own homeserver and exactly N devices of bob (the first
# creates his identity and verifies the others with its recovery key: only
# signed devices hear), all consenting and all listening.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
source scripts/lib/bench-common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
COUNTS=(${COUNTS:-1 5 10 20 50})
MODES=(${MODES:-sealed})
BATCH="${BATCH:-1}"
SECONDS_OF_TALK="${SECONDS_OF_TALK:-10}"
PY="$WALKIE_SYNAPSE_PYTHON"
MAX=0
for n in "${COUNTS[@]}"; do ((n > MAX)) && MAX=$n; done
((MAX >= 1)) || die "COUNTS must hold positive numbers"

bench_walkie_cli
bench_workdir wfan
LPIDS=()
bench_cleanup_extra() {
  local p
  for p in "${LPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}

ROOT="$WORK"
espeak-ng -s 150 -w "$WORK/raw.wav" "This is walkie talkie, testing one two three. The quick brown fox jumps over the lazy dog, and the eagle lands at noon."
sox "$WORK/raw.wav" -r 48000 -c 1 -b 16 "$WORK/one.wav"
sox "$WORK/one.wav" "$WORK/talk.wav" repeat 10 trim 0 "$SECONDS_OF_TALK"
TALK_WAV="$ROOT/talk.wav"

# CPU ticks (user + system) of a process and its threads.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The homeserver's ticks: Synapse's, plus its PostgreSQL server processes'
# (WALKIE_HS_DB=postgres; the backends of Synapse's pooled connections
# live through the whole run, so their ticks are counted).
hs_ticks() {
  local t pm c
  t=$(ticks "$HS_STARTED_PID")
  if [[ -n ${PG_STARTED_DIR:-} ]]; then
    pm=$(head -n 1 "$PG_STARTED_DIR/data/postmaster.pid")
    for c in "$pm" $(pgrep -P "$pm"); do t=$((t + $(ticks "$c"))); done
  fi
  echo "$t"
}
for mode in "${MODES[@]}"; do
  for n in "${COUNTS[@]}"; do
    # A fresh homeserver and exactly N consenting devices for each run: no
    # device idle in the group (it would still be sent every message) and
    # no backlog of an earlier run's messages queued for a listener.
    [[ -n ${HS_STARTED_PID:-} ]] && { kill "$HS_STARTED_PID" 2>/dev/null; wait "$HS_STARTED_PID" 2>/dev/null || true; }
    stop_local_postgres
    WORK="$ROOT/$mode-$n"
    WALKIE_DATA="$WORK"
    mkdir -p "$WORK"
    bench_homeserver
    bench_walkie_group "fan-out bench" "$n"
    say "fan-out $mode, $n listening device(s), batch $BATCH: starting listeners"
    LPIDS=()
    for i in $(seq 1 "$n"); do
      # --talks 2: alive after the talk, so their CPU can be read.
      "$WALKIE" --data-dir "$WORK/bob$i" listen "$ROOM" --out "$WORK/out$i" --talks 2 \
        --timeout $((SECONDS_OF_TALK + 120)) >"$WORK/listen$i.jsonl" 2>"$WORK/listen$i.err" &
      LPIDS+=("$!")
    done
    bench_wait_listening "$n" 60
    hs0=$(hs_ticks)
    l0=0
    for p in "${LPIDS[@]}"; do l0=$((l0 + $(ticks "$p"))); done
    before=$(grep -c 'PUT /_matrix/client/v3/sendToDevice/' "$WORK/homeserver/homeserver.log" || true)
    say "alice talks $SECONDS_OF_TALK s"
    t0=$(date +%s%N)
    WALKIE_FANOUT=$mode /usr/bin/time -f '%U %S' -o "$WORK/talk.time" \
      "$WALKIE" "${A[@]}" talk "$ROOM" --wav "$TALK_WAV" --batch "$BATCH" >"$WORK/talk.jsonl" 2>"$WORK/talk.err" \
      || { tail -n 20 "$WORK/talk.err" >&2; die "talk failed"; }
    t1=$(date +%s%N)
    hs1=$(hs_ticks)
    l1=0
    for p in "${LPIDS[@]}"; do l1=$((l1 + $(ticks "$p"))); done
    # Every listener has its talk (its "saved" line) before they are stopped.
    for i in $(seq 1 "$n"); do
      for _ in $(seq 600); do
        grep -q '"saved"' "$WORK/listen$i.jsonl" 2>/dev/null && break
        sleep 0.05
      done
    done
    for p in "${LPIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    LPIDS=()
    after=$(grep -c 'PUT /_matrix/client/v3/sendToDevice/' "$WORK/homeserver/homeserver.log" || true)
    "$PY" - "$mode" "$n" "$BATCH" "$((after - before))" "$(((t1 - t0) / 1000000))" "$((hs1 - hs0))" "$((l1 - l0))" \
      "$(cat "$WORK/talk.time")" "${OUT:-}" "$WORK"/listen*.jsonl <<'PY'
import json, os, sys
mode, n, batch, puts, wall_ms, hs_ticks, l_ticks = sys.argv[1], *map(int, sys.argv[2:8])
talk_user, talk_sys = map(float, sys.argv[8].split())
out, paths = sys.argv[9], sys.argv[10:]
events = [e for p in paths for e in map(json.loads, open(p)) if e.get("event") == "audio"]
lat = sorted(e["received_ms"] - e["ts"] for e in events)
frames = sum(e["frame_count"] for e in events)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
secs = wall_ms / 1000
res = {
    "kind": "fanout", "fanout": mode, "listeners": n, "batch": batch, "messages": len(lat), "frames": frames,
    "p50_ms": q(0.5), "p95_ms": q(0.95), "max_ms": lat[-1] if lat else None,
    "to_device_puts_per_s": round(puts / secs, 1),
    # % of one core over the talk's wall time (the talker's includes its
    # start-up: restoring the session, its first sync).
    "talker_cpu_pct": round(100 * (talk_user + talk_sys) / secs, 1),
    "homeserver_cpu_pct": round(hs_ticks / secs, 1),
    "listeners_cpu_pct": round(l_ticks / secs, 1),
    "talk_wall_s": round(secs, 2),
    "homeserver_db": os.environ.get("WALKIE_HS_DB", "sqlite"),
}
print(f"fan-out {mode}, {n} device(s), batch {batch}: {len(lat)} messages ({frames} frames); "
      f"capture->accepted p50 {res['p50_ms']} ms, p95 {res['p95_ms']} ms, max {res['max_ms']} ms; "
      f"{res['to_device_puts_per_s']} PUT/s; CPU % of a core: talker {res['talker_cpu_pct']}, "
      f"Synapse ({res['homeserver_db']}) {res['homeserver_cpu_pct']}, listeners {res['listeners_cpu_pct']}")
print("json " + json.dumps(res))
if out:
    with open(out, "a") as f:
        f.write(json.dumps(res) + "\n")
PY
  done
done
