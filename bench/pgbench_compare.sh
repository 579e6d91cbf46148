#!/usr/bin/env bash
# Compares pgbench select-only throughput and latency: PostgreSQL direct, through pgshape, and
# through pgbouncer (pool_mode = session), on a throw-away cluster this script starts itself.
#
# Every (mode, clients) cell is measured RUNS times, interleaving the targets within each round
# (in an order rotated from round to round) so slow drift of the machine (other load, thermal,
# caches) hits all targets alike; the table shows medians. Added latency = median pgbench "latency average" of the target minus direct's; with
# -S a transaction is one SELECT, so that is the cost per statement.
#
# Usage: bench/pgbench_compare.sh            (environment variables below change the defaults)
#   DURATION=10          seconds per pgbench run
#   RUNS=3               rounds
#   CLIENTS="1 8"        client counts
#   MODES="simple extended"
#   TARGETS="direct pgshape pgbouncer"   (also: pgshape-nostats, pgshape with [stats] enabled = false)
#   SCALE=10             pgbench -i scale
#   PGSHAPE_BIN=target/release/pgshape   (built with cargo build --release when missing)
#   PGSHAPE_ARGS=""      extra flags for `pgshape serve`
#   KEEP_RESULTS=path    also copy the raw results (TSV) there
#
# Runs as root too: initdb, postgres and pgbouncer refuse to, so they then run as the
# `postgres` system user through runuser, in a temp dir owned by it.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-"1 8"}
MODES=${MODES:-"simple extended"}
TARGETS=${TARGETS:-"direct pgshape pgbouncer"}
SCALE=${SCALE:-10}
PGSHAPE_BIN=${PGSHAPE_BIN:-$ROOT/target/release/pgshape}
PGSHAPE_ARGS=${PGSHAPE_ARGS:-}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %b\n' "$*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------------
bindir=""
if command -v initdb >/dev/null 2>&1; then
    bindir=$(dirname "$(readlink -f "$(command -v initdb)")")
else
    bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n1 || true)
fi
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] \
    || die "PostgreSQL server not found: apt-get install -y postgresql postgresql-contrib"
PGBENCH=$bindir/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
case " $TARGETS " in
*" pgbouncer "*) [ -x "$PGBOUNCER" ] || die "pgbouncer not found: apt-get install -y pgbouncer" ;;
esac
case " $TARGETS " in
*" pgshape "*)
    if [ ! -x "$PGSHAPE_BIN" ]; then
        log "building pgshape (release)"
        cargo build --release --bin pgshape >&2
    fi
    ;;
esac

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

# --- set-up and guaranteed clean-up ------------------------------------------------------------
WORK=$(mktemp -d /tmp/pgshape-bench-XXXXXX)
chmod 755 "$WORK"
PGSHAPE_PID=""
PGSHAPE_NOSTATS_PID=""
PGBOUNCER_PID=""
cleanup() {
    set +e
    [ -n "$PGSHAPE_PID" ] && kill "$PGSHAPE_PID" 2>/dev/null && wait "$PGSHAPE_PID" 2>/dev/null
    [ -n "$PGSHAPE_NOSTATS_PID" ] && kill "$PGSHAPE_NOSTATS_PID" 2>/dev/null \
        && wait "$PGSHAPE_NOSTATS_PID" 2>/dev/null
    # Signal pgbouncer itself (its pidfile), not the runuser wrapper, which does not pass it on.
    if [ -f "$WORK/pgbouncer.pid" ]; then
        kill "$(cat "$WORK/pgbouncer.pid")" 2>/dev/null
    fi
    [ -n "$PGBOUNCER_PID" ] && kill "$PGBOUNCER_PID" 2>/dev/null && wait "$PGBOUNCER_PID" 2>/dev/null
    if [ -f "$WORK/data/postmaster.pid" ]; then
        as_pg "$bindir/pg_ctl" -D "$WORK/data" -m immediate -w stop >/dev/null 2>&1
    fi
    if [ -n "${KEEP_RESULTS:-}" ] && [ -f "$WORK/results.tsv" ]; then
        cp "$WORK/results.tsv" "$KEEP_RESULTS"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"

PG_PORT=$(free_port)
log "initdb + start PostgreSQL on port $PG_PORT"
as_pg "$bindir/initdb" -D "$WORK/data" -U bench --auth=trust --no-sync -E UTF8 --locale=C >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$WORK'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
as_pg "$bindir/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null
as_pg "$bindir/createdb" -h 127.0.0.1 -p "$PG_PORT" -U bench bench
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1

declare -A PORT
PORT[direct]=$PG_PORT

case " $TARGETS " in
*" pgshape "*)
    PORT[pgshape]=$(free_port)
    log "starting pgshape on port ${PORT[pgshape]}"
    # shellcheck disable=SC2086
    "$PGSHAPE_BIN" serve --listen "127.0.0.1:${PORT[pgshape]}" --upstream "127.0.0.1:$PG_PORT" \
        --admin off $PGSHAPE_ARGS >"$WORK/pgshape.log" 2>&1 &
    PGSHAPE_PID=$!
    wait_ready "${PORT[pgshape]}" pgshape
    ;;
esac

