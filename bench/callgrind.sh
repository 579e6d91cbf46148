#!/usr/bin/env bash
# User-space instructions per statement of pgshape (default config), pgshape --no-inspect (a
# plain relay) and pgbouncer (session mode), counted by callgrind under pgbench -S with one
# client: the one figure of a proxy's cost that repeats to the instruction on a noisy shared
# machine (TPS moves by ±10% there, on-CPU time per statement by ±15%).
#
# Each (mode, target) runs twice under valgrind, with N1 and N2 transactions; the difference
# divided by N2 - N1 is the cost of one statement without start-up and shutdown. The kernel's
# share (system CPU: sockets, epoll) is not counted: bench/run measures that.
#
# Usage: bench/callgrind.sh      (MODES="simple extended prepared" N1=500 N2=2500
#                                 TARGETS="pgbouncer pgshape pgshape-noinspect")
#        MODES=shapes TARGETS=pgshape SHAPES=10000 bench/callgrind.sh   (and SHAPES=1)
#                                (mode `shapes`: SHAPES=10000 distinct shapes in simple mode,
#                                 after a warm-up of 5 x SHAPES transactions that sees them all)
# Prints a Markdown table; valgrind makes every run ~50x slower (under a minute in all on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N1=${N1:-500}
N2=${N2:-2500}
MODES=${MODES:-"simple extended prepared"}
TARGETS=${TARGETS:-"pgbouncer pgshape pgshape-noinspect"}
PGSHAPE_BIN=${PGSHAPE_BIN:-$ROOT/target/release/pgshape}
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install -y valgrind" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
case " $TARGETS " in *" pgshape"*) need_pgshape ;; esac
case " $TARGETS " in *" pgbouncer "*) need_pgbouncer ;; esac
start_postgres 20
"$bindir/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1
PORT=$(free_port)
SHAPES=${SHAPES:-10000}
printf '\\set n random(1, %d)\n\\set aid random(1, 100000)\n%s\n' "$SHAPES" \
    'SELECT abalance AS c:n FROM pgbench_accounts WHERE aid = :aid;' >"$WORK/shapes.sql"
chmod 644 "$WORK/shapes.sql"

instructions() { # TARGET MODE TXNS -> total instructions of the run
    local target=$1 mode=$2 txns=$3 out pid
    out="$WORK/cg.$target.$mode.$txns"
    case $target in
    pgbouncer)
        write_pgbouncer_ini "$PORT" 20
        as_pg valgrind --tool=callgrind --callgrind-out-file="$out" "$PGBOUNCER" "$WORK/pgbouncer.ini" \
            >"$WORK/$target.out" 2>&1 &
        ;;
    pgshape | pgshape-noinspect)
        local args=()
        [ "$target" = pgshape-noinspect ] && args=(--no-inspect)
        valgrind --tool=callgrind --callgrind-out-file="$out" "$PGSHAPE_BIN" serve \
            --listen "127.0.0.1:$PORT" --upstream "127.0.0.1:$PG_PORT" --admin off --workers 1 \
            --log-min-duration -1 "${args[@]}" >"$WORK/$target.out" 2>&1 &
        ;;
    *) die "unknown target $target" ;;
    esac
    pid=$!
    local ready=""
    for _ in $(seq 1 300); do
        if "$bindir/pg_isready" -h 127.0.0.1 -p "$PORT" -q; then ready=1; break; fi
        sleep 0.2
    done
    [ -n "$ready" ] || die "$target did not start under valgrind:\n$(cat "$WORK/$target.out")"
    local load=(-S -M "$mode")
    if [ "$mode" = shapes ]; then
        # SHAPES distinct shapes (bench/run's `shapes`), every one seen first: a shape's first
        # sight (a parse, once) is not what this counts.
        load=(-M simple -f "$WORK/shapes.sql")
        "$bindir/pgbench" -n "${load[@]}" -c 1 -t $((SHAPES * 5)) -h 127.0.0.1 -p "$PORT" -U bench \
            bench >"$WORK/pgbench.log" 2>&1 || die "pgbench through $target failed:\n$(cat "$WORK/pgbench.log")"
    fi
    "$bindir/pgbench" -n "${load[@]}" -c 1 -t "$txns" -h 127.0.0.1 -p "$PORT" -U bench bench \
        >"$WORK/pgbench.log" 2>&1 || die "pgbench through $target failed:\n$(cat "$WORK/pgbench.log")"
    # pgbouncer is signalled through its pidfile: the runuser wrapper does not pass signals on.
    if [ "$target" = pgbouncer ]; then kill -INT "$(cat "$WORK/pgbouncer.pid")"; else kill -INT "$pid"; fi
    wait "$pid" 2>/dev/null || true
    sed -n 's/^summary: //p' "$out"
}

declare -A per
for mode in $MODES; do
    for target in $TARGETS; do
        a=$(instructions "$target" "$mode" "$N1")
        b=$(instructions "$target" "$mode" "$N2")
        per[$mode.$target]=$(((b - a) / (N2 - N1)))
        log "$mode $target: ${per[$mode.$target]} instructions per statement"
    done
done

echo
echo "User-space instructions per statement (callgrind; pgbench -S, 1 client, ($N2 - $N1) transactions)"
echo
head="| mode |"
sep="|---|"
for t in $TARGETS; do head+=" $t |"; sep+="---|"; done
has() { [[ " $TARGETS " == *" $1 "* ]]; }
extra=""
if has pgshape && has pgbouncer; then extra+=" pgshape / pgbouncer |"; sep+="---|"; fi
if has pgshape && has pgshape-noinspect; then extra+=" inspection |"; sep+="---|"; fi
echo "$head$extra"
echo "$sep"
for mode in $MODES; do
    row="| $mode |"
    for t in $TARGETS; do row+=" ${per[$mode.$t]} |"; done
    if [[ "$extra" == *"pgshape / pgbouncer"* ]]; then
        row+=" $(python3 -c "print(f'{${per[$mode.pgshape]} / ${per[$mode.pgbouncer]}:.2f}×')") |"
    fi
    if [[ "$extra" == *inspection* ]]; then
        row+=" $(python3 -c "s, n = ${per[$mode.pgshape]}, ${per[$mode.pgshape-noinspect]}; print(f'{s - n:+} ({100 * (s - n) / s:.0f}%)')") |"
    fi
    echo "$row"
done
