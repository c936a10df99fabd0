#!/usr/bin/env bash
# Soak (issue 13): alice talks every EVERY seconds for DURATION seconds to
# LISTENERS listening devices (`walkie listen`, one user each) and, unless
# APP=0, to the desktop app (under Xvfb with gnome-keyring and a private
# PulseAudio, playing every talk; started in the tray as the desktop
# session's autostart starts it, or with PANEL=open its panel on screen
# throughout); everyone on one throw-away Synapse or,
# with FEDERATED=1, the listeners and the app on a second Synapse 1 s
# one-way from alice's. Every 5 s the resident memory and CPU of each
# listener, the app and its webview processes are sampled. At the end it
# reports talks, recordings posted, talks saved whole by every listener
# (frames lost), talks a listener did not follow (floor disagreements),
# talks the app played, and each process's memory slope after the first
# minute; it writes a JSON summary and a plot of memory over time.
# tests/examples/soak.rs does the run, scripts/tools/soak_report.py the
# report.
#
#   bash scripts/soak.sh                        # 1 hour, 2 listeners and the app
#   FEDERATED=1 bash scripts/soak.sh            # across two servers 1 s apart
#   APP=0 bash scripts/soak.sh                  # the CLI listeners only
#   PANEL=open bash scripts/soak.sh             # the app's panel on screen
#   DURATION=600 bash scripts/soak.sh           # 10 minutes
#
# Knobs: DURATION (3600) s, EVERY (10) s between talk starts, TALK_S (3) s
# per talk, LISTENERS (2), APP (1), PANEL (tray, or open), FEDERATED (0),
# WALKIE (a walkie binary instead of building the release CLI), WALKIE_APP_BIN (default: the debug
# app, built), OUT (docs/soak.json), PLOT (docs/soak.png; empty: no plot),
# CHECK=1 (exit 1 when a talk failed, was not posted, not saved whole by
# every listener or not played by the app: the test command's 2-minute
# run), KEEP=1 (keep the work directory).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
PY="$WALKIE_SYNAPSE_PYTHON"
source scripts/lib/bench-common.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/walkie/target}"
export DURATION="${DURATION:-3600}" EVERY="${EVERY:-10}" TALK_S="${TALK_S:-3}"
export LISTENERS="${LISTENERS:-2}" APP="${APP:-1}" FEDERATED="${FEDERATED:-0}"
OUT="${OUT:-$PWD/docs/soak.json}"
PLOT="${PLOT-$PWD/docs/soak.png}"
[[ -z $PLOT ]] || ensure_plot_venv

bench_walkie_cli
export WALKIE_CLI_BIN="$WALKIE"
# The harness, and the debug app (as the test command builds them: the same
# artifacts, nothing built twice).
say "building the soak harness and the app (debug)"
cargo build --workspace --all-targets --locked
export WALKIE_APP_BIN="${WALKIE_APP_BIN:-$CARGO_TARGET_DIR/debug/walkie-app}"
SOAK_WORK="$(mktemp -d /tmp/wsoak.XXXXXX)"
export SOAK_WORK
if [[ -z ${KEEP:-} ]]; then trap 'rm -rf "$SOAK_WORK"' EXIT; else say "work directory: $SOAK_WORK"; fi
"$CARGO_TARGET_DIR/debug/examples/soak"

REPORT_PY="$PY"
[[ -z $PLOT ]] || REPORT_PY="$BENCH_VENV/bin/python"
"$REPORT_PY" scripts/tools/soak_report.py "$SOAK_WORK" "$LISTENERS" "$TALK_S" "$DURATION" "$OUT" "$PLOT" "$EVERY" ${CHECK:+--check}
