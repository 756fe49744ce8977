#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for demos and tests.
#   cluster.sh start DIR PORT | stop DIR | restart DIR | env DIR
# Layout: DIR/data (PGDATA), DIR/sock (unix socket), DIR/postgres.log.
# Can also be sourced: defines cluster_start/cluster_stop/cluster_restart/cluster_env.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# Postgres refuses to run as root.
_as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cluster_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    _as_pg mkdir -p "$dir/data" "$dir/sock"
    _as_pg "$PG_BIN/initdb" -D "$dir/data" --auth=trust -E UTF8 --locale=C.UTF-8 -U postgres >"$dir/initdb.log"
    echo "include_if_exists = 'cluster.conf'" | _as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
  fi
  # Rewritten on every start so the port can change; kept for restarts.
  _as_pg tee "$dir/data/cluster.conf" >/dev/null <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
shared_preload_libraries = ''
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  _as_pg "$PG_BIN/pg_ctl" start -w -D "$dir/data" -l "$dir/postgres.log" >/dev/null
}

cluster_stop() {
  local dir=$1
  if [ -f "$dir/data/postmaster.pid" ]; then
    _as_pg "$PG_BIN/pg_ctl" stop -w -m fast -D "$dir/data" >/dev/null
  fi
}

cluster_restart() {
  local dir=$1
  _as_pg "$PG_BIN/pg_ctl" restart -w -m fast -D "$dir/data" -l "$dir/postgres.log" >/dev/null
}

# Prints exports so libpq clients reach the cluster: eval "$(cluster.sh env DIR)"
cluster_env() {
  local dir=$1
  local port
  port=$(sed -n 's/^port = //p' "$dir/data/cluster.conf")
  echo "export PGHOST='$dir/sock' PGPORT='$port' PGUSER=postgres"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  cmd=${1:-}
  case "$cmd" in
    start)   [ $# -eq 3 ] || { echo "usage: $0 start DIR PORT" >&2; exit 2; }; cluster_start "$2" "$3" ;;
    stop|restart|env)
             [ $# -eq 2 ] || { echo "usage: $0 $cmd DIR" >&2; exit 2; }; "cluster_$cmd" "$2" ;;
    *)       echo "usage: $0 start DIR PORT | stop DIR | restart DIR | env DIR" >&2; exit 2 ;;
  esac
fi
