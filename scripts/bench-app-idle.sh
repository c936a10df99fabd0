#!/usr/bin/env bash
# The desktop app's idle cost: signed in, nobody talking, 60 s (or $1 s):
# CPU as percent of one core, resident memory, audio streams left open.
# Debug build by default (what the tests run); RELEASE=1 for a release build.
#
#   bash scripts/bench-app-idle.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
if [[ ${RELEASE:-0} == 1 ]]; then
  cargo build --release --workspace --locked
  export WALKIE_APP_BIN="$CARGO_TARGET_DIR/release/walkie-app"
  cargo run --release -p walkie-tests --example app_idle --locked -- "${1:-60}"
else
  cargo build --workspace --all-targets --locked
  cargo run -p walkie-tests --example app_idle --locked -- "${1:-60}"
fi
