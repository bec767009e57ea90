# Sourced: `start_temp_postgres [extra server options…]` starts a temporary PostgreSQL
# cluster from the installed server binaries, on a free local port, removed when the
# calling script exits; it sets TEMP_POSTGRES_URL to its admin URL.

start_temp_postgres() {
  local initdb bin port
  initdb=$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$initdb" ] && [ -x "$initdb" ] \
    || fail "PostgreSQL's server binaries are needed (Debian: apt install postgresql), or name a server's admin URL"
  bin=$(dirname "$initdb")
  temp_pg_cluster=$(mktemp -d "${TMPDIR:-/tmp}/relais-pg.XXXXXX")
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres`.
  temp_pg_as=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || fail "running as root needs the postgres user that PostgreSQL's packages create"
    chown postgres "$temp_pg_cluster"
    temp_pg_as=(runuser -u postgres --)
  fi
  temp_pg_bin=$bin
  trap stop_temp_postgres EXIT
  "${temp_pg_as[@]}" "$bin/initdb" -D "$temp_pg_cluster/data" -U postgres --auth=trust -E UTF8 >"$temp_pg_cluster/initdb.log" 2>&1 \
    || { cat "$temp_pg_cluster/initdb.log" >&2; fail "initdb failed"; }
  "${temp_pg_as[@]}" "$bin/pg_ctl" -D "$temp_pg_cluster/data" -l "$temp_pg_cluster/server.log" -w \
    -o "-p $port -k $temp_pg_cluster -c listen_addresses=127.0.0.1 $*" \
    start >/dev/null || { cat "$temp_pg_cluster/server.log" >&2; fail "the temporary PostgreSQL did not start"; }
  TEMP_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_temp_postgres() {
  "${temp_pg_as[@]}" "$temp_pg_bin/pg_ctl" -D "$temp_pg_cluster/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$temp_pg_cluster"
}
