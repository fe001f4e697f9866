#!/usr/bin/env bash
# A PostgreSQL server on this machine, for the tests: a cluster in one folder ($DIP_PG_DIR, default
# /tmp/dip_pg), listening on 127.0.0.1 at a free port, trust authentication, one database `dip`.
#   scripts/local_postgres.sh start   # prints DIP_PG_URL=postgresql://postgres@127.0.0.1:PORT/dip
#   scripts/local_postgres.sh stop    # stops the server and removes the folder
# Uses Debian's postgresql (installs it when missing and root). As root, the server runs as the
# `postgres` user, since PostgreSQL refuses root. When it cannot start: one line why, exit 3.
set -uo pipefail
DIR="${DIP_PG_DIR:-/tmp/dip_pg}"

die() { echo "local PostgreSQL cannot start: $*" >&2; exit 3; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

as_owner() {  # run a server command as the owner of the data folder
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  bin=$(bindir)
  if [ -n "$bin" ] && [ -f "$DIR/data/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
}

start() {
  if [ -z "$(bindir)" ]; then
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "postgresql is not installed and this user cannot install it"
    { apt-get install -y -q postgresql >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1; }; } \
      || die "apt-get install postgresql failed (no package registry?)"
  fi
  bin=$(bindir)
  stop
  mkdir -p "$DIR" || die "cannot create $DIR"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "there is no postgres user to run the server as"
    chown postgres "$DIR"
  fi
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_owner "$bin/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 >"$DIR/initdb.log" 2>&1 \
    || die "initdb failed: $(tail -2 "$DIR/initdb.log" | tr '\n' ' ')"
  as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $DIR -c max_connections=200 -c fsync=off" start >/dev/null 2>&1 \
    || die "the server did not start: $(tail -2 "$DIR/server.log" | tr '\n' ' ')"
  as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres dip 2>"$DIR/createdb.err" \
    || die "createdb failed: $(tr '\n' ' ' < "$DIR/createdb.err")"
  echo "DIP_PG_URL=postgresql://postgres@127.0.0.1:$port/dip"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
