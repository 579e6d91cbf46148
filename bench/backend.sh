#!/usr/bin/env bash
# What PostgreSQL's backends spend per statement through each target (direct, pgbouncer in
# session mode, pgshape with its default config), to tell work from scheduling when bench/run
# shows PostgreSQL's CPU per statement higher through one proxy than another.
#
# 1. User-space instructions of the backend per statement (callgrind; the postmaster runs under
#    valgrind, which follows its forks): pgbench -S, 1 client, N2 - N1 transactions, as in
#    bench/callgrind.sh. Repeats to the instruction; the kernel's share is not counted.
# 2. The backends' CPU time and context switches per statement under load: pgbench -S with
#    CLIENTS clients, TXNS transactions each, ROUNDS rounds in rotated order; the backends'
#    /proc/<pid>/stat and /proc/<pid>/status are sampled every 20 ms while they live (their
#    last sample counts), minus what they had before the run.
#
# Usage: bench/backend.sh     (MODE=simple N1=300 N2=1300 CLIENTS=8 TXNS=10000 ROUNDS=3;
#                              PARTS="instructions switches"; PGSHAPE_ARGS="--workers 1")
# Prints two Markdown tables; about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${MODE:-simple}
N1=${N1:-300}
N2=${N2:-1300}
CLIENTS=${CLIENTS:-8}
TXNS=${TXNS:-10000}
ROUNDS=${ROUNDS:-3}
PARTS=${PARTS:-"instructions switches"}
PGSHAPE_BIN=${PGSHAPE_BIN:-$ROOT/target/release/pgshape}
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
need_pgshape
need_pgbouncer
TARGETS=(direct pgbouncer pgshape)

start_targets() { # starts pgbouncer and pgshape in front of $PG_PORT
    PORT[pgbouncer]=$(free_port)
    PORT[pgshape]=$(free_port)
    write_pgbouncer_ini "${PORT[pgbouncer]}" 200
    as_pg "$PGBOUNCER" -d "$WORK/pgbouncer.ini" >/dev/null 2>&1
    "$PGSHAPE_BIN" serve --listen "127.0.0.1:${PORT[pgshape]}" --upstream "127.0.0.1:$PG_PORT" \
        --admin off --log-min-duration -1 ${PGSHAPE_ARGS:-} >"$WORK/pgshape.log" 2>&1 &
    PID[pgshape]=$!
    wait_ready "${PORT[pgbouncer]}" pgbouncer
    wait_ready "${PORT[pgshape]}" pgshape
}

stop_targets() {
    kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null || true
    kill "${PID[pgshape]}" 2>/dev/null && wait "${PID[pgshape]}" 2>/dev/null || true
    unset 'PID[pgshape]'
    rm -f "$WORK/pgbouncer.pid"
}

# Ends the benchmark's backends (pgbouncer keeps its server connection), so that valgrind writes
# their profiles.
end_backends() {
    "$bindir/psql" -h 127.0.0.1 -p "$PG_PORT" -U bench -qAt -d postgres -c \
        "select pg_terminate_backend(pid) from pg_stat_activity
         where datname = 'bench' and pid <> pg_backend_pid()" >/dev/null
}

start_postgres 250
"$bindir/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1

