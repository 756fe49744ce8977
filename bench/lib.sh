# Shared by the bench scripts. Sourced, not run; corpus uses $MIRRORS and $TMP.

# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# corpus NAME MIRROR PATH: the folder PATH of the mirrored repository, unpacked
# into $TMP/src/NAME, printed as NAME=DIR (the subtree alone: some mirrors lack
# large files elsewhere in the tree). No mirror: a skip line, nothing printed.
corpus() {
  local git=$MIRRORS/$2/repo
  if [ ! -d "$git" ]; then echo "# skip $1: no mirror at $git" >&2; return 0; fi
  mkdir -p "$TMP/src/$1"
  git --git-dir="$git" archive "HEAD:$3" | tar -x -C "$TMP/src/$1"
  echo "$1=$TMP/src/$1"
}

# real_histories: the real migration histories bench/floor.sh and
# bench/instructions.sh measure by default, as NAME=DIR (skipped without a mirror).
real_histories() {
  corpus harbor goharbor+harbor make/migrations/postgresql
  corpus documenso documenso+documenso packages/prisma/migrations
}

# history_prelude NAME: what a history expects to find before its first file:
# harbor's migrations alter golang-migrate's own table.
history_prelude() {
  case "$1" in
    harbor) echo "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);" ;;
  esac
}

# history_files NAME DIR: $TMP/NAME.json, the manifest $CLI builds from DIR,
# and $TMP/NAME.sql, its SQL in its order: the floor, run as one Query.
history_files() {
  "$CLI" manifest --project "$1" "$2" >"$TMP/$1.json"
  python3 -c '
import json, sys
for c in json.load(open(sys.argv[1]))["changes"]:
    sys.stdout.write(c["sql"].rstrip() + "\n;\n")' "$TMP/$1.json" >"$TMP/$1.sql"
  chmod 644 "$TMP/$1.json" "$TMP/$1.sql"
}

# with_checksums IN OUT: the manifest IN with what pg-deploy adds to each
# change, the sha256 of its SQL as sent, written to OUT (may be IN).
with_checksums() {
  python3 -c 'import hashlib, json, sys
m = json.load(open(sys.argv[1]))
for c in m["changes"]:
    c["checksum"] = "sha256:" + hashlib.sha256(c["sql"].encode()).hexdigest()
json.dump(m, open(sys.argv[2], "w"))' "$1" "$2"
}

# require_release_build: measure the release build. `cargo pgrx test` installs
# its debug build (unoptimised, about 18 times the size) over the one
# scripts/setup.sh installs, and a benchmark run after it measured that; this
# puts the release build back first (quick once it is built).
require_release_build() {
  local pg_config=${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_config so
  so="$("$pg_config" --pkglibdir)/pg_deploy.so"
  if [ -f "$so" ] && command -v readelf >/dev/null && readelf -S "$so" | grep -q '\.debug_info'; then
    echo "# $so is a debug build (cargo pgrx test installs one): installing the release build" >&2
    (cd "$ROOT" && cargo pgrx install --release --pg-config "$pg_config" >/dev/null)
  fi
}

# Seconds of CPU the hypervisor gave other guests (steal) so far, all cores:
# on a shared VM it moves the CPU-bound figures by tens of percent.
steal_seconds() {
  awk -v tick="$(getconf CLK_TCK)" '/^cpu / {printf "%.2f\n", $9 / tick}' /proc/stat
}

# start_cluster DIR PORT [MAX_LOCKS]: a throwaway cluster in DIR on PORT,
# exported to libpq clients (PGHOST, PGPORT, PGUSER) in this shell; with
# MAX_LOCKS, max_locks_per_transaction set to it (thousands of changes in one
# transaction need more than the default 64 a transaction) and the cluster
# restarted for it.
start_cluster() {
  bash "$ROOT/scripts/cluster.sh" start "$1" "$2"
  eval "$(bash "$ROOT/scripts/cluster.sh" env "$1")"
  if [ -n "${3:-}" ]; then
    psql -X -q -d postgres -c "ALTER SYSTEM SET max_locks_per_transaction = $3" >/dev/null
    bash "$ROOT/scripts/cluster.sh" restart "$1"
  fi
}
