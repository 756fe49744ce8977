#!/usr/bin/env bash
# Fleet: one migrations folder to N databases (default 200) on the local
# server, reached through bench/delay_proxy.py (~20 ms round trip), two ways
# in one run: a plain shell loop calling `pg-deploy apply` once per database,
# and one `pg-deploy apply --targets FILE --parallel 8`. Each way gets its own
# N fresh databases in each of ROUNDS rounds (default 4; the way that goes
# first alternates, and the second of a round runs a little slower, so an even
# number of rounds balances it). Reports each round's ratio and the ratio of
# the two ways' total times (goal >= 5x), and the client's peak memory
# (/usr/bin/time -v). Assumes the extension is
# installed (scripts/setup.sh); builds the client in release mode.
# Writes bench/fleet-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5563}
PROXY=${PROXY_PORT:-5564}
N=${N:-200}
ROUNDS=${ROUNDS:-4}
PARALLEL=${PARALLEL:-8}
DELAY_MS=${DELAY_MS:-10}   # each way
cargo build -q --release -p pg-deploy-cli
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/pg-deploy

TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_fleet.XXXXXX")
cleanup() {
  [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null || true
  bash "$ROOT/scripts/cluster.sh" stop "$TMP" || true
  rm -rf "$TMP"
}
trap cleanup EXIT
bash scripts/cluster.sh start "$TMP" "$PORT"
eval "$(bash scripts/cluster.sh env "$TMP")"
# 8 concurrent deployers plus the loop's leftovers stay well inside the default 100.
python3 "$ROOT/bench/delay_proxy.py" "$PROXY" 127.0.0.1 "$PORT" "$DELAY_MS" &
PROXY_PID=$!
for _ in $(seq 50); do psql -X -h 127.0.0.1 -p "$PROXY" -d postgres -Atc 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.1; done

# Five migrations: a schema, two tables, an index, seed rows, a view.
M=$TMP/migrations
mkdir -p "$M"
echo 'CREATE SCHEMA app;' >"$M/1_schema.sql"
echo 'CREATE TABLE app.customers (id bigint PRIMARY KEY, name text NOT NULL, created_at timestamptz DEFAULT now());' >"$M/2_customers.sql"
echo 'CREATE TABLE app.orders (id bigint PRIMARY KEY, customer bigint REFERENCES app.customers, total numeric(12,2) CHECK (total >= 0));' >"$M/3_orders.sql"
echo 'CREATE INDEX orders_customer_idx ON app.orders (customer);' >"$M/4_orders_idx.sql"
echo "INSERT INTO app.customers SELECT g, 'c' || g FROM generate_series(1, 100) g; CREATE VIEW app.big_orders AS SELECT * FROM app.orders WHERE total > 1000;" >"$M/5_seed.sql"

psql -X -q -d postgres -c "CREATE DATABASE bench_tpl" -c "\\c bench_tpl" -c "CREATE EXTENSION pg_deploy"
psql -X -q -d postgres -c "ALTER DATABASE bench_tpl IS_TEMPLATE true"
URL="postgres://postgres@127.0.0.1:$PROXY"
: >"$TMP/loop_dbs"; : >"$TMP/targets"
for i in $(seq -w 1 "$N"); do
  echo "$URL/loop_$i" >>"$TMP/loop_dbs"
  echo "$URL/fleet_$i" >>"$TMP/targets"
done
# Each round's 2N databases, fresh copies of the template (the last round's dropped first).
fresh_databases() {
  for i in $(seq -w 1 "$N"); do
    echo "DROP DATABASE IF EXISTS loop_$i; DROP DATABASE IF EXISTS fleet_$i;"
    echo "CREATE DATABASE loop_$i TEMPLATE bench_tpl; CREATE DATABASE fleet_$i TEMPLATE bench_tpl;"
  done | psql -X -q -d postgres
}

# The round trip through the proxy: median of 20 SELECT 1 in one session.
rtt=$(for _ in $(seq 20); do echo 'SELECT 1;'; done |
  psql -X -q "$URL/postgres" -c '\timing on' -f - 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -g |
  awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}')

now() { date +%s.%N; }
# CPU seconds so far: the proxy's own, the server's (the postmaster and the
# backends it has reaped) and this script's children (the clients).
POSTMASTER=$(head -1 "$TMP/data/postmaster.pid")
cpu() {
  python3 - "$PROXY_PID" "$POSTMASTER" "$$" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
def fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()
def own(pid): f = fields(pid); return (int(f[11]) + int(f[12])) / tick
def reaped(pid): f = fields(pid); return (int(f[13]) + int(f[14])) / tick
proxy, server, script = sys.argv[1:]
print(f"{own(proxy):.2f} {own(server) + reaped(server):.2f} {reaped(script):.2f}")
PY
}
# The loop: one client process per database, as a shell script would do it.
run_loop() {
  while read -r url; do "$BIN" -q apply "$M" --project app --database-url "$url" >/dev/null; done <"$TMP/loop_dbs"
}
run_fleet() {
  /usr/bin/time -v "$BIN" -q apply "$M" --project app --targets "$TMP/targets" --parallel "$PARALLEL" --json \
    >"$TMP/report.json" 2>"$TMP/time.txt"
}
# "proxy server clients" CPU seconds spent between two `cpu` readings.
cpu_spent() {
  python3 -c 'import sys; a, b = sys.argv[1].split(), sys.argv[2].split()
print(" ".join(f"{float(y) - float(x):.2f}" for x, y in zip(a, b)))' "$1" "$2"
}
# time_way loop|fleet: "seconds stolen proxy server clients" of one way into $TMP/<way>.<round>.
time_way() {
  local c0 t0 st0 c1 t1 st1
  c0=$(cpu); t0=$(now); st0=$(steal_seconds)
  "run_$1"
  t1=$(now); c1=$(cpu); st1=$(steal_seconds)
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "$st1 - $st0" | bc -l) $(cpu_spent "$c0" "$c1")" >"$TMP/$1.$round"
}
for round in $(seq "$ROUNDS"); do
  fresh_databases
  if (( round % 2 )); then time_way loop; time_way fleet; else time_way fleet; time_way loop; fi
  applied=$(for i in $(seq -w 1 "$N"); do psql -X -At -d "loop_$i" -c "SELECT version FROM deploy.projects"; done | grep -c '^0.5.0$' || true)
  echo "$applied" >"$TMP/applied.$round"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["summary"]["succeeded"], r["summary"]["failed"])' \
    "$TMP/report.json" >"$TMP/fleet_ok.$round"
  cp "$TMP/time.txt" "$TMP/time.$round"
  echo "# round $round: loop $(cut -d' ' -f1 "$TMP/loop.$round" | xargs printf %.1f) s, fleet $(cut -d' ' -f1 "$TMP/fleet.$round" | xargs printf %.1f) s" >&2
