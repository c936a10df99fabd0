# Shared audio half of the mouth-to-ear benches (issue 11); sourced, not run.
# Used by scripts/bench-mouth-to-ear.sh (Walkie), bench-mumble.sh and
# bench-chunked.sh, so every peer is measured on the same audio path.
#
# One sample clock for mouth and ear: a private PulseAudio server with one
# 4-channel null sink `both` (front-left/right, rear-left/right). `micfeed`
# is a remap sink onto both's front pair, `speaker` (the default sink) a
# remap sink onto its rear pair, and `mic` (the default source) a remap
# source of both.monitor's front pair; remix=no everywhere, so nothing leaks
# between the pairs. One parec of both.monitor (4 channels) holds what the
# talker's microphone hears (channel 0) and what the listener's speaker plays
# (channel 2) sample-aligned. The calibration plays the same burst into
# micfeed and speaker from two paplay processes started together; analyse
# prints their offset (the skew of the two starts, not subtracted).
#
# Needs: say and die defined by the caller; python3 (PY) for the tool.
#
#   bench_pulse_start DIR [EXTRA_PA_LINES]  start the server in DIR (short
#       path: the socket must stay under 108 bytes); exports PULSE_SERVER,
#       PULSE_COOKIE, PULSE_CLIENTCONFIG; BENCH_PA_PID is its pid. Extra
#       server.pa lines (e.g. more null sinks) go in before the defaults.
#   bench_pulse_stop                         stop it (for an EXIT trap).
#   bench_pulse_record OUT.raw              start the 4-channel parec of
#       both.monitor at 1 ms latency; BENCH_REC_PID is its pid.
#   bench_pulse_calibrate WORKDIR           3 bursts (WORKDIR/cal.wav) into
#       micfeed+speaker at once; sets BENCH_BOUNDARY (the first frame of the
#       recording after the calibration).
#   bench_pulse_record_stop                  stop parec.
#   bench_pulse_clicks WORKDIR CLICKS SPACING_MS LEAD_MS  write
#       WORKDIR/clicks.wav and WORKDIR/cal.wav.
#   bench_pulse_analyse REC.raw CLICKS SPACING_MS LISTENERS [THRESHOLD]
#       run `mouth_to_ear.py analyse` (prints the summary and a `json` line).

BENCH_PULSE_TOOL="${BENCH_PULSE_TOOL:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/mouth_to_ear.py}"
BENCH_PA_PID=""
BENCH_REC_PID=""
BENCH_BOUNDARY=""
BENCH_REC_FILE=""

bench_pulse_start() {
  local P=$1 extra=${2:-} info ready="" _
  for _ in pulseaudio pactl parec paplay; do
    command -v "$_" >/dev/null || die "$_ not found (Debian packages pulseaudio and pulseaudio-utils)"
  done
  mkdir -p "$P/home/.config" "$P/runtime" "$P/state"
  cat >"$P/server.pa" <<PA
load-module module-native-protocol-unix socket=$P/native auth-anonymous=1
load-module module-null-sink sink_name=both rate=48000 channels=4 channel_map=front-left,front-right,rear-left,rear-right sink_properties='device.description="Bench mouth and ear"'
load-module module-remap-sink sink_name=micfeed master=both channels=2 channel_map=front-left,front-right master_channel_map=front-left,front-right remix=no sink_properties='device.description="Bench microphone feed"'
load-module module-remap-sink sink_name=speaker master=both channels=2 channel_map=front-left,front-right master_channel_map=rear-left,rear-right remix=no sink_properties='device.description="Bench speaker"'
load-module module-remap-source source_name=mic master=both.monitor channels=2 channel_map=front-left,front-right master_channel_map=front-left,front-right remix=no source_properties='device.description="Bench microphone"'
$extra
set-default-sink speaker
set-default-source mic
PA
  printf 'autospawn = no\nenable-shm = no\n' >"$P/client.conf"
  say "starting a private PulseAudio server ($P/native)"
  env -i PATH="$PATH" HOME="$P/home" XDG_CONFIG_HOME="$P/home/.config" XDG_RUNTIME_DIR="$P/runtime" \
    PULSE_RUNTIME_PATH="$P/runtime" PULSE_STATE_PATH="$P/state" PULSE_CLIENTCONFIG="$P/client.conf" \
    pulseaudio -n -F "$P/server.pa" --daemonize=no --use-pid-file=no --system=no --exit-idle-time=-1 \
    --realtime=no --high-priority=no --disable-shm=yes --log-target=stderr --log-level=info >"$P/pulse.log" 2>&1 &
  BENCH_PA_PID=$!
  export PULSE_SERVER="unix:$P/native" PULSE_COOKIE="$P/cookie" PULSE_CLIENTCONFIG="$P/client.conf"
  unset PULSE_SINK PULSE_SOURCE
  for _ in $(seq 100); do
    kill -0 "$BENCH_PA_PID" 2>/dev/null || { tail -n 30 "$P/pulse.log" >&2; die "PulseAudio exited during start-up (log above)"; }
    if info=$(pactl info 2>/dev/null) && grep -q 'Default Sink: speaker' <<<"$info" && grep -q 'Default Source: mic' <<<"$info"; then
      ready=1; break
    fi
    sleep 0.1
  done
  [[ -n $ready ]] || { tail -n 30 "$P/pulse.log" >&2; die "PulseAudio did not answer with speaker/mic as defaults within 10 s (log above)"; }
  if grep -q '^E: ' "$P/pulse.log"; then
    grep '^E: ' "$P/pulse.log" >&2
    die "PulseAudio logged errors during start-up (above)"
  fi
  say "PulseAudio $(pulseaudio --version | awk '{print $2}') ready: micfeed/mic and speaker on one 4-channel sink"
}