case " $TARGETS " in
*" pgshape-nostats "*)
    # The same binary with per-fingerprint statistics off: the cost of statistics alone.
    PORT[pgshape-nostats]=$(free_port)
    printf '[stats]\nenabled = false\n' >"$WORK/nostats.toml"
    log "starting pgshape without statistics on port ${PORT[pgshape-nostats]}"
    # shellcheck disable=SC2086
    "$PGSHAPE_BIN" serve --listen "127.0.0.1:${PORT[pgshape-nostats]}" --upstream "127.0.0.1:$PG_PORT" \
        --admin off --config "$WORK/nostats.toml" $PGSHAPE_ARGS >"$WORK/pgshape-nostats.log" 2>&1 &
    PGSHAPE_NOSTATS_PID=$!
    wait_ready "${PORT[pgshape-nostats]}" pgshape-nostats
    ;;
esac

case " $TARGETS " in
*" pgbouncer "*)
    PORT[pgbouncer]=$(free_port)
    log "starting pgbouncer (session pooling) on port ${PORT[pgbouncer]}"
    echo '"bench" ""' >"$WORK/userlist.txt"
    cat >"$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${PORT[pgbouncer]}
unix_socket_dir =
auth_type = trust
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $WORK/pgbouncer.log
pidfile = $WORK/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
INI
    [ "$(id -u)" -eq 0 ] && chown postgres: "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
    as_pg "$PGBOUNCER" -q "$WORK/pgbouncer.ini" &
    PGBOUNCER_PID=$!
    wait_ready "${PORT[pgbouncer]}" pgbouncer
    ;;
esac

# --- measure ------------------------------------------------------------------------------------
printf 'round\tmode\tclients\ttarget\ttps\tlatency_ms\n' >"$WORK/results.tsv"
for round in $(seq 1 "$RUNS"); do
    for mode in $MODES; do
        for clients in $CLIENTS; do
            jobs=$((clients > 1 ? 2 : 1))
            # Rotate the order each round: whoever runs first after a pause or after another
            # target meets different caches, and a fixed order would bias one target.
            read -r -a order <<<"$TARGETS"
            shift_by=$(((round - 1) % ${#order[@]}))
            rotated=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
            for target in "${rotated[@]}"; do
                out=$("$PGBENCH" -n -S -M "$mode" -c "$clients" -j "$jobs" -T "$DURATION" \
                    -h 127.0.0.1 -p "${PORT[$target]}" -U bench bench 2>&1) \
                    || die "pgbench against $target failed:\n$out"
                failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
                [ "${failed:-0}" = 0 ] || die "pgbench against $target had $failed failed transactions"
                tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -n1)
                lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
                [ -n "$tps" ] && [ -n "$lat" ] || die "cannot parse pgbench output:\n$out"
                printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$mode" "$clients" "$target" "$tps" "$lat" \
                    >>"$WORK/results.tsv"
                log "round $round  $mode  c=$clients  $target: $tps tps, $lat ms"
            done
        done
    done
done

# --- report -------------------------------------------------------------------------------------
python3 - "$WORK/results.tsv" "$TARGETS" "$DURATION" "$RUNS" <<'PY'
import csv, statistics, sys
path, targets, duration, runs = sys.argv[1], sys.argv[2].split(), sys.argv[3], sys.argv[4]
cells = {}
by_round = {}
for row in csv.DictReader(open(path), delimiter="\t"):
    key = (row["mode"], int(row["clients"]), row["target"])
    cells.setdefault(key, []).append((float(row["tps"]), float(row["latency_ms"])))
    by_round[key + (row["round"],)] = float(row["tps"])
rounds = sorted({k[3] for k in by_round}, key=int)
def med(key, i):
    values = cells.get(key)
    return statistics.median(v[i] for v in values) if values else None
print(f"\npgbench -S, {runs} interleaved runs of {duration} s, medians\n")
head = ["mode", "clients"] + [f"{t} tps" for t in targets]
extra = []
if "pgshape" in targets and "direct" in targets:
    extra += ["pgshape/direct"]
if "pgshape" in targets and "pgbouncer" in targets:
    extra += ["pgshape/pgbouncer"]
if "pgbouncer" in targets and "direct" in targets:
    extra += ["pgbouncer/direct"]
if "pgshape" in targets and "pgshape-nostats" in targets:
    extra += ["pgshape/pgshape-nostats"]
lat_cols = [t for t in targets if t != "direct"] if "direct" in targets else []
head += extra + [f"{t} +µs/stmt" for t in lat_cols]
# Runs of one round ran back to back, so their ratio is the paired comparison; its spread
# over rounds shows how much of a difference is noise on a shared machine.
paired = "pgshape" in targets and "pgbouncer" in targets
if paired:
    head.append("pgshape/pgbouncer per round")
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" for _ in head) + "|")
for mode, clients in sorted({(m, c) for m, c, _ in cells}, key=lambda k: (k[0] != "simple", k[0], k[1])):
    row = [mode, str(clients)]
    tps = {t: med((mode, clients, t), 0) for t in targets}
    lat = {t: med((mode, clients, t), 1) for t in targets}
    row += [f"{tps[t]:.0f}" if tps[t] else "-" for t in targets]
    for name in extra:
        a, b = name.split("/")
        row.append(f"{tps[a] / tps[b]:.2f}×" if tps[a] and tps[b] else "-")
    for t in lat_cols:
        row.append(f"{(lat[t] - lat['direct']) * 1000:+.0f}" if lat[t] and lat["direct"] else "-")
    if paired:
        ratios = []
        for r in rounds:
            a = by_round.get((mode, clients, "pgshape", r))
            b = by_round.get((mode, clients, "pgbouncer", r))
            if a and b:
                ratios.append(f"{a / b:.2f}")
        row.append(" ".join(ratios) or "-")
    print("| " + " | ".join(row) + " |")
PY
