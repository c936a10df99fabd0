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
# keeps the work directory (the recording, the logs) and prints its path;
# BATCH (1) frames per message; WARMUP (0) short talks alice gives first
# (1: the measured talk is not the first between these devices, so its
# claim finds the Olm sessions made, as every talk after a user's first);
# NOISE_DBFS (unset) a microphone noise floor: white noise at that RMS level
# (e.g. -60) played into the microphone from before the measured talk's
# press to its end, under the clicks (without it the feed is digitally
# silent between clicks, as behind noise suppression); OUT a JSON-lines file
# to which one result line is appended (scripts/bench.sh collects them).
#
# One sample clock for mouth and ear: scripts/lib/bench-pulse.sh (a private
# PulseAudio server whose one 4-channel null sink holds the microphone feed
# and the speaker, recorded by one parec; its header says how and why).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
source scripts/lib/bench-pulse.sh
source scripts/lib/bench-common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
LISTENERS="${LISTENERS:-1}"
CLICKS="${CLICKS:-40}"
SPACING_MS="${SPACING_MS:-300}"
BATCH="${BATCH:-1}"
WARMUP="${WARMUP:-0}"
NOISE_DBFS="${NOISE_DBFS:-}"
LEAD_MS=1000
PY="$WALKIE_SYNAPSE_PYTHON"
((LISTENERS >= 1)) || die "LISTENERS must be at least 1"

bench_walkie_cli
bench_workdir wm2e

# --- PulseAudio ---------------------------------------------------------------
bench_pulse_start "$WORK/pulse"

# --- Synapse, users, group -------------------------------------------------------
bench_homeserver
bench_walkie_group "mouth-to-ear bench" "$LISTENERS"

# --- Recording and calibration ---------------------------------------------------
bench_pulse_clicks "$WORK" "$CLICKS" "$SPACING_MS" "$LEAD_MS"
bench_pulse_record "$WORK/rec.raw"
bench_pulse_calibrate "$WORK"

# --- The talk --------------------------------------------------------------------
TALK_S=$("$PY" -c "print(($LEAD_MS + $CLICKS * $SPACING_MS) / 1000 + 2)")
LPIDS=()
for i in $(seq 1 "$LISTENERS"); do
  play=()
  ((i > 1)) || play=(--play)
  RUST_LOG="${LISTEN_LOG:-info}" "$WALKIE" --data-dir "$WORK/bob$i" listen "$ROOM" --out "$WORK/out$i" "${play[@]}" --talks $((1 + WARMUP)) \
    --timeout "$("$PY" -c "print(int($TALK_S) + 60)")" >"$WORK/listen$i.jsonl" 2>"$WORK/listen$i.err" &
  LPIDS+=("$!")
  PIDS+=("$!")
done
bench_wait_listening "$LISTENERS" 30
# A warm-up talk is 3 s of silence (longer than the jitter window, so the
# target it leaves as the next talk's hint is the link's); the measured talk
# starts once every listener has saved it and is past its recording: alice
# renews her consent after the talk posted it, and a listener re-reads the
# group (`room_changed`) for that state event, not for the voice message.
warmed() { # $1 = warm-up talks done: each listener saved them, then saw a room change
  local f
  for f in "$WORK"/listen*.jsonl; do
    "$PY" - "$f" "$1" <<'PYEOF' || return 1
import json, sys
events = [json.loads(l).get("event") for l in open(sys.argv[1]) if l.startswith("{")]
saved = [i for i, e in enumerate(events) if e == "saved"]
ok = len(saved) >= int(sys.argv[2]) and "room_changed" in events[saved[-1]:]
sys.exit(0 if ok else 1)
PYEOF
  done
}
for w in $(seq 1 "$WARMUP"); do
  say "warm-up talk $w of $WARMUP (3 s of silence)"
  "$WALKIE" "${A[@]}" talk "$ROOM" --mic --no-cues --seconds 3 >"$WORK/warmup$w.jsonl" 2>"$WORK/warmup$w.err" \
    || { tail -n 20 "$WORK/warmup$w.err" >&2; die "warm-up talk failed (above)"; }
  "$WALKIE" "${A[@]}" consent "$ROOM" --for 8h >/dev/null 2>"$WORK/renew$w.err" \
    || { tail -n 20 "$WORK/renew$w.err" >&2; die "renewing alice's consent failed (above)"; }
  # 30 s, and a second more per listener: at 50 on two cores the
  # listeners' syncs alone take that long.
  deadline=$((SECONDS + 30 + LISTENERS))
  until warmed "$w" || ((SECONDS >= deadline)); do sleep 0.2; done
  warmed "$w" || die "the listeners did not save warm-up talk $w and see the state after its recording within $((30 + LISTENERS)) s"