if [[ " $PARTS " == *" instructions "* ]]; then
    command -v valgrind >/dev/null || die "valgrind not found: apt-get install -y valgrind"
    log "restarting PostgreSQL under callgrind"
    as_pg "$bindir/pg_ctl" -D "$WORK/data" -m fast -w stop >/dev/null
    mkdir -p "$WORK/cg"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/cg"
    as_pg bash -c "exec valgrind --tool=callgrind --callgrind-out-file='$WORK/cg/%p' \
        '$bindir/postgres' -D '$WORK/data' -c autovacuum=off >'$WORK/postgres-vg.log' 2>&1" &
    PID[pgvg]=$!
    for _ in $(seq 1 600); do
        "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break
        sleep 0.5
    done
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL did not start under valgrind"
    start_targets
    declare -A per
    for target in "${TARGETS[@]}"; do
        declare -A total=()
        for txns in "$N1" "$N2"; do
            end_backends
            sleep 3
            before=$(ls "$WORK/cg" | sort)
            "$bindir/pgbench" -n -S -M "$MODE" -c 1 -t "$txns" -h 127.0.0.1 -p "${PORT[$target]}" \
                -U bench bench >"$WORK/pgbench.log" 2>&1 \
                || die "pgbench through $target failed:\n$(cat "$WORK/pgbench.log")"
            end_backends
            sleep 3
            # The run's backend is the busiest of the processes that ended since (psql's own
            # backends did almost nothing).
            most=0
            for f in $(comm -13 <(echo "$before") <(ls "$WORK/cg" | sort)); do
                n=$(sed -n 's/^summary: //p' "$WORK/cg/$f")
                [ -n "$n" ] && [ "$n" -gt "$most" ] && most=$n
            done
            total[$txns]=$most
        done
        per[$target]=$(((total[$N2] - total[$N1]) / (N2 - N1)))
        log "$target: ${per[$target]} backend instructions per statement"
    done
    stop_targets
    kill "${PID[pgvg]}" 2>/dev/null || true
    as_pg "$bindir/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1 || true
    wait "${PID[pgvg]}" 2>/dev/null || true
    unset 'PID[pgvg]'
    echo
    echo "PostgreSQL backend, user-space instructions per statement (callgrind; pgbench -S -M $MODE, 1 client, $((N2 - N1)) transactions)"
    echo
    echo "| direct | pgbouncer | pgshape |"
    echo "|---|---|---|"
    echo "| ${per[direct]} | ${per[pgbouncer]} | ${per[pgshape]} |"
    as_pg "$bindir/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
fi

if [[ " $PARTS " == *" switches "* ]]; then
    start_targets
    rows=""
    for round in $(seq 1 "$ROUNDS"); do
        # Rotate the order, so no target always runs first on a cold machine.
        for i in 0 1 2; do
            target=${TARGETS[$(((i + round) % 3))]}
            row=$(python3 - "$target" "$((CLIENTS * TXNS))" "$bindir/pgbench" -n -S -M "$MODE" \
                -c "$CLIENTS" -t "$TXNS" -h 127.0.0.1 -p "${PORT[$target]}" -U bench bench <<'PY'
import os, subprocess, sys, time

target, statements, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
tick = 1e6 / os.sysconf("SC_CLK_TCK")  # microseconds per clock tick
first, last = {}, {}


def sample(started):
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"postgres: bench bench" not in f.read():
                    continue
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/status") as f:
                status = dict(l.split(":\t", 1) for l in f if ":\t" in l)
        except OSError:
            continue  # ended between listing and reading
        now = (int(stat[11]), int(stat[12]), int(status["voluntary_ctxt_switches"]),
               int(status["nonvoluntary_ctxt_switches"]))
        # A backend already there (pgbouncer's kept connection) counts from its state now.
        first.setdefault(pid, now if not started else (0, 0, 0, 0))
        last[pid] = now


sample(False)
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
while proc.poll() is None:
    sample(True)
    time.sleep(0.02)
if proc.returncode != 0:
    sys.exit(f"pgbench through {target} failed: {proc.stderr.read().decode()}")
d = [sum(last[p][i] - first[p][i] for p in last) for i in range(4)]
print(f"| {target} | {d[0] * tick / statements:.1f} | {d[1] * tick / statements:.1f} "
      f"| {d[2] / statements:.2f} | {d[3] / statements:.3f} |")
PY
            )
            rows+="$row"$'\n'
            log "round $round: $row"
        done
    done
    stop_targets
    echo
    echo "PostgreSQL backends per statement under load (pgbench -S -M $MODE, $CLIENTS clients × $TXNS transactions, $ROUNDS rounds, order rotated)"
    echo
    echo "Medians, with the rounds' range in brackets."
    echo
    printf '%s' "$rows" | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    runs.setdefault(cells[0], []).append([float(c) for c in cells[1:]])
print("| target | user µs | system µs | voluntary switches | involuntary switches |")
print("|---|---|---|---|---|")
for target in ("direct", "pgbouncer", "pgshape"):
    cols = list(zip(*runs[target]))
    digits = (1, 1, 2, 3)
    cells = [f"{statistics.median(c):.{d}f} ({min(c):.{d}f}–{max(c):.{d}f})" for c, d in zip(cols, digits)]
    print(f"| {target} | " + " | ".join(cells) + " |")
'
fi
