#!/usr/bin/env bash
# The parsers' fuzzing run longer than the test command's bounded run
# (issue 13): the same stable harness (proptest driving mutators; no
# nightly toolchain here for cargo-fuzz) over the wire format, consent,
# talk keys, sealed batches, identifiers, the Ogg reader and the
# unplayed-talk store, with WALKIE_FUZZ_CASES inputs per target (default
# 200 000; the test command uses 2 000-20 000), in a release build. Prints
# what each target tried; a panic fails with its input.
#
#   bash scripts/fuzz.sh
#   WALKIE_FUZZ_CASES=1000000 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WALKIE_SETUP_TESTS=0 source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
export WALKIE_FUZZ_CASES="${WALKIE_FUZZ_CASES:-200000}"
[[ $WALKIE_FUZZ_CASES =~ ^[1-9][0-9]*$ ]] || die "WALKIE_FUZZ_CASES must be a positive number, not $WALKIE_FUZZ_CASES"
say "fuzzing every parser with $WALKIE_FUZZ_CASES inputs per target (release build)"
t0=$SECONDS
run() {
  local out
  out=$(cargo test --release --locked -p "$1" --lib -- "$2" --nocapture --test-threads=2 2>&1) \
    || { printf '%s\n' "$out" | tail -n 60 >&2; die "a fuzz target failed in $1 (output above)"; }
  printf '%s\n' "$out" | grep -E '^fuzz:|^test .* ok$|^test result' || true
}
run walkie-protocol fuzz_tests
run walkie-audio fuzz
say "no panic; $((SECONDS - t0)) s"
