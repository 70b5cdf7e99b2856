#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for tests/esl (freeswitch.Dbh over pgsql://) and prints the DSN the
# tests read from SB_TEST_PGSQL_DSN. Usage: eval "$(bash .ci/postgres.sh start)"; bash .ci/postgres.sh stop DIR
set -euo pipefail
case "${1:-start}" in
start)
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== installing postgresql" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
  fi
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  dir=$(mktemp -d /tmp/sb-pg.XXXXXX)
  run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi; }
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  run "'$bin/initdb' -D '$dir/data' -A trust -U postgres >'$dir/initdb.log' 2>&1"
  # A port below the ephemeral range, the first one free (load tests on the machine use ephemeral ports).
  port=${SB_TEST_PGSQL_PORT:-25432}
  for try in $(seq 1 40); do
    if run "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 -o \"-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null 2>&1"; then
      break
    fi
    [ "$try" = 40 ] && { echo "postgres.sh: no free port for PostgreSQL; see $dir/server.log" >&2; exit 1; }
    port=$((port + 1))
  done
  echo "export SB_TEST_PGSQL_DSN='host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=disable'"
  echo "export SB_TEST_PGSQL_DIR='$dir'"
  ;;
stop)
  dir=$2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "'$bin/pg_ctl' -D '$dir/data' -m fast stop" >/dev/null || true
  else "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null || true; fi
  rm -rf "$dir"
  ;;
esac
