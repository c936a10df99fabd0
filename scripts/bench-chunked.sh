#!/usr/bin/env bash
# Mouth-to-ear latency of CHUNKED VOICE MESSAGES through the room timeline:
# the baseline Walkie's live audio is compared against, done the way
# Element's Voice Broadcast worked. alice records the microphone in chunks of
# CHUNK_S seconds; each chunk is encoded Ogg Opus while it is recorded (24
# kbit/s, Element's voice setting), and at its end uploaded to the media
# repository and sent as an m.room.message m.audio event
# (org.matrix.msc3245.voice, io.element.voice_broadcast_chunk {sequence},
# m.reference to the broadcast's io.element.voice_broadcast_info state
# event), sequentially and in order, retrying a 429 after the server's
# retry_after_ms. $LISTENERS devices of bob long-poll /sync (timeout 30 s,
# filtered to the room), download and opusdec each chunk; the first writes
# the PCM in order to one long-running pacat on the speaker (200 ms buffer),
# so chunks play back to back and a late chunk plays late: a click's latency
# is CHUNK_S + the worst chunk path (encode flush, upload, send, 429 waits,
# /sync, download, decode) so far. Peers: scripts/tools/chunked_peer.py.
#
# Measured with scripts/bench-mouth-to-ear.sh's method, unchanged: a private
# PulseAudio server (4-channel null sink `both`; `micfeed`/`speaker` remap
# sinks onto its front/rear pairs, `mic` a remap source of its front pair), a
# click train played into micfeed, one parec of both.monitor holding mouth
# (channel 0) and ear (channel 2) on one sample clock, a calibration burst,
# and mouth_to_ear.py analyse, here with --pairing monotonic (a chunk's
# latency is never below its predecessor's but jumps by seconds).
#
# UNENCRYPTED room, plain HTTP (urllib) to a throw-away local Synapse with
# its stock rc_message limit (0.2/s, burst 10: a chunk every < 5 s runs into
# 429 after about ten). Element encrypted chunks (Megolm for the event,
# AES-CTR for the file), which adds a little: these figures are a LOWER
# BOUND of the chunked approach.
#
#   bash scripts/bench-chunked.sh                      # CHUNK_S=5, 1 listener
#   CHUNK_S=2 LISTENERS=5 bash scripts/bench-chunked.sh
#   CHUNK_S=120 bash scripts/bench-chunked.sh          # Element's default: 2 chunks, ~4 min talk
#   OUT=results.jsonl CHUNK_S=5 bash scripts/bench-chunked.sh
#
# Knobs: CHUNK_S (5) chunk length in seconds (Element Web's default is 120,
# config voice_broadcast.chunk_length; 15 with the labs flag "force small
# chunks"); LISTENERS (1) bob's devices, the first plays; SPACING_MS (500,
# 1000 if CHUNK_S >= 30) and CLICKS (80, or two chunks' worth if
# CHUNK_S >= 30) the click train after 1 s of silence; BITRATE (24) Opus
# kbit/s; THRESHOLD (0.4) click detection level, a fraction of full scale;
# OUT: a JSONL file to which one line is appended (the analyse JSON plus kind,
# peer, listeners, chunk_s, encrypted, and the chunk path's totals); KEEP=1
# keeps the work directory (recording, logs) and prints its path.
#
# Run it on a quiet machine: the listeners decode whole chunks (as Element
# did) and, with LISTENERS > 1, all on this machine's cores at once; a busy
# machine shows as "stalled" chunks in the report (pacat not fed in time).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
source scripts/lib/bench-pulse.sh
source scripts/lib/bench-common.sh
LISTENERS="${LISTENERS:-1}"
CHUNK_S="${CHUNK_S:-5}"
BITRATE="${BITRATE:-24}"
LEAD_MS=1000
TOOL="$PWD/scripts/tools/mouth_to_ear.py"
PEER="$PWD/scripts/tools/chunked_peer.py"
PY="$WALKIE_SYNAPSE_PYTHON"
((LISTENERS >= 1)) || die "LISTENERS must be at least 1"
"$PY" -c "import sys; sys.exit(not float(sys.argv[1]) >= 1)" "$CHUNK_S" || die "CHUNK_S must be a number >= 1 (seconds)"
LONG=$("$PY" -c "print(int(float('$CHUNK_S') >= 30))")
if ((LONG)); then
  SPACING_MS="${SPACING_MS:-1000}"
  # Two chunks' worth of talk (TALK_S below adds the 1 s lead and 2 s).
  CLICKS="${CLICKS:-$("$PY" -c "print(int((2 * float('$CHUNK_S') * 1000 - 3000) // $SPACING_MS))")}"
else
  SPACING_MS="${SPACING_MS:-500}"
  CLICKS="${CLICKS:-80}"
fi
for tool in pacat opusenc opusdec; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs pulseaudio, pulseaudio-utils and opus-tools)"
done

bench_workdir wchunk

# --- PulseAudio (scripts/lib/bench-pulse.sh, as for every peer) ----------------------
bench_pulse_start "$WORK/pulse"

# --- Synapse, users, room ------------------------------------------------------------
say "creating users alice and bob; an unencrypted room; signing in alice and $LISTENERS device(s) of bob"
bench_homeserver
"$PY" "$PEER" setup --homeserver "$HOMESERVER_URL" --users "$WORK/homeserver/demo-users.json" \
  --listeners "$LISTENERS" --out "$WORK/state.json" >"$WORK/setup.jsonl" \
  || die "chunked_peer.py setup failed (above)"

# --- Recording and calibration (as in bench-mouth-to-ear.sh) ------------------------
bench_pulse_clicks "$WORK" "$CLICKS" "$SPACING_MS" "$LEAD_MS"
bench_pulse_record "$WORK/rec.raw"
bench_pulse_calibrate "$WORK"
BOUNDARY=$BENCH_BOUNDARY

# --- The talk ------------------------------------------------------------------------
TALK_S=$("$PY" -c "print(($LEAD_MS + $CLICKS * $SPACING_MS) / 1000 + 2)")
# Room for the rate limiter's backlog: at most one chunk per 5 s gets through.
LISTEN_TIMEOUT=$("$PY" -c "
import math; t = $TALK_S; c = float('$CHUNK_S')
print(int(t + c + max(0, math.ceil(t / c) - 10) * 5 + 120))")
LPIDS=()
for i in $(seq 1 "$LISTENERS"); do
  play=()
  ((i > 1)) || play=(--play)
  "$PY" "$PEER" listen --state "$WORK/state.json" --index "$i" "${play[@]}" --timeout "$LISTEN_TIMEOUT" \
    >"$WORK/listen$i.jsonl" 2>"$WORK/listen$i.err" &
  LPIDS+=("$!")
  PIDS+=("$!")
done
bench_wait_listening "$LISTENERS" 30
grep -q '"output_opened"' "$WORK/listen1.jsonl" || die "listener 1 listens but has no player (pacat)"
say "$LISTENERS listener(s) on /sync (bob1 plays to speaker); alice talks from mic for $TALK_S s in ${CHUNK_S} s chunks"
"$PY" "$PEER" talk --state "$WORK/state.json" --seconds "$TALK_S" --chunk-s "$CHUNK_S" --bitrate "$BITRATE" \
  >"$WORK/talk.jsonl" 2>"$WORK/talk.err" &
TALK_PID=$!
PIDS+=("$TALK_PID")
for _ in $(seq 600); do
  grep -q '"capture_live"' "$WORK/talk.jsonl" 2>/dev/null && break
  kill -0 "$TALK_PID" 2>/dev/null || { cat "$WORK/talk.jsonl"; tail -n 20 "$WORK/talk.err" >&2; die "talk exited before capture was live (above)"; }
  sleep 0.02
done
grep -q '"capture_live"' "$WORK/talk.jsonl" || die "talk not live after 12 s"
say "capture live; playing $CLICKS clicks ${SPACING_MS} ms apart into micfeed"
paplay --device=micfeed "$WORK/clicks.wav"
say "clicks played; waiting for the last chunks to be sent, received and played"
wait "$TALK_PID" || { tail -n 20 "$WORK/talk.err" >&2; die "talk failed (above)"; }
for i in $(seq 1 "$LISTENERS"); do
  wait "${LPIDS[$((i - 1))]}" || { tail -n 5 "$WORK/listen$i.err" >&2; say "listener $i exited with an error (above)"; }
done
sleep 0.5
bench_pulse_record_stop
grep -q '"playback_drained"' "$WORK/listen1.jsonl" || say "warning: bob1's playback did not drain"

# --- Analysis --------------------------------------------------------------------------
say "analysing $(($(stat -c %s "$WORK/rec.raw") / 8 / 48)) ms of recording (talk from sample $BOUNDARY)"
echo "chunked voice messages: CHUNK_S=$CHUNK_S s, Ogg Opus $BITRATE kbit/s, UNENCRYPTED room (a lower bound: Element encrypted event and file), Synapse stock rc_message 0.2/s burst 10"
LFILES=()
for i in $(seq 1 "$LISTENERS"); do LFILES+=("$WORK/listen$i.jsonl"); done
chunks=$("$PY" "$PEER" report --talk "$WORK/talk.jsonl" --listen "${LFILES[@]}")
grep -v '^json ' <<<"$chunks"
status=0
analysis=$("$PY" "$TOOL" analyse "$WORK/rec.raw" --channels 4 --mouth 0 --ear 2 --boundary "$BOUNDARY" \
  --clicks "$CLICKS" --spacing-ms "$SPACING_MS" --listeners "$LISTENERS" --threshold "${THRESHOLD:-0.4}" \
  --pairing monotonic) || status=$?
printf '%s\n' "$analysis"
if [[ -n ${OUT:-} ]]; then
  ANALYSIS="$analysis" CHUNKS="$chunks" "$PY" - "$OUT" "$CHUNK_S" "$LISTENERS" "$BITRATE" <<'PYEOF'
import json, os, sys
out, chunk_s, listeners, bitrate = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
last_json = lambda text: json.loads([l for l in text.splitlines() if l.startswith("json ")][-1][5:])
a, c = last_json(os.environ["ANALYSIS"]), last_json(os.environ["CHUNKS"])
name = f"{chunk_s:g}"
a.update({"kind": "mouth_to_ear", "peer": f"voice-messages-{name}s", "listeners": listeners,
          "chunk_s": chunk_s, "encrypted": False, "opus_kbps": bitrate, "chunk_path": c})
with open(out, "a") as f:
    f.write(json.dumps(a) + "\n")
PYEOF
  say "appended to $OUT"
fi
exit "$status"
