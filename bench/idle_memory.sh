#!/usr/bin/env bash
# Memory per client connection: pgshape against pgbouncer (session mode), both in front of the
# same throw-away PostgreSQL. For each proxy, N clients connect (protocol 3 start-up, trust
# auth, held open) and the proxy's resident set size is read from /proc before, with the N
# connections idle after start-up, and after each ran one `SELECT 1`; the difference divided
# by N is the cost of a connection. Each run starts every proxy afresh (an allocator keeps
# what it freed, so a second round in the same process would measure nothing); medians of
# RUNS runs.
#
# Usage: bench/idle_memory.sh      (N=500 RUNS=3 TARGETS="pgshape pgbouncer")
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-500}
RUNS=${RUNS:-3}
TARGETS=${TARGETS:-"pgshape pgbouncer"}
PGSHAPE_BIN=${PGSHAPE_BIN:-$ROOT/target/release/pgshape}

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_pgshape
case " $TARGETS " in *" pgbouncer "*) need_pgbouncer ;; esac
start_postgres $((N + 20))

start_target() {
    case $1 in
    pgshape) start_pgshape pgshape ;;
    pgbouncer) start_pgbouncer $((N + 10)) ;;
    *) die "unknown target $1" ;;
    esac
}

rss_kib() { # pid
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

proxy_pid() { # target
    if [ "$1" = pgbouncer ]; then cat "$WORK/pgbouncer.pid"; else echo "${PID[$1]}"; fi
}

# Holds N connections: prints "idle" once all finished start-up, "queried" once each ran
# SELECT 1, then waits for its standard input to close.
cat >"$WORK/hold.py" <<'PY'
import socket, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
def message(s):
    head = s.recv(5, socket.MSG_WAITALL)
    tag, length = head[:1], struct.unpack("!I", head[1:])[0]
    body = s.recv(length - 4, socket.MSG_WAITALL) if length > 4 else b""
    return tag, body
def until_ready(s):
    while True:
        tag, body = message(s)
        if tag == b"E":
            sys.exit("server error: %r" % body)
        if tag == b"Z":
            return
params = b"user\0bench\0database\0bench\0\0"
startup = struct.pack("!II", 8 + len(params), 196608) + params
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(startup)
    until_ready(s)
    conns.append(s)
print("idle", flush=True)
sys.stdin.readline()
query = b"SELECT 1\0"
for s in conns:
    s.sendall(b"Q" + struct.pack("!I", 4 + len(query)) + query)
for s in conns:
    until_ready(s)
print("queried", flush=True)
sys.stdin.readline()
PY

printf 'run\ttarget\tbase_kib\tidle_kib\tqueried_kib\n' >"$WORK/memory.tsv"
BENCH_RESULTS=$WORK/memory.tsv
for run in $(seq 1 "$RUNS"); do
    for target in $TARGETS; do
        start_target "$target"
        pid=$(proxy_pid "$target")
        sleep 1
        base=$(rss_kib "$pid")
        coproc HOLD { python3 "$WORK/hold.py" "${PORT[$target]}" "$N"; }
        read -r line <&"${HOLD[0]}"
        [ "$line" = idle ] || die "holder: $line"
        sleep 1
        idle=$(rss_kib "$pid")
        echo go >&"${HOLD[1]}"
        read -r line <&"${HOLD[0]}"
        [ "$line" = queried ] || die "holder: $line"
        sleep 1
        queried=$(rss_kib "$pid")
        echo done >&"${HOLD[1]}"
        wait "$HOLD_PID" || true
        printf '%s\t%s\t%s\t%s\t%s\n' "$run" "$target" "$base" "$idle" "$queried" >>"$WORK/memory.tsv"
        log "run $run  $target: RSS $base KiB, $idle KiB with $N idle connections, $queried KiB after one query each"
        stop_target "$target"
        # Let the server side of the closed connections go before the next target.
        sleep 2
    done
done

python3 - "$WORK/memory.tsv" "$N" "$TARGETS" <<'PY'
import csv, statistics, sys
path, n, targets = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
rows = list(csv.DictReader(open(path), delimiter="\t"))
def med(target, col):
    return statistics.median(int(r[col]) for r in rows if r["target"] == target)
print(f"\nResident memory per client connection, {n} connections, medians of {len(rows) // len(targets)} runs\n")
print("| proxy | RSS before | KiB per idle connection | KiB per connection after one query |")
print("|---|---|---|---|")
for t in targets:
    base = med(t, "base_kib")
    print(f"| {t} | {base / 1024:.1f} MiB | {(med(t, 'idle_kib') - base) / n:.1f} | {(med(t, 'queried_kib') - base) / n:.1f} |")
PY
