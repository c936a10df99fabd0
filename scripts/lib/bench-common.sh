# Shared set-up of the benches that run Walkie against a throw-away Synapse
# (issue 11); sourced after scripts/setup.sh and scripts/local-homeserver.sh,
# not run. Needs say and die (setup.sh) and PY (a Python 3).
#
#   ensure_plot_venv          matplotlib in BENCH_VENV, installed once.
#   bench_walkie_cli          sets WALKIE: $WALKIE when given (checked), else
#       builds the release CLI.
#   bench_workdir PREFIX      WORK (a short path under /tmp: PulseAudio's
#       socket path must stay under 108 bytes), WALKIE_DATA, PIDS, and an EXIT
#       trap that kills PIDS, the homeserver and the private PulseAudio (when
#       scripts/lib/bench-pulse.sh started one), then removes WORK unless KEEP
#       is set (ROOT instead, when a script moves WORK into subdirectories
#       of it). A script may define bench_cleanup_extra for its own processes.
#   bench_homeserver          a Synapse on a free port with users alice and bob
#       (scripts/demo_setup.py); defines q (a quiet step: its stderr, the
#       SDK's expected 404s, goes to a log shown on failure) and pw USER (a
#       demo user's password).
#   bench_walkie_group NAME N  alice signed in, an encrypted walkie group NAME
#       with bob, N devices of bob signed in (the first creates his identity,
#       the others are verified with its recovery key: only devices their
#       owner signed hear a talk), all consenting; sets A (alice's data-dir
#       arguments) and ROOM. Devices are WORK/bob1..N.
#   bench_wait_listening N SECONDS  waits until each of the N listeners
#       (pids in LPIDS, output in WORK/listen1..N.jsonl, errors in .err)
#       printed its "listening" line; dies naming one that exited or did
#       not within SECONDS.

bench_walkie_cli() {
  if [[ -n ${WALKIE:-} ]]; then
    [[ -x $WALKIE ]] || die "WALKIE=$WALKIE is not an executable"
    say "using $WALKIE (not rebuilt)"
  else
    say "building the CLI (release)"
    cargo build --release -p walkie-cli --locked
    WALKIE="$CARGO_TARGET_DIR/release/walkie"
  fi
}

bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
  [[ -n ${HS_STARTED_PID:-} ]] && kill "$HS_STARTED_PID" 2>/dev/null
  if [[ -n ${PG_STARTED_DIR:-} ]]; then
    [[ -n ${HS_STARTED_PID:-} ]] && { wait "$HS_STARTED_PID" 2>/dev/null || true; }
    stop_local_postgres
  fi
  if declare -F bench_pulse_stop >/dev/null; then bench_pulse_stop; fi
  local root=${ROOT:-$WORK}
  if [[ -n ${KEEP:-} ]]; then say "kept $root"; else rm -rf "$root"; fi
}

bench_workdir() {
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  WALKIE_DATA="$WORK"
  PIDS=()
  trap bench_cleanup EXIT
}

bench_homeserver() {
  WALKIE_PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  start_local_homeserver
  "$PY" scripts/demo_setup.py --homeserver "$HOMESERVER_URL" \
    --shared-secret "$HS_SHARED_SECRET" --state "$WORK/homeserver/demo-users.json" 2>/dev/null \
    || die "demo_setup.py could not create the users (Synapse log: $WORK/homeserver/homeserver.log)"
}

q() { "$@" 2>>"$WORK/setup.err" || { tail -n 20 "$WORK/setup.err" >&2; die "failed: $(basename "$1") ${*:2}"; }; }
pw() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$WORK/homeserver/demo-users.json" "$1"; }

bench_walkie_group() {
  local name=$1 n=$2 i login key bob_key=""
  say "signing in alice and $n device(s) of bob; walkie group \"$name\""
  A=(--data-dir "$WORK/alice")
  WALKIE_PASSWORD="$(pw alice)" q "$WALKIE" "${A[@]}" login --homeserver "$HOMESERVER_URL" --user @alice:localhost >/dev/null
  ROOM=$(q "$WALKIE" "${A[@]}" create "$name" --invite @bob:localhost | sed 's/.*"room_id":"\([^"]*\)".*/\1/')
  q "$WALKIE" "${A[@]}" consent "$ROOM" --for 8h >/dev/null
  for i in $(seq 1 "$n"); do
    printf '\r[setup] signing in bob device %d of %d' "$i" "$n" >&2
    login=$(WALKIE_PASSWORD="$(pw bob)" q "$WALKIE" --data-dir "$WORK/bob$i" login --homeserver "$HOMESERVER_URL" --user @bob:localhost)
    key=$(printf '%s' "$login" | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("recovery_key") or "")')
    [[ -z $key ]] || bob_key=$key
    ((i == 1)) || WALKIE_RECOVERY_KEY="$bob_key" q "$WALKIE" --data-dir "$WORK/bob$i" verify recovery-key >/dev/null
    ((i > 1)) || q "$WALKIE" --data-dir "$WORK/bob$i" join "$ROOM" >/dev/null
    q "$WALKIE" --data-dir "$WORK/bob$i" consent "$ROOM" --for 8h >/dev/null
  done
  printf '\n' >&2
}

bench_wait_listening() {
  local n=$1 secs=$2 i _
  for i in $(seq 1 "$n"); do
    for _ in $(seq $((secs * 20))); do
      grep -q '"listening"' "$WORK/listen$i.jsonl" 2>/dev/null && break
      kill -0 "${LPIDS[$((i - 1))]}" 2>/dev/null || { tail -n 20 "$WORK/listen$i.err" >&2; die "listener $i exited before listening (above)"; }
      sleep 0.05
    done
    grep -q '"listening"' "$WORK/listen$i.jsonl" || die "listener $i not listening after $secs s"
  done
}

# The plots need matplotlib: a small venv of its own ($BENCH_VENV),
# installed once.
BENCH_VENV="$WALKIE_CACHE/bench-venv"
ensure_plot_venv() {
  if ! "$BENCH_VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    say "installing matplotlib into $BENCH_VENV (pip, once)"
    /usr/bin/python3 -m venv "$BENCH_VENV" || die "python3 -m venv failed"
    "$BENCH_VENV/bin/pip" install --quiet matplotlib || die "pip install matplotlib failed (above)"
  fi
}
