#!/usr/bin/env bash
# Collision agreement time (issue 11): alice and bob press 10 ms apart on
# two federating homeservers (0 ms and 1 s one-way between them), with a
# listener on each side; the time from the presses until every client is on
# the same talker. It runs the federation test that asserts it
# (tests/tests/federation.rs, `collision_across`), RUNS times per delay, and
# reads the figure it prints.
#
#   bash scripts/bench-collision.sh
#   RUNS=5 OUT=docs/bench-results.jsonl bash scripts/bench-collision.sh
#
# Knobs: RUNS (3) runs per delay; OUT a JSON-lines file to which one line
# per delay is appended (scripts/bench.sh collects them).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
export RUST_LIB_BACKTRACE=0
RUNS="${RUNS:-3}"

say "building the federation test"
cargo test -q --locked -p walkie-tests --test federation --no-run
for test in presses_10ms_apart_on_two_servers_agree presses_10ms_apart_on_two_servers_one_second_apart_agree; do
  agreed=()
  delay=""
  for run in $(seq 1 "$RUNS"); do
    say "$test, run $run of $RUNS"
    out=$(cargo test -q --locked -p walkie-tests --test federation "$test" -- --exact --nocapture 2>&1) \
      || { printf '%s\n' "$out" | tail -n 40 >&2; die "$test failed (above)"; }
    line=$(printf '%s\n' "$out" | grep -o 'collision [0-9]* ms one-way: every client on alice within [0-9]* ms' | tail -n 1) \
      || die "$test printed no agreement time"
    echo "$line"
    delay=$(awk '{print $2}' <<<"$line")
    agreed+=("$(awk '{print $(NF-1)}' <<<"$line")")
  done
  result=$(python3 - "$delay" "${agreed[@]}" <<'PYEOF'
import json, statistics, sys
delay, runs = int(sys.argv[1]), [int(v) for v in sys.argv[2:]]
print(json.dumps({
    "kind": "collision",
    "name": f"presses 10 ms apart, two homeservers {delay} ms one-way",
    "one_way_ms": delay,
    "runs_agree_ms": runs,
    "p50_ms": statistics.median(runs),
    "max_ms": max(runs),
    "agreed": f"{len(runs)}/{len(runs)}",
}))
PYEOF
)
  echo "$result"
  if [[ -n ${OUT:-} ]]; then echo "$result" >>"$OUT"; fi
done
