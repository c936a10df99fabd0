#!/usr/bin/env bash
# Mouth-to-ear latency of Mumble (issue 11), the reference for Walkie's
# figures, measured exactly as scripts/bench-mouth-to-ear.sh measures Walkie:
# a private PulseAudio server (scripts/lib/bench-pulse.sh), a click train
# played into the `mic` that alice's client records, timed until it comes out
# of the `speaker` that bob1's client plays to, both on one parec of one
# 4-channel null sink; `mouth_to_ear.py analyse` does the figures.
#
# Mumble here is Debian 12's: a local murmur (mumble-server 1.3.4, run as a
# plain process with its own ini, port, sqlite and certificate in the work
# directory) and the real mumble 1.3.4 GUI clients under one Xvfb, each with
# its own HOME whose Mumble.conf is written beforehand (no audio or
# certificate wizard; the server's certificate is pre-trusted in the client's
# database; the PulseAudio backend on mic/speaker). All clients join the root
# channel. alice starts self-muted and is unmuted (`mumble rpc unmute`) after
# the calibration, 1 s before the first click, like Walkie's talk.
#
#   bash scripts/bench-mumble.sh                      # both modes, 1 listener
#   MODE=lowest LISTENERS=5 bash scripts/bench-mumble.sh
#   OUT=results.jsonl MODE=default bash scripts/bench-mumble.sh
#
# Modes (peer in the JSON line):
#   default  mumble-default: Mumble's default audio settings (quality 40000,
#            net/framesperpacket 2 = 20 ms, net/jitterbuffer 1,
#            audio/outputdelay 5), except the transmit mode: the default Voice
#            Activity (amplitude, vadmax 0.98) never opens on the clicks, so
#            alice transmits continuously (audio/transmit=0). A 5 ms burst at
#            0.9 in a 10 ms frame is ~-7 dBFS RMS, a level of 1 - 7/96 = 0.93
#            (about) after preprocessing; TRANSMIT=vad measured 0 of 10
#            clicks at the speaker (ear channel silent).
#   lowest   mumble-lowest: the lowest-latency settings the UI offers:
#            net/framesperpacket 1 (10 ms per packet), net/jitterbuffer 1 (the
#            slider's minimum), audio/outputdelay 1 (minimum; PulseAudio
#            tlength 20 ms), audio/transmit 0 (continuous).
#   both     (default) one after the other, same murmur and PulseAudio.
#
# Knobs: MODE (both); LISTENERS (1) listening clients: bob1 plays to the
# speaker, bob2.. play to a separate null sink `extra` (so the fan-out and the
# decoding are real); CLICKS (40) clicks, SPACING_MS (300) apart after 1 s of
# silence; THRESHOLD (0.1, see below) click detection level; TRANSMIT (continuous)
# alice's transmit mode in the default mode: `vad` keeps Mumble's default
# Voice Activity (to check that it misses the clicks); OUT: append one JSON
# line per mode (analyse's object plus kind, peer, listeners, settings,
# mumble_version, threshold, loadavg_1m); KEEP=1 keeps the work directory (recordings, logs) and prints its path.
#
# Not the voice path, set for every client: the notification sounds and TTS
# off (a join sound in bob1's speaker would look like a click), update and
# plugin checks off, ask-on-quit off. Listeners are self-muted and record a
# silent source (`quiet.monitor`); alice plays to `extra`.
#
# THRESHOLD is 0.1 here, not bench-mouth-to-ear.sh's 0.4 (chosen there to be
# above Walkie's own cues at 0.25; Mumble's speaker plays no cue here).
# Mumble's default input chain (Speex AGC and noise suppression) ramps in: its
# first click comes out at ~0.39 of full scale, the later ones at ~0.55. At
# 0.4 the first click is missed and analyse's pairing shifts every click by
# one spacing (a p50 of ~396 ms instead of ~96 ms). At 0.1 the onsets fall
# within the same 1 ms ramp, so the figures move by well under 1 ms.
#
# Every listener is a full Qt client decoding and playing the stream: 50 work
# (~66 s a mode on 2 cores) but the figures then measure the CPU, not Mumble.
# Latency swings of more than half the spacing (Mumble's jitter buffer grows
# by whole frames when its client is starved) show as lost + stray clicks.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

