#!/usr/bin/env bash
# Instructions pgshape spends per statement, with statistics on and off, counted by callgrind:
# repeatable on a noisy shared machine where TPS ratios move by ±10% (and on-CPU time per
# statement by ±15% from run to run), so a 1% effect can only be resolved this way.
#
# Each configuration runs twice under valgrind (N1 and N2 pgbench -S transactions, one client)
# and the difference divided by N2-N1 is the per-statement cost without the start-up.
# MODE=simple sends every statement with its own literal (a fingerprint-cache miss each time,
# as psycopg2 and Django do); MODE=extended sends one parameterized text.
#
# Usage: bench/callgrind_stats_cost.sh     (MODE=extended N1=500 N2=2500; a throw-away
#        PostgreSQL is started, or set PGPORT (PGHOST, PGUSER) for one with pgbench tables)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N1=${N1:-500}
N2=${N2:-2500}
MODE=${MODE:-extended}
PGSHAPE_BIN=${PGSHAPE_BIN:-$ROOT/target/release/pgshape}
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install -y valgrind" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_pgshape
BIN=$PGSHAPE_BIN
if [ -z "${PGPORT:-}" ]; then
    start_postgres 20
    "$bindir/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1
    export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=bench PGDATABASE=bench
fi
printf '[stats]\nenabled = false\n' >"$WORK/nostats.toml"
PORT=$(free_port)
UPSTREAM="${PGHOST:-127.0.0.1}:${PGPORT}"

instructions() { # NAME TXNS [pgshape args...] -> total instructions
    local name=$1 txns=$2 out
    shift 2
    out="$WORK/cg.$name.$txns"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" serve \
        --listen "127.0.0.1:$PORT" --upstream "$UPSTREAM" --admin off --workers 1 \
        --log-min-duration -1 "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 150); do "$bindir/pg_isready" -h 127.0.0.1 -p "$PORT" -q && break; sleep 0.2; done
    "$bindir/pgbench" -n -S -M "$MODE" -c 1 -t "$txns" -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    sed -n 's/^summary: //p' "$out"
}

declare -A per
for name in stats nostats; do
    args=()
    [ "$name" = nostats ] && args=(--config "$WORK/nostats.toml")
    a=$(instructions "$name" "$N1" "${args[@]}")
    b=$(instructions "$name" "$N2" "${args[@]}")
    per[$name]=$(((b - a) / (N2 - N1)))
    echo "$MODE $name: $a instructions for $N1 statements, $b for $N2: ${per[$name]} per statement"
done
python3 -c "s, n = ${per[stats]}, ${per[nostats]}; print(f'statistics add {s - n} instructions per statement: {100 * (s - n) / n:.1f}% of pgshape user-space work')"
