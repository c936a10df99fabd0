#!/usr/bin/env bash
# The benchmark suite (issue 11), release builds: every bench appends its
# results to one JSON-lines file, then scripts/tools/bench_report.py writes
# docs/benchmarks.json (stable keys, the machine, the date, each peer beside
# Walkie) and docs/mouth-to-ear.png (mouth-to-ear against listening devices).
#
#   bash scripts/bench.sh                      # everything, about an hour
#   ONLY="walkie fanout" bash scripts/bench.sh # some parts; re-running a part
#                                              # replaces its earlier lines
#   bash scripts/bench.sh report               # only rebuild json + plot
#
# Parts (ONLY, default all, in this order):
#   walkie   mouth-to-ear at the (virtual) devices, scripts/bench-mouth-to-ear.sh:
#            a later talk (peer walkie: the Olm sessions exist) for COUNTS,
#            and the first talk between fresh devices (walkie-first-talk,
#            which sets them up) for PEER_COUNTS, and a later talk with a
#            -60 dBFS noise floor in the microphone (walkie-noise-60dBFS,
#            1 device: the clicks' pauses are not digital silence)
#   mumble   the same for Mumble, default and lowest-latency settings,
#            scripts/bench-mumble.sh
#   chunked  the same for chunked voice messages through the timeline
#            (Voice Broadcast style), scripts/bench-chunked.sh
#   fanout   capture -> accepted at N listening devices with CPU per device
#            count, sealed and per-device Olm, scripts/bench-fanout.sh
#   audio    Opus CPU per stream, press -> capture live, output open
#            (scripts/bench-audio.sh); the output and capture streams alone,
#            write -> heard at the sink's monitor (scripts/pulse-latency.sh)
#   idle     the desktop app signed in and idle: CPU, memory of the app and
#            its webview, requests per minute, streams (scripts/bench-app-idle.sh)
#   collision  presses 10 ms apart on two federating homeservers (0 and
#            1 s one-way): time until every client agrees, scripts/bench-collision.sh
#   flood    press -> claim and frame latency with and without consent grants
#            for 3000 made-up devices in the group (scripts/bench-consent-flood.sh)
# Knobs: COUNTS ("1 5 10 20 50") listening devices for walkie and fanout;
# PEER_COUNTS ("1 5") for mumble and chunked; OLM_COUNTS ("1 5 10") for the
# per-device Olm fan-out (it takes seconds per message past that); RESULTS
# (docs/bench-results.jsonl) the JSON-lines file; IDLE_SECONDS (60);
# IDLE_RELEASE (1; 0 measures the debug app the tests build, no release
# build of the app needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/lib/bench-common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
RESULTS="${RESULTS:-$PWD/docs/bench-results.jsonl}"
COUNTS="${COUNTS:-1 5 10 20 50}"
PEER_COUNTS="${PEER_COUNTS:-1 5}"
OLM_COUNTS="${OLM_COUNTS:-1 5 10}"
ONLY="${ONLY:-walkie mumble chunked fanout audio idle collision flood}"
[[ ${1:-} == report ]] && ONLY=""

ensure_plot_venv

want() { [[ " $ONLY " == *" $1 "* ]]; }
# The steps, for the progress display.
STEPS=()
want walkie && for n in $COUNTS; do STEPS+=("walkie $n"); done
want walkie && for n in $PEER_COUNTS; do STEPS+=("walkie-first-talk $n"); done
want walkie && STEPS+=("walkie-noise-60dBFS 1")
want mumble && for m in default lowest; do for n in $PEER_COUNTS; do STEPS+=("mumble-$m $n"); done; done
want chunked && for n in $PEER_COUNTS; do STEPS+=("chunked $n"); done
want fanout && STEPS+=("fanout sealed" "fanout olm")
want audio && STEPS+=("audio" "device")
want idle && STEPS+=("idle")
want collision && STEPS+=("collision")
want flood && STEPS+=("flood")
STEP=0
step() {
  STEP=$((STEP + 1))
  printf '\n\033[1;34m==> [bench %d/%d, %s elapsed] %s\033[0m\n' "$STEP" "${#STEPS[@]}" \
    "$(date -u -d "@$SECONDS" +%H:%M:%S)" "$*" >&2
}
# Runs a bench; a failure stops the suite with the part's name.
run() {
  local what=$1
  shift
  "$@" || die "bench part '$what' failed (its output is above)"
}
# Appends the `json ` lines of a command's output to RESULTS (with extra
# fields), printing everything.
collect() {
  local extra=$1
  shift
  local out
  out=$("$@") || { printf '%s\n' "$out"; return 1; }
  printf '%s\n' "$out"
  printf '%s\n' "$out" | sed -n 's/^json //p' | EXTRA="$extra" python3 -c '
import json, os, sys
extra = json.loads(os.environ["EXTRA"])
for line in sys.stdin:
    try:
        r = json.loads(line)
    except json.JSONDecodeError as e:
        print(f"skipped a result line that is not JSON ({e}): {line.strip()}", file=sys.stderr)
        continue
    r.update(extra); print(json.dumps(r))' >>"$RESULTS"
}