bench_pulse_stop() {
  if [[ -n $BENCH_REC_PID ]]; then kill "$BENCH_REC_PID" 2>/dev/null || true; fi
  if [[ -n $BENCH_PA_PID ]]; then
    kill "$BENCH_PA_PID" 2>/dev/null || true
    wait "$BENCH_PA_PID" 2>/dev/null || true
    BENCH_PA_PID=""
  fi
}

bench_pulse_clicks() {
  local W=$1 clicks=$2 spacing=$3 lead=$4
  "${PY:-python3}" "$BENCH_PULSE_TOOL" clicks "$W/clicks.wav" --clicks "$clicks" --spacing-ms "$spacing" --lead-ms "$lead"
  "${PY:-python3}" "$BENCH_PULSE_TOOL" clicks "$W/cal.wav" --clicks 1 --lead-ms 200
}

bench_pulse_record() {
  local out=$1 _
  BENCH_REC_FILE=$out
  say "recording both.monitor (4 channels: mouth = 0/1, ear = 2/3)"
  parec --device=both.monitor --rate=48000 --channels=4 --channel-map=front-left,front-right,rear-left,rear-right \
    --format=s16le --latency-msec=1 --client-name=mouth-to-ear-recorder >"$out" 2>"$out.parec.log" &
  BENCH_REC_PID=$!
  for _ in $(seq 100); do
    pactl list source-outputs 2>/dev/null | grep -q 'mouth-to-ear-recorder' && break
    sleep 0.05
  done
  kill -0 "$BENCH_REC_PID" 2>/dev/null || { cat "$out.parec.log" >&2; die "parec did not start (above)"; }
  pactl list source-outputs 2>/dev/null | grep -q 'mouth-to-ear-recorder' || die "parec's stream did not appear within 5 s"
  # A null sink renders in 2 s blocks until a stream asks for less, and a new
  # request takes effect at the next block: let the 1 ms request settle.
  pactl suspend-sink both 1 && pactl suspend-sink both 0
  sleep 2.5
}

bench_pulse_calibrate() {
  local W=$1 c1 c2 _
  say "calibration: the same burst into micfeed and speaker at once, 3 times"
  for _ in 1 2 3; do
    paplay --device=micfeed "$W/cal.wav" & c1=$!
    paplay --device=speaker "$W/cal.wav" & c2=$!
    wait "$c1" "$c2"
    sleep 0.3
  done
  sleep 0.5
  BENCH_BOUNDARY=$(($(stat -c %s "$BENCH_REC_FILE") / 8))
}

bench_pulse_record_stop() {
  if [[ -n $BENCH_REC_PID ]]; then
    kill -INT "$BENCH_REC_PID" 2>/dev/null || true
    wait "$BENCH_REC_PID" 2>/dev/null || true
    BENCH_REC_PID=""
  fi
}

bench_pulse_analyse() {
  local rec=$1 clicks=$2 spacing=$3 listeners=$4 threshold=${5:-0.4}
  "${PY:-python3}" "$BENCH_PULSE_TOOL" analyse "$rec" --channels 4 --mouth 0 --ear 2 --boundary "$BENCH_BOUNDARY" \
    --clicks "$clicks" --spacing-ms "$spacing" --listeners "$listeners" --threshold "$threshold"
}
