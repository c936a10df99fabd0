#!/usr/bin/env bash
# The README's test command: set-up (idempotent), then format, lints, unit
# tests, and the integration and end-to-end tests against real components
# (a Synapse per test, Xvfb + D-Bus + the real app). Fails loudly on any
# step; a component that cannot start fails its test, it is never skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*" >&2; }

step "set-up"
source scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"
# A failing test's error without a captured backtrace (panics keep theirs
# under RUST_BACKTRACE): pages of frames would push the message itself out
# of a shortened CI log.
export RUST_LIB_BACKTRACE="${RUST_LIB_BACKTRACE:-0}"
export WALKIE_SCREENSHOT_DIR="${WALKIE_SCREENSHOT_DIR:-$CARGO_TARGET_DIR/screenshots}"
# CI builds from a fresh clone every time: incremental state would only pile
# up on disk there.
if [[ -n ${CI:-} ]]; then export CARGO_INCREMENTAL=0; fi
started=$SECONDS

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build everything the tests run (app and CLI binaries included)"
# --all-targets resolves features as `cargo test` does, so the test step
# reuses these artifacts instead of building the dependencies twice.
cargo build --workspace --all-targets --locked

step "cargo test (unit, integration against Synapse, end-to-end under Xvfb)"
export WALKIE_APP_BIN="$CARGO_TARGET_DIR/debug/walkie-app"
cargo test --workspace --locked -- --test-threads="${WALKIE_TEST_THREADS:-2}"

step "soak, 2 minutes: a talk every 10 s to 2 listening devices and the app, every one posted, heard whole and played"
WALKIE="$CARGO_TARGET_DIR/debug/walkie" APP=1 DURATION=120 OUT="$CARGO_TARGET_DIR/soak-2min.json" PLOT= CHECK=1 \
  bash scripts/soak.sh

step "all tests passed in $((SECONDS - started)) s (screenshots in $WALKIE_SCREENSHOT_DIR)"