done
if [[ -n $NOISE_DBFS ]]; then
  "$PY" "$BENCH_PULSE_TOOL" noise "$WORK/noise.wav" --seconds "$("$PY" -c "print($TALK_S + 15)")" --dbfs "$NOISE_DBFS"
  say "a noise floor at $NOISE_DBFS dBFS into micfeed, from before the press"
  paplay --device=micfeed "$WORK/noise.wav" &
  NOISE_PID=$!
  PIDS+=("$NOISE_PID")
  for _ in $(seq 100); do
    pactl list sink-inputs 2>/dev/null | grep -q 'noise.wav' && break
    sleep 0.05
  done
  pactl list sink-inputs 2>/dev/null | grep -q 'noise.wav' || die "the noise stream did not start within 5 s"
  sleep 1 # the talk opens on the noise floor, not on its fade-in
fi
say "$LISTENERS listener(s) ready (bob1 plays to speaker); alice talks from mic for $TALK_S s"
RUST_LOG="${TALK_LOG:-info}" "$WALKIE" "${A[@]}" talk "$ROOM" --mic --no-cues --batch "$BATCH" --seconds "$TALK_S" >"$WORK/talk.jsonl" 2>"$WORK/talk.err" &
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
bench_pulse_record_stop
grep -q '"output_opened"' "$WORK/listen1.jsonl" \
  || say "warning: bob1 never opened its output: $(grep -h '"output_failed"' "$WORK/listen1.jsonl" | head -1)"

# --- Analysis ----------------------------------------------------------------------
say "analysing $(($(stat -c %s "$WORK/rec.raw") / 8 / 48)) ms of recording (talk from sample $BENCH_BOUNDARY)"
echo "binary: $WALKIE"
sed 's/\x1b\[[0-9;]*m//g' "$WORK/talk.err" "$WORK/listen1.err" | grep -ho 'capture opened.*\|output opened.*' | sed 's/^/devices: /' || true
sed 's/\x1b\[[0-9;]*m//g' "$WORK/listen1.err" | grep -ho 'live talk played.*' | sed 's/^/bob1 player: /' || true
# No click at the speaker is a result too (a collapsed fan-out): it is
# recorded with every click lost, and the script then fails.
heard=1
analysis=$(bench_pulse_analyse "$WORK/rec.raw" "$CLICKS" "$SPACING_MS" "$LISTENERS" "${THRESHOLD:-0.4}") || heard=""
printf '%s\n' "$analysis"
if [[ -n ${OUT:-} ]]; then
  # One JSON line for scripts/bench.sh: the analysis, plus what the talker
  # and the playing listener reported (capture start-up, jitter buffer).
  WARMUP="$WARMUP" NOISE_DBFS="$NOISE_DBFS" ANALYSIS="$analysis" "$PY" - "$OUT" "$LISTENERS" "$BATCH" "$WORK/talk.jsonl" "$WORK/listen1.err" <<'PYEOF'
import json, os, re, sys
out, listeners, batch, talk, listen_err = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
res = next(json.loads(l[5:]) for l in os.environ["ANALYSIS"].splitlines() if l.startswith("json "))
res.pop("per_click_ms", None)
live = next((e for e in map(json.loads, open(talk)) if e.get("event") == "capture_live"), {})
player = {}
for line in open(listen_err, errors="replace"):
    line = re.sub(r"\x1b\[[0-9;]*m", "", line)
    if "live talk played" in line:
        player = {k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", line)}
peer = "walkie" if int(os.environ.get("WARMUP", "0")) else "walkie-first-talk"
noise = os.environ.get("NOISE_DBFS") or None
if noise:
    peer += f"-noise{noise}dBFS"
res.update({
    "kind": "mouth_to_ear", "peer": peer, "listeners": listeners, "batch": batch, "warmup_talks": int(os.environ.get("WARMUP", "0")),
    "mic_noise_dbfs": float(noise) if noise else None,
    "press_to_capture_live_ms": live.get("press_to_live_ms"),
    "capture_open_to_first_samples_ms": live.get("open_to_first_samples_ms"),
    "jitter_buffer": player,
})
with open(out, "a") as f:
    f.write(json.dumps(res) + "\n")
print(f"appended to {out}")
PYEOF
fi
[[ -n $heard ]] || die "no click reached bob's speaker"
