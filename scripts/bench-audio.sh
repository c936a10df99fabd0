#!/usr/bin/env bash
# The audio benchmark (docs/benchmarks.md): Opus CPU per live stream, the
# delay the jitter buffer adds at 0/20/50 ms of jitter, and press -> capture
# live / output open on real devices. Release build. Unless AUDIO_DEVICES=
# system is set, the device figures come from a private PulseAudio server
# set up as the tests' harness does (tests/src/pulse.rs: null-sink speaker,
# virtual microphone, and the 20 ms pacer without which a null sink renders
# in 2 s blocks and device start-up measures the null sink, not Walkie).
#
#   bash scripts/bench-audio.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"

if [[ ${AUDIO_DEVICES:-private} != system ]]; then
  PA=$(mktemp -d /tmp/walkie-bench-pa.XXXXXX)
  mkdir -p "$PA/home/.config" "$PA/runtime" "$PA/state"
  cat > "$PA/server.pa" <<PAEOF
load-module module-native-protocol-unix socket=$PA/native auth-anonymous=1
load-module module-null-sink sink_name=speaker rate=48000
load-module module-null-sink sink_name=micfeed rate=48000
load-module module-remap-source master=micfeed.monitor source_name=mic
load-module module-null-sink sink_name=pacer rate=48000
load-module module-loopback source=micfeed.monitor sink=pacer latency_msec=20 source_dont_move=true sink_dont_move=true
load-module module-loopback source=speaker.monitor sink=pacer latency_msec=20 source_dont_move=true sink_dont_move=true
suspend-sink micfeed 1
suspend-sink micfeed 0
suspend-sink speaker 1
suspend-sink speaker 0
set-default-sink speaker
set-default-source mic
PAEOF
  printf 'autospawn = no\nenable-shm = no\n' > "$PA/client.conf"
  env -i PATH="$PATH" HOME="$PA/home" XDG_CONFIG_HOME="$PA/home/.config" \
    XDG_RUNTIME_DIR="$PA/runtime" PULSE_RUNTIME_PATH="$PA/runtime" PULSE_STATE_PATH="$PA/state" \
    PULSE_CLIENTCONFIG="$PA/client.conf" \
    pulseaudio -n -F "$PA/server.pa" --daemonize=no --use-pid-file=no --system=no \
      --exit-idle-time=-1 --realtime=no --high-priority=no --disable-shm=yes \
      --log-target=stderr >"$PA/log" 2>&1 &
  PA_PID=$!
  trap 'kill $PA_PID 2>/dev/null; rm -rf "$PA"' EXIT
  export PULSE_SERVER="unix:$PA/native" PULSE_CLIENTCONFIG="$PA/client.conf" PULSE_COOKIE="$PA/cookie"
  for _ in $(seq 100); do pactl info >/dev/null 2>&1 && break; sleep 0.05; done
  pactl info >/dev/null 2>&1 || { cat "$PA/log"; die "the private PulseAudio did not start"; }
  say "private PulseAudio at $PULSE_SERVER"
fi
cargo bench -p walkie-audio --features test-utils --bench audio --locked