say() { printf '\033[1m[bench-mumble]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bench-mumble] error:\033[0m %s\n' "$*" >&2; exit 1; }

MODE="${MODE:-both}"
LISTENERS="${LISTENERS:-1}"
CLICKS="${CLICKS:-40}"
SPACING_MS="${SPACING_MS:-300}"
THRESHOLD="${THRESHOLD:-0.1}"
TRANSMIT="${TRANSMIT:-continuous}"
LEAD_MS=1000
PY="${PY:-python3}"
case $MODE in default | lowest) MODES=("$MODE") ;; both) MODES=(default lowest) ;; *) die "MODE must be default, lowest or both (got $MODE)" ;; esac
case $TRANSMIT in continuous | vad) ;; *) die "TRANSMIT must be continuous or vad (got $TRANSMIT)" ;; esac
[[ $LISTENERS =~ ^[0-9]+$ ]] && ((LISTENERS >= 1)) || die "LISTENERS must be at least 1"

# --- Debian packages (idempotent: scripts/setup.sh's apt_ensure) ----------------
apt_ensure mumble mumble-server xvfb dbus openssl pulseaudio pulseaudio-utils
for tool in murmurd mumble Xvfb dbus-daemon openssl "$PY"; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
"$PY" -c 'import sqlite3' 2>/dev/null || die "$PY has no sqlite3 module (needed to pre-trust murmur's certificate)"
MUMBLE_VERSION=$(dpkg-query -W -f='${Version}' mumble)
MURMUR_VERSION=$(dpkg-query -W -f='${Version}' mumble-server)

source scripts/lib/bench-pulse.sh