done
# Totals over the rounds: "seconds stolen proxy server clients" of each way.
total() { cat "$TMP/$1".* | awk '{for (i = 1; i <= NF; i++) s[i] += $i} END {for (i = 1; i <= NF; i++) printf "%s ", s[i]; print ""}'; }
read -r loop_s loop_steal loop_proxy loop_server loop_clients <<<"$(total loop)"
read -r fleet_s fleet_steal fleet_proxy fleet_server fleet_client <<<"$(total fleet)"
ratio=$(echo "$loop_s / $fleet_s" | bc -l)
all_ratios=$(for r in $(seq "$ROUNDS"); do
  echo "$(cut -d' ' -f1 "$TMP/loop.$r") / $(cut -d' ' -f1 "$TMP/fleet.$r")" | bc -l; done | xargs printf '%.2fx, ' | sed 's/, $//')
applied_loop=$(cat "$TMP"/applied.* | awk '{s += $1} END {print s}')
read -r ok failed <<<"$(cat "$TMP"/fleet_ok.* | awk '{o += $1; f += $2} END {print o, f}')"
runs=$((N * ROUNDS))
per_db() { echo "$1 * 1000 / $runs" | bc -l | xargs printf %.0f; }
cpu_loop="$(per_db "$loop_proxy") / $(per_db "$loop_server") / $(per_db "$loop_clients")"
cpu_fleet="$(per_db "$fleet_proxy") / $(per_db "$fleet_server") / $(per_db "$fleet_client")"
# Stolen CPU as a share of what the cores could give during a way.
steal_pct() { echo "100 * $1 / ($2 * $(nproc))" | bc -l | xargs printf %.0f; }
steal_loop=$(steal_pct "$loop_steal" "$loop_s"); steal_fleet=$(steal_pct "$fleet_steal" "$fleet_s")
peak_kb=$(cat "$TMP"/time.* | sed -n 's/.*Maximum resident set size (kbytes): //p' | sort -n | tail -1)
# One client alone, for its memory.
/usr/bin/time -v "$BIN" -q apply "$M" --project app --database-url "$(head -1 "$TMP/loop_dbs")" >/dev/null 2>"$TMP/time1.txt"

one_kb=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$TMP/time1.txt")

{
  echo "# Fleet benchmark"
  echo
  echo "Generated by \`bash bench/fleet.sh\` on $(date -u +%Y-%m-%d): $(psql -X -At -d postgres -c 'SELECT version()' | cut -d, -f1),"
  echo "$N databases per way on one local server (fsync off), reached through \`bench/delay_proxy.py\` ($DELAY_MS ms each way);"
  echo "a folder of 5 plain migrations (schema, 2 tables, an index, 100 seed rows and a view); $(nproc) cores shared by client, proxy and server."
  echo
  echo "| measure | figure |"
  echo "|---|---:|"
  echo "| round trip through the proxy (median \`SELECT 1\`) | $rtt ms |"
  echo "| rounds (each on 2 x $N fresh databases; the way that goes first alternates) | $ROUNDS |"
  echo "| shell loop, one \`pg-deploy apply\` per database, all rounds | $(printf %.1f "$loop_s") s ($applied_loop/$runs applied) |"
  echo "| \`pg-deploy apply --targets FILE --parallel $PARALLEL\`, all rounds | $(printf %.1f "$fleet_s") s ($ok/$runs succeeded, $failed failed) |"
  echo "| **speed-up** (loop / fleet, total times) | **$(printf %.2f "$ratio")x** (goal >= 5x) |"
  echo "| each round's speed-up, loop first in odd rounds | $all_ratios |"
  echo "| per database, loop | $(per_db "$loop_s") ms |"
  echo "| per database, fleet | $(per_db "$fleet_s") ms |"
  echo "| CPU per database, loop: proxy / server / clients | $cpu_loop ms |"
  echo "| CPU per database, fleet: proxy / server / client | $cpu_fleet ms |"
  echo "| CPU stolen by the hypervisor, loop / fleet (share of the cores' time) | $steal_loop / $steal_fleet % |"
  echo "| client peak memory, fleet of $N (max RSS, largest of the rounds) | $((peak_kb / 1024)) MiB ($peak_kb kB) |"
  echo "| client peak memory, one database (max RSS) | $((one_kb / 1024)) MiB ($one_kb kB) |"
} | tee "$ROOT/bench/fleet-results.md"