if ((${#STEPS[@]})); then
  mkdir -p "$(dirname "$RESULTS")"
  touch "$RESULTS"
  say "building the release CLI"
  cargo build --release -p walkie-cli --locked
  export WALKIE="$CARGO_TARGET_DIR/release/walkie"
  say "${#STEPS[@]} steps; results go to $RESULTS"
fi

if want walkie; then
  for n in $COUNTS; do
    step "Walkie mouth-to-ear, $n listening device(s), a later talk"
    OUT="$RESULTS" WARMUP=1 LISTENERS=$n run "walkie $n" bash scripts/bench-mouth-to-ear.sh
  done
  for n in $PEER_COUNTS; do
    step "Walkie mouth-to-ear, $n listening device(s), the first talk between them"
    OUT="$RESULTS" WARMUP=0 LISTENERS=$n run "walkie-first-talk $n" bash scripts/bench-mouth-to-ear.sh
  done
  step "Walkie mouth-to-ear, 1 listening device, a later talk over a -60 dBFS microphone noise floor"
  OUT="$RESULTS" WARMUP=1 LISTENERS=1 NOISE_DBFS=-60 run "walkie-noise-60dBFS 1" bash scripts/bench-mouth-to-ear.sh
fi
if want mumble; then
  for m in default lowest; do
    for n in $PEER_COUNTS; do
      step "Mumble ($m settings) mouth-to-ear, $n listening client(s)"
      OUT="$RESULTS" MODE=$m LISTENERS=$n run "mumble-$m $n" bash scripts/bench-mumble.sh
    done
  done
fi
if want chunked; then
  for n in $PEER_COUNTS; do
    step "chunked voice messages mouth-to-ear, $n listening client(s)"
    OUT="$RESULTS" LISTENERS=$n run "chunked $n" bash scripts/bench-chunked.sh
  done
fi
if want fanout; then
  step "fan-out, sealed: $COUNTS listening devices"
  OUT="$RESULTS" COUNTS="$COUNTS" MODES=sealed run "fanout sealed" bash scripts/bench-fanout.sh
  step "fan-out, per-device Olm: $OLM_COUNTS listening devices"
  OUT="$RESULTS" COUNTS="$OLM_COUNTS" MODES=olm run "fanout olm" bash scripts/bench-fanout.sh
fi
if want audio; then
  step "audio: Opus CPU, press -> capture live, output open"
  run audio collect '{}' bash scripts/bench-audio.sh
  step "device: output and capture stream latency, ALSA and native PulseAudio"
  run device collect '{}' bash scripts/pulse-latency.sh
fi
if want idle; then
  build=release
  [[ ${IDLE_RELEASE:-1} == 1 ]] || build=debug
  step "the desktop app idle for ${IDLE_SECONDS:-60} s ($build build)"
  out=$(RELEASE=${IDLE_RELEASE:-1} bash scripts/bench-app-idle.sh "${IDLE_SECONDS:-60}") || { printf '%s\n' "$out"; die "bench part 'idle' failed"; }
  printf '%s\n' "$out"
  LINE=$(printf '%s\n' "$out" | grep '^{' | tail -n 1) BUILD=$build python3 -c '
import json, os
r = json.loads(os.environ["LINE"]); r.update({"kind": "idle", "name": "walkie-app", "build": os.environ["BUILD"]})
print(json.dumps(r))' >>"$RESULTS"
fi

if want collision; then
  step "collisions: presses 10 ms apart on two homeservers, 0 and 1 s one-way"
  OUT="$RESULTS" run collision bash scripts/bench-collision.sh
fi

if want flood; then
  step "consent grants for 3000 made-up devices: press -> claim and frame latency"
  OUT="$RESULTS" run flood bash scripts/bench-consent-flood.sh
fi

say "writing docs/benchmarks.json and docs/mouth-to-ear.png from $RESULTS"
"$BENCH_VENV/bin/python" scripts/tools/bench_report.py "$RESULTS" \
  --json docs/benchmarks.json --plot docs/mouth-to-ear.png --markdown docs/benchmarks.md
say "done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
