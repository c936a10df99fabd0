#!/usr/bin/env bash
# What the homeserver alone costs per live-audio message (issue 11): one
# sender PUTs a 300-byte to-device message to N devices every 20 ms while N
# featherweight receivers (threads doing raw HTTP, no matrix-sdk) long-poll,
# through /v3/sync ("v3") and through simplified sliding sync with only its
# to-device extension ("sss", MSC4186). Prints, per N and mode, Synapse's
# CPU (its process's utime + stime) per message and the delivery latency.
#
#   bash scripts/bench-synapse-todevice.sh
#   COUNTS="1 5 10" SECONDS_RUN=15 bash scripts/bench-synapse-todevice.sh
#
# Not in the test command: a measurement, not a check.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
source scripts/local-homeserver.sh
source scripts/lib/bench-common.sh
PY="$WALKIE_SYNAPSE_PYTHON"
bench_workdir synapse-todevice
bench_homeserver
PID=$(our_synapse_pid "$WORK/homeserver") || die "Synapse is not running (log: $WORK/homeserver/homeserver.log)"
for n in ${COUNTS:-1 5 10}; do
  for mode in v3 sss; do
    say "$n receiving device(s), $mode, ${SECONDS_RUN:-15} s"
    "$PY" scripts/tools/synapse_todevice_cost.py "$HOMESERVER_URL" "$PID" "$(pw alice)" "$(pw bob)" \
      "$n" "${SECONDS_RUN:-15}" "$mode" || die "the $mode run with $n device(s) failed"
  done
done
