#!/usr/bin/env bash
# Device-side latency probe (issue 11) on a private PulseAudio server set up
# like the test harness's (tests/src/pulse.rs: null sinks speaker, micfeed,
# pacer, remapped source mic). Runs crates/walkie-audio/examples/pulse_latency.rs
# for the ALSA host (pulse plugin) and the native PulseAudio host.
#
#   bash scripts/pulse-latency.sh            # both hosts, output and capture
#   bash scripts/pulse-latency.sh output     # one mode (output, capture, cue)
# Knobs passed through: WALKIE_OUTPUT_PERIOD_MS, WALKIE_OUTPUT_AHEAD_MS,
# WALKIE_CAPTURE_PERIOD_MS.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
MODES=("$@"); ((${#MODES[@]})) || MODES=(output capture cue)
HOSTS=(${HOSTS:-alsa pulseaudio})
cargo build -q -p walkie-audio --example pulse_latency
PROBE="$CARGO_TARGET_DIR/debug/examples/pulse_latency"

D=$(mktemp -d /tmp/wpl.XXXXXX)
mkdir -p "$D/home/.config" "$D/runtime" "$D/state"
cat >"$D/server.pa" <<PA
load-module module-native-protocol-unix socket=$D/native auth-anonymous=1
load-module module-null-sink sink_name=speaker rate=48000 sink_properties='device.description="Test speaker"'
load-module module-null-sink sink_name=micfeed rate=48000 sink_properties='device.description="Test microphone feed"'
load-module module-remap-source master=micfeed.monitor source_name=mic source_properties='device.description="Test microphone"'
load-module module-null-sink sink_name=pacer rate=48000 sink_properties='device.description="Test harness pacer"'
load-module module-loopback source=micfeed.monitor sink=pacer latency_msec=20 source_dont_move=true sink_dont_move=true
load-module module-loopback source=speaker.monitor sink=pacer latency_msec=20 source_dont_move=true sink_dont_move=true
suspend-sink micfeed 1
suspend-sink micfeed 0
suspend-sink speaker 1
suspend-sink speaker 0
set-default-sink speaker
set-default-source mic
PA
printf 'autospawn = no\nenable-shm = no\n' >"$D/client.conf"
env -i PATH="$PATH" HOME="$D/home" XDG_CONFIG_HOME="$D/home/.config" XDG_RUNTIME_DIR="$D/runtime" \
  PULSE_RUNTIME_PATH="$D/runtime" PULSE_STATE_PATH="$D/state" PULSE_CLIENTCONFIG="$D/client.conf" \
  pulseaudio -n -F "$D/server.pa" --daemonize=no --use-pid-file=no --system=no --exit-idle-time=-1 \
  --realtime=no --high-priority=no --disable-shm=yes --log-target=stderr --log-level=info >"$D/pulse.log" 2>&1 &
PA_PID=$!
trap 'kill $PA_PID 2>/dev/null; wait $PA_PID 2>/dev/null; rm -rf "$D"' EXIT
export PULSE_SERVER="unix:$D/native" PULSE_COOKIE="$D/cookie" PULSE_CLIENTCONFIG="$D/client.conf"
unset XDG_RUNTIME_DIR PULSE_RUNTIME_PATH
for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.1; done
echo "pulseaudio $(pulseaudio --version | awk '{print $2}') at $PULSE_SERVER; $(nproc) cores"
for mode in "${MODES[@]}"; do
  for host in "${HOSTS[@]}"; do
    WALKIE_AUDIO_HOST=$host "$PROBE" "$mode" 2>"$D/probe-$mode-$host.err" || { echo "probe $mode $host failed:"; tail -20 "$D/probe-$mode-$host.err"; }
    echo "  stderr error lines ($mode $host): $(grep -ci error "$D/probe-$mode-$host.err" || true)"
  done
done
if [[ -n ${KEEP_PULSE_LOG:-} ]]; then cp "$D/pulse.log" "$KEEP_PULSE_LOG"; fi