# A short path: the PulseAudio socket path must stay under 108 bytes.
WORK=$(mktemp -d /tmp/mmb.XXXXXX)
CLIENT_PIDS=()
AUX_PIDS=()
stop_clients() {
  local p _
  for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=""
    for p in "${CLIENT_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ -n $alive ]] || break
    sleep 0.1
  done
  for p in "${CLIENT_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  CLIENT_PIDS=()
}
cleanup() {
  local p
  stop_clients
  bench_pulse_stop
  for p in "${AUX_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [[ -n ${KEEP:-} ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- PulseAudio, Xvfb, D-Bus -------------------------------------------------------
# `extra`: where alice and bob2.. play; `quiet`: its monitor is the listeners'
# (silent) microphone.
bench_pulse_start "$WORK/pulse" "load-module module-null-sink sink_name=extra rate=48000 channels=2 sink_properties='device.description=\"Other clients output\"'
load-module module-null-sink sink_name=quiet rate=48000 channels=2 sink_properties='device.description=\"Silence\"'"

Xvfb -displayfd 5 -nolisten tcp -screen 0 1024x768x24 5>"$WORK/xdisplay" >"$WORK/xvfb.log" 2>&1 &
AUX_PIDS+=("$!")
for _ in $(seq 100); do [[ -s $WORK/xdisplay ]] && break; kill -0 "${AUX_PIDS[0]}" 2>/dev/null || break; sleep 0.1; done
[[ -s $WORK/xdisplay ]] || { cat "$WORK/xvfb.log" >&2; die "Xvfb did not start (log above)"; }
DISPLAY_NUM=":$(tr -d '[:space:]' <"$WORK/xdisplay")"
dbus-daemon --session --nofork --nopidfile --address="unix:path=$WORK/bus" >"$WORK/dbus.log" 2>&1 &
AUX_PIDS+=("$!")
for _ in $(seq 100); do [[ -S $WORK/bus ]] && break; sleep 0.05; done
[[ -S $WORK/bus ]] || { cat "$WORK/dbus.log" >&2; die "dbus-daemon did not start (log above)"; }
say "Xvfb on $DISPLAY_NUM, a private D-Bus session bus"

# --- murmur --------------------------------------------------------------------
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
M="$WORK/murmur"
mkdir -p "$M"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench-murmur \
  -keyout "$M/key.pem" -out "$M/cert.pem" >/dev/null 2>&1 || die "openssl could not make murmur's certificate"
DIGEST=$(openssl x509 -in "$M/cert.pem" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g' | tr 'A-F' 'a-f')
{
  echo "database=$M/murmur.sqlite"
  echo "host=127.0.0.1"
  echo "port=$PORT"
  echo "ice="
  echo "bonjour=false"
  echo "welcometext="
  echo "users=200"
  echo "autobanAttempts=0" # LISTENERS connections from one address would be banned
  echo "kdfiterations=1000"
  echo "sslCert=$M/cert.pem"
  echo "sslKey=$M/key.pem"
  # As root murmurd switches to the package's user, who cannot write $M.
  [[ $(id -u) -ne 0 ]] || echo "uname=root"
} >"$M/murmur.ini"
murmurd -ini "$M/murmur.ini" -fg >"$M/murmur.log" 2>&1 &
MURMUR_PID=$!
AUX_PIDS+=("$MURMUR_PID")
for _ in $(seq 300); do
  grep -q "Server listening on 127.0.0.1:$PORT" "$M/murmur.log" && break
  kill -0 "$MURMUR_PID" 2>/dev/null || { tail -n 20 "$M/murmur.log" >&2; die "murmurd exited during start-up (log above)"; }
  sleep 0.1
done
grep -q "Server listening on 127.0.0.1:$PORT" "$M/murmur.log" || { tail -n 20 "$M/murmur.log" >&2; die "murmurd not listening on port $PORT after 30 s"; }
say "murmur $MURMUR_VERSION listening on 127.0.0.1:$PORT"

# --- clients -------------------------------------------------------------------
# make_client DIR NAME CONF: a HOME with Mumble.conf, a certificate (found as
# ~/Documents/MumbleAutomaticCertificateBackup.p12, which stops the certificate
# wizard) and the client database with murmur's certificate digest (what the
# client checks before it would ask whether to accept it).
make_client() {
  local H=$1 name=$2 conf=$3 i
  mkdir -p "$H/.config/Mumble" "$H/.local/share/Mumble/Mumble" "$H/Documents" "$H/run"
  chmod 700 "$H/run"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$name" -keyout "$H/key.pem" -out "$H/cert.pem" >/dev/null 2>&1 \
    && openssl pkcs12 -export -inkey "$H/key.pem" -in "$H/cert.pem" -passout pass: \
      -out "$H/Documents/MumbleAutomaticCertificateBackup.p12" >/dev/null 2>&1 \
    || die "openssl could not make $name's certificate"
  "$PY" - "$H/.local/share/Mumble/Mumble/mumble.sqlite" "$PORT" "$DIGEST" <<'PYEOF' || die "could not pre-trust murmur's certificate for $name"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS `cert` (`id` INTEGER PRIMARY KEY AUTOINCREMENT, `hostname` TEXT, `port` INTEGER, `digest` TEXT)")
db.execute("CREATE UNIQUE INDEX IF NOT EXISTS `cert_host_port` ON `cert`(`hostname`,`port`)")
db.execute("INSERT OR REPLACE INTO cert (hostname, port, digest) VALUES ('127.0.0.1', ?, ?)", (int(sys.argv[2]), sys.argv[3]))
db.commit()
PYEOF
  {
    printf '%s\n' "$conf"
    # Notification sounds, TTS and balloons off: log to the console only.
    echo "[messages]"
    for i in $(seq 1 29); do echo "$i\\log=1"; done
    echo "size=29"
  } >"$H/.config/Mumble/Mumble.conf"
}
start_client() {
  local H=$1 name=$2
  (cd "$H" && exec env -i PATH="$PATH" HOME="$H" XDG_CONFIG_HOME="$H/.config" XDG_DATA_HOME="$H/.local/share" \
    XDG_RUNTIME_DIR="$H/run" DISPLAY="$DISPLAY_NUM" DBUS_SESSION_BUS_ADDRESS="unix:path=$WORK/bus" LANG=C.UTF-8 \
    NO_AT_BRIDGE=1 PULSE_SERVER="$PULSE_SERVER" PULSE_COOKIE="$PULSE_COOKIE" PULSE_CLIENTCONFIG="$PULSE_CLIENTCONFIG" \
    mumble -m "mumble://$name@127.0.0.1:$PORT/?version=1.3.0") >"$H/mumble.log" 2>&1 &
  CLIENT_PIDS+=("$!")
}
client_env() {
  local H=$1
  env -i PATH="$PATH" HOME="$H" XDG_CONFIG_HOME="$H/.config" XDG_DATA_HOME="$H/.local/share" \
    XDG_RUNTIME_DIR="$H/run" DISPLAY="$DISPLAY_NUM" LANG=C.UTF-8 "${@:2}"
}
# pa_streams: one line per client stream, "play PID SINK" or "rec PID SOURCE".
pa_streams() {
  {
    pactl list short sinks | awk '{print "sinkname", $1, $2}'
    pactl list short sources | awk '{print "sourcename", $1, $2}'
    pactl list sink-inputs | sed 's/^/play /'
    pactl list source-outputs | sed 's/^/rec /'
  } 2>/dev/null | awk '
    $1 == "sinkname" { sink[$2] = $3; next }
    $1 == "sourcename" { source[$2] = $3; next }
    / #[0-9]+$/ { dev = "" }
    $2 == "Sink:" || $2 == "Source:" { dev = $3 }
    /application.process.id = / { gsub(/"/, "", $4); print $1, $4, ($1 == "play" ? sink[dev] : source[dev]) }'
}

run_mode() {
  local mode=$1 peer="mumble-$1" audio net transmit_note i name H
  local D="$WORK/$mode"
  mkdir -p "$D"
  case $mode in
    default)
      net=""
      if [[ $TRANSMIT == continuous ]]; then audio="transmit=0"; else audio=""; fi
      SETTINGS_JSON=$(printf '{"audio/transmit":%s,"audio/quality":40000,"net/framesperpacket":2,"net/jitterbuffer":1,"audio/outputdelay":5,"audio/input":"PulseAudio","audio/output":"PulseAudio","pulseaudio/input":"mic","pulseaudio/output":"speaker","written":"%s"}' \
        "$([[ $TRANSMIT == continuous ]] && echo 0 || echo 1)" \
        "$([[ $TRANSMIT == continuous ]] && echo "audio/transmit, devices" || echo "devices")")
      ;;
    lowest)
      audio=$'transmit=0\noutputdelay=1'
      net=$'framesperpacket=1\njitterbuffer=1'
      SETTINGS_JSON='{"audio/transmit":0,"audio/quality":40000,"net/framesperpacket":1,"net/jitterbuffer":1,"audio/outputdelay":1,"audio/input":"PulseAudio","audio/output":"PulseAudio","pulseaudio/input":"mic","pulseaudio/output":"speaker","written":"audio/transmit, net/framesperpacket, net/jitterbuffer, audio/outputdelay, devices"}'
      ;;
  esac
  # conf NAME MUTE INPUT OUTPUT
  conf() {
    printf '[General]\nlastupdate=2\n\n[audio]\ninput=PulseAudio\noutput=PulseAudio\nmute=%s\n%s\n\n[net]\n%s\n\n[pulseaudio]\ninput=%s\noutput=%s\n\n[tts]\nenable=false\n\n[ui]\nupdatecheck=false\nplugincheck=false\naskonquit=false\nusage=false\n\n' \
      "$2" "$audio" "$net" "$3" "$4"
  }
  say "[$peer] preparing alice and $LISTENERS listener(s)"
  for i in $(seq 1 "$LISTENERS"); do
    if ((i == 1)); then make_client "$D/bob1" bob1 "$(conf bob1 true quiet.monitor speaker)"
    else make_client "$D/bob$i" "bob$i" "$(conf "bob$i" true quiet.monitor extra)"; fi
  done
  make_client "$D/alice" alice "$(conf alice true mic extra)"

  local names=() pids=() log_from=() k
  for i in $(seq 1 "$LISTENERS"); do names+=("bob$i"); done
  names+=(alice)
  # Clients start in batches of 8, each batch awaited until every client has
  # reached PulseAudio ("PulseAudio: Starting input" in its log): with dozens
  # connecting at once the server's listen queue overflows, and a Mumble 1.3
  # client whose first connection is refused never retries (it runs without
  # audio). Such a client is restarted (at most 16 restarts a batch).
  local b tries pending deadline
  for ((b = 0; b < ${#names[@]}; b += 8)); do
    for ((k = b; k < b + 8 && k < ${#names[@]}; k++)); do
      log_from[k]=$(($(stat -c %s "$M/murmur.log") + 1))
      start_client "$D/${names[$k]}" "${names[$k]}"
      pids[k]=${CLIENT_PIDS[-1]}
    done
    tries=0
    deadline=$((SECONDS + 30))
    while :; do
      pending=0
      for ((k = b; k < b + 8 && k < ${#names[@]}; k++)); do
        H="$D/${names[$k]}"
        grep -q 'PulseAudio: Starting input' "$H/mumble.log" 2>/dev/null && continue
        if grep -q 'PulseAudio: Connection failure' "$H/mumble.log" 2>/dev/null || ! kill -0 "${pids[$k]}" 2>/dev/null; then
          ((tries < 2 * 8)) || { tail -n 20 "$H/mumble.log" >&2; die "[$peer] ${names[$k]}'s client could not reach PulseAudio (log above)"; }
          tries=$((tries + 1))
          say "[$peer] ${names[$k]}'s client: $(grep -o 'PulseAudio: Connection failure.*' "$H/mumble.log" | head -1 || echo exited); restarting it"
          kill "${pids[$k]}" 2>/dev/null || true
          wait "${pids[$k]}" 2>/dev/null || true
          local keep=() q
          for q in "${CLIENT_PIDS[@]}"; do [[ $q == "${pids[$k]}" ]] || keep+=("$q"); done
          CLIENT_PIDS=("${keep[@]}")
          log_from[k]=$(($(stat -c %s "$M/murmur.log") + 1))
          start_client "$H" "${names[$k]}"
          pids[k]=${CLIENT_PIDS[-1]}
        fi
        pending=$((pending + 1))
      done
      ((pending)) || break
      ((SECONDS < deadline)) || die "[$peer] clients ${names[$b]}.. did not reach PulseAudio within 30 s"
      sleep 0.1
    done
  done
  CLIENT_PIDS=("${pids[@]}")
  deadline=$((SECONDS + 60 + LISTENERS))
  for k in "${!names[@]}"; do
    name=${names[$k]}
    until tail -c +"${log_from[$k]}" "$M/murmur.log" | grep -q ":$name(-1)> Authenticated"; do
      kill -0 "${pids[$k]}" 2>/dev/null || { tail -n 20 "$D/$name/mumble.log" >&2; die "[$peer] mumble client $name exited before joining (log above)"; }
      ((SECONDS < deadline)) || { tail -n 20 "$D/$name/mumble.log" >&2; tail -n 10 "$M/murmur.log" >&2; die "[$peer] $name not authenticated by murmur in time (logs above)"; }
      sleep 0.1
    done
  done
  say "[$peer] murmur: alice and bob1..bob$LISTENERS authenticated (root channel)"
  # Each client's two streams: bob1 plays to speaker, alice and bob2.. to
  # extra; alice records mic, the listeners quiet.monitor. Mumble 1.3's
  # PulseAudio backend sometimes never starts a stream whose start raced the
  # client's audio start-up (seen ~1 run in 6 at 5 listeners: no "Starting
  # output" in its log); it (re)starts streams whenever PulseAudio announces
  # a new or removed sink, so a missing stream is nudged by loading and
  # unloading a throw-away null sink.
  local want=() streams missing nudge_at=$((SECONDS + 5)) m
  for k in "${!names[@]}"; do
    case ${names[$k]} in
      alice) want+=("play ${pids[$k]} extra" "rec ${pids[$k]} mic") ;;
      bob1) want+=("play ${pids[$k]} speaker" "rec ${pids[$k]} quiet.monitor") ;;
      *) want+=("play ${pids[$k]} extra" "rec ${pids[$k]} quiet.monitor") ;;
    esac
  done
  while :; do
    streams=$(pa_streams)
    missing=()
    for k in "${!want[@]}"; do grep -qxF "${want[$k]}" <<<"$streams" || missing+=("${want[$k]}"); done
    ((${#missing[@]})) || grep -q 'AudioInput: Initialized mixer' "$D/alice/mumble.log" || missing+=("alice's input mixer")
    ((${#missing[@]})) || break
    if ((SECONDS >= deadline)); then
      for m in "${missing[@]}"; do say "missing stream: $m"; done
      printf '%s\n' "$streams" >&2
      die "[$peer] audio streams not up in time (missing above: play/rec PID DEVICE; client PIDs: $(for k in "${!names[@]}"; do printf '%s=%s ' "${names[$k]}" "${pids[$k]}"; done))"
    fi
    if ((SECONDS >= nudge_at)); then
      say "[$peer] ${#missing[@]} stream(s) not up (${missing[0]}...); nudging the clients with a sink change"
      m=$(pactl load-module module-null-sink sink_name=nudge) && pactl unload-module "$m"
      nudge_at=$((SECONDS + 5))
    fi
    sleep 0.1
  done
  say "[$peer] audio: alice records mic, bob1 plays to speaker, $((LISTENERS - 1)) other listener(s) + alice play to extra"

  # --- recording, calibration, talk ---
  bench_pulse_clicks "$D" "$CLICKS" "$SPACING_MS" "$LEAD_MS"
  bench_pulse_record "$D/rec.raw"
  bench_pulse_calibrate "$D"
  client_env "$D/alice" mumble rpc unmute >/dev/null 2>&1 || die "[$peer] could not unmute alice (mumble rpc unmute)"
  say "[$peer] alice unmuted ($([[ $mode == default && $TRANSMIT == vad ]] && echo 'voice activity' || echo continuous) transmit); playing $CLICKS clicks into micfeed"
  paplay --device=micfeed "$D/clicks.wav"
  # clicks.wav ends with 1 s of silence; let a late last click come out too.
  sleep 0.5
  bench_pulse_record_stop
  client_env "$D/alice" mumble rpc mute >/dev/null 2>&1 || true
  for k in "${!pids[@]}"; do
    kill -0 "${pids[$k]}" 2>/dev/null || say "warning: ${names[$k]}'s client exited during the run (log: $D/${names[$k]}/mumble.log)"
  done
  stop_clients

  # --- analysis ---
  say "[$peer] analysing $(($(stat -c %s "$D/rec.raw") / 8 / 48)) ms of recording (talk from sample $BENCH_BOUNDARY)"
  echo "peer: $peer (mumble $MUMBLE_VERSION, murmur $MURMUR_VERSION), settings: $SETTINGS_JSON"
  grep -h 'PulseAudio: Starting' "$D/alice/mumble.log" | sed 's/^<.>[^ ]* [^ ]* /devices: alice: /' | head -2 || true
  grep -h 'PulseAudio: Starting' "$D/bob1/mumble.log" | sed 's/^<.>[^ ]* [^ ]* /devices: bob1: /' | head -2 || true
  local status=0
  bench_pulse_analyse "$D/rec.raw" "$CLICKS" "$SPACING_MS" "$LISTENERS" "$THRESHOLD" | tee "$D/analyse.txt" || status=$?
  if [[ -n ${OUT:-} ]]; then
    local json
    json=$(sed -n 's/^json //p' "$D/analyse.txt")
    [[ -n $json ]] || die "[$peer] no json line from analyse"
    "$PY" - "$json" "$peer" "$LISTENERS" "$SETTINGS_JSON" "$MUMBLE_VERSION" "$THRESHOLD" >>"$OUT" <<'PYEOF'
import json, os, sys
res = json.loads(sys.argv[1])
res.update({"kind": "mouth_to_ear", "peer": sys.argv[2], "listeners": int(sys.argv[3]),
            "settings": json.loads(sys.argv[4]), "mumble_version": sys.argv[5],
            "threshold": float(sys.argv[6]),
            "loadavg_1m": os.getloadavg()[0]})
print(json.dumps(res))
PYEOF
    say "[$peer] appended to $OUT"
  fi
  ((status == 0)) || say "warning: [$peer] analyse found no click at the speaker"
  return 0
}

for mode in "${MODES[@]}"; do run_mode "$mode"; done
