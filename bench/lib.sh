# Shared set-up of the shell benchmarks (sourced, not run): a throw-away PostgreSQL, free ports,
# a pgbouncer configuration; everything stopped and removed on exit. As root, initdb, postgres and
# pgbouncer run as the `postgres` system user (they refuse root) in a temp dir owned by it.
#
# Expects ROOT (the repository) and PGSHAPE_BIN; sets bindir, WORK, PG_PORT and PORT[name].

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %b\n' "$*" >&2; exit 1; }

bindir=""
if command -v initdb >/dev/null 2>&1; then
    bindir=$(dirname "$(readlink -f "$(command -v initdb)")")
else
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n1 || true)
fi
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] \
    || die "PostgreSQL server not found: apt-get install -y postgresql postgresql-contrib"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() { # port name
    local i
    for i in $(seq 1 100); do
        if "$bindir/pg_isready" -q -h 127.0.0.1 -p "$1" -d bench -U bench; then return 0; fi
        sleep 0.1
    done
    die "$2 did not accept connections on port $1"
}

need_pgshape() {
    if [ ! -x "$PGSHAPE_BIN" ]; then
        log "building pgshape (release)"
        (cd "$ROOT" && cargo build --release --bin pgshape >&2)
    fi
}

need_pgbouncer() {
    [ -x "$PGBOUNCER" ] || die "pgbouncer not found: apt-get install -y pgbouncer"
}

WORK=$(mktemp -d /tmp/pgshape-bench-XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"
declare -A PORT
declare -A PID
BENCH_RESULTS=""

cleanup() {
    set +e
    local name
    for name in "${!PID[@]}"; do
        [ "$name" = pgbouncer ] && continue
        kill "${PID[$name]}" 2>/dev/null && wait "${PID[$name]}" 2>/dev/null
    done
    # Signal pgbouncer itself (its pidfile), not the runuser wrapper, which does not pass it on.
    if [ -f "$WORK/pgbouncer.pid" ]; then
        kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null
    fi
    [ -n "${PID[pgbouncer]:-}" ] && kill "${PID[pgbouncer]}" 2>/dev/null && wait "${PID[pgbouncer]}" 2>/dev/null
    if [ -f "$WORK/data/postmaster.pid" ]; then
        as_pg "$bindir/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "${KEEP_RESULTS:-}" ] && [ -n "$BENCH_RESULTS" ] && [ -f "$BENCH_RESULTS" ]; then
        cp "$BENCH_RESULTS" "$KEEP_RESULTS"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_postgres() { # max_connections; creates database "bench" for trusted user "bench"
    # PG_EXTRA_CONF: more postgresql.conf lines (e.g. shared_preload_libraries for bench/soak).
    PG_PORT=$(free_port)
    PORT[direct]=$PG_PORT
    log "initdb + start PostgreSQL on port $PG_PORT"
    as_pg "$bindir/initdb" -D "$WORK/data" -U bench --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
    cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = $1
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
${PG_EXTRA_CONF:-}
CONF
    as_pg "$bindir/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
    as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U bench bench
}

write_pgbouncer_ini() { # port max_client_conn [server_idle_timeout seconds, default 600]
    echo '"bench" ""' >"$WORK/userlist.txt"
    cat >"$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = $2
default_pool_size = $2
max_db_connections = 0
server_idle_timeout = ${3:-600}
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
INI
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$WORK/pgbouncer.ini" "$WORK/userlist.txt"; fi
}

