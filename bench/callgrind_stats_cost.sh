#!/usr/bin/env bash
# Instructions pgshape spends per statement, with statistics on and off, counted by callgrind:
# repeatable on a noisy shared machine where TPS ratios move by ±10%.
#
# Each configuration runs twice under valgrind (N1 and N2 pgbench -S transactions, one client,
# extended protocol); the difference divided by N2-N1 is the per-statement cost without the
# start-up. Needs a running PostgreSQL with pgbench tables (pgbench -i) that trusts
# 127.0.0.1: set PGHOST/PGPORT/PGUSER/PGDATABASE for it.
#
# Usage: PGPORT=5432 PGUSER=postgres bench/callgrind_stats_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-500}
N2=${N2:-2500}
BIN=${PGSHAPE_BIN:-target/release/pgshape}
[ -x "$BIN" ] || cargo build --release --bin pgshape >&2
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install -y valgrind" >&2; exit 1; }
WORK=$(mktemp -d /tmp/pgshape-callgrind-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
printf '[stats]\nenabled = false\n' >"$WORK/nostats.toml"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
UPSTREAM="${PGHOST:-127.0.0.1}:${PGPORT:-5432}"

instructions() { # NAME TXNS [pgshape args...] -> total instructions
    local name=$1 txns=$2 out
    shift 2
    out="$WORK/cg.$name.$txns"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" serve \
        --listen "127.0.0.1:$PORT" --upstream "$UPSTREAM" --admin off --workers 1 \
        --log-min-duration -1 "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 150); do pg_isready -h 127.0.0.1 -p "$PORT" -q && break; sleep 0.2; done
    pgbench -n -S -M extended -c 1 -t "$txns" -h 127.0.0.1 -p "$PORT" >/dev/null 2>&1
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
    echo "$name: $a instructions for $N1 statements, $b for $N2: ${per[$name]} per statement"
done
python3 -c "s, n = ${per[stats]}, ${per[nostats]}; print(f'statistics add {s - n} instructions per statement: {100 * (s - n) / n:.1f}% of pgshape user-space work')"
