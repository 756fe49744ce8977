# Shared by the end-to-end suites (run.sh, cli.sh): assertions and the runner.
# Sourced, not run.

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -At)

# newdb: fresh database with the extension, named $DB_PREFIX + the running test.
newdb() {
  DB=${DB_PREFIX}${CURRENT#t_}
  createdb "$DB"
  q "CREATE EXTENSION pg_deploy;"
}

# q SQL: run SQL in $DB, print rows unaligned.
q() { "${PSQL[@]}" -d "$DB" -c "$1"; }

# start_pgbouncer POOL_SIZE: PgBouncer in transaction mode on 127.0.0.1:$BOUNCER_PORT
# in front of the cluster in $TMP (port $PORT), run as postgres; waits until it answers.
start_pgbouncer() {
  # trust auth still needs the user listed in auth_file.
  echo '"postgres" ""' >"$TMP/userlist.txt"
  cat >"$TMP/pgbouncer.ini" <<INI
[databases]
* = host=$TMP/sock port=$PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/userlist.txt
pool_mode = transaction
max_client_conn = 100
default_pool_size = $1
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer.pid
INI
  chown postgres: "$TMP/pgbouncer.ini" "$TMP/userlist.txt"
  runuser -u postgres -- /usr/sbin/pgbouncer -d -q "$TMP/pgbouncer.ini"
  for _ in $(seq 50); do
    psql -X -h 127.0.0.1 -p "$BOUNCER_PORT" -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "pgbouncer did not answer on port $BOUNCER_PORT" >&2
  return 1
}

# After a crash: until the restarted server answers (and is not in recovery).
wait_for_recovery() {
  sleep 1
  for _ in $(seq 150); do
    [ "$("${PSQL[@]}" -d postgres -c "SELECT NOT pg_is_in_recovery()" 2>/dev/null)" = t ] && return 0
    sleep 0.2
  done
  echo "the server did not come back" >&2
  return 1
}

eq() { # eq ACTUAL EXPECTED WHAT
  if [ "$1" != "$2" ]; then
    printf '%s: expected [%s], got [%s]\n' "$3" "$2" "$1" >&2; return 1
  fi
}

has() { # has TEXT PATTERN WHAT  (extended regex)
  if ! grep -Eq -- "$2" <<<"$1"; then
    printf '%s: /%s/ not found in:\n%s\n' "$3" "$2" "$1" >&2; return 1
  fi
}

# j JSON EXPR: evaluate a python expression over the parsed JSON `r`.
j() {
  python3 -c 'import json, sys
r = json.loads(sys.argv[1]); v = eval(sys.argv[2])
print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))' "$1" "$2"
}

# run_tests LABEL [t_name ...]: runs the named tests (default: every t_*
# function), each in a subshell that stops at its first failure, with its log
# in $TMP/out; prints "ok - name" / "not ok - name" and "LABEL: N passed, M failed".
# A test that calls skip is reported as skipped, with its reason, never silently.
run_tests() {
  local label=$1 tests log rc passed=0 failed=0 skipped=0
  shift
  if [ $# -gt 0 ]; then tests=("$@"); else
    mapfile -t tests < <(declare -F | awk '$3 ~ /^t_/ {print $3}')
  fi
  for CURRENT in "${tests[@]}"; do
    log=$TMP/out/$CURRENT.log
    set +e
    ( set -e; "$CURRENT" ) >"$log" 2>&1
    rc=$?
    set -e
    if [ "$rc" = 0 ]; then
      echo "ok - ${CURRENT#t_}"; passed=$((passed + 1))
    elif [ "$rc" = 77 ]; then
      echo "ok - ${CURRENT#t_} # SKIP $(sed -n 's/^# SKIP //p' "$log")"; skipped=$((skipped + 1))
    else
      echo "not ok - ${CURRENT#t_}"; sed 's/^/#   /' "$log"; failed=$((failed + 1))
    fi
  done
  if [ "$skipped" = 0 ]; then echo "$label: $passed passed, $failed failed"
  else echo "$label: $passed passed, $failed failed, $skipped skipped (reasons above)"; fi
  [ "$failed" = 0 ]
}

# bookings_examples DIR: the bookings example for this server, in $EXAMPLES.
# PostgreSQL 16.14's wheel has no btree_gist: there the example runs without its
# exclusion constraint (the one thing that needs it), said once in the output.
bookings_examples() {
  EXAMPLES=$ROOT/examples/bookings
  if [ "$("${PSQL[@]}" -d postgres -c "SELECT count(*) FROM pg_available_extensions WHERE name = 'btree_gist'")" = 1 ]; then
    return 0
  fi
  echo "# btree_gist is not available on this server: the bookings example without its exclusion constraint"
  mkdir -p "$1"
  python3 - "$EXAMPLES" "$1" <<'PY'
import json, pathlib, sys
src, dst = map(pathlib.Path, sys.argv[1:])
for f in sorted(src.glob("*.json")):
    m = json.loads(f.read_text())
    for c in m["changes"]:
        if c["id"] == "0002-btree-gist":
            c["sql"] = "SELECT 'btree_gist is not available here';"
        c["sql"] = c["sql"].replace(
            ",\n  CONSTRAINT bookings_no_overlap EXCLUDE USING gist (resource_id WITH =, during WITH &&) WHERE (status = 'confirmed')", "")
    (dst / f.name).write_text(json.dumps(m, indent=2))
PY
  EXAMPLES=$1
}

# skip REASON: ends the running test as skipped (run_tests says so, with REASON).
skip() { echo "# SKIP $*"; exit 77; }

# start_cluster NAME PORT: a throwaway cluster in a new $TMP, started, its
# settings exported. On exit: stopped, with the PgBouncer of
# $TMP/pgbouncer.pid and the clusters a test left running in $TMP/*/ (a
# failed test's), and removed, or kept with E2E_KEEP=1.
start_cluster() {
  TMP=$(mktemp -d "/tmp/pg_deploy_$1.XXXXXX")
  trap stop_cluster EXIT
  bash "$ROOT/scripts/cluster.sh" start "$TMP" "$2"
  eval "$(bash "$ROOT/scripts/cluster.sh" env "$TMP")"
}

stop_cluster() {
  if [ -f "$TMP/pgbouncer.pid" ]; then kill "$(cat "$TMP/pgbouncer.pid")" 2>/dev/null || true; fi
  local d
  for d in "$TMP"/*/; do
    if [ -f "$d/data/postmaster.pid" ]; then bash "$ROOT/scripts/cluster.sh" stop "$d" >/dev/null 2>&1 || true; fi
  done
  bash "$ROOT/scripts/cluster.sh" stop "$TMP" || true
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
