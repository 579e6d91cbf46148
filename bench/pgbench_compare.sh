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
#   TARGETS="direct pgshape pgbouncer"   (also: pgshape-nostats, pgshape with [stats] enabled = false;
#                        pgshape-base, the build at PGSHAPE_BASE_BIN, for A/B comparisons)
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

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PGBENCH=$bindir/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
case " $TARGETS " in *" pgshape"*) need_pgshape ;; esac
case " $TARGETS " in *" pgbouncer "*) need_pgbouncer ;; esac

start_postgres 100
log "pgbench -i -s $SCALE"
"$PGBENCH" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench bench >/dev/null 2>&1

# shellcheck disable=SC2086
case " $TARGETS " in *" pgshape "*) start_pgshape pgshape $PGSHAPE_ARGS ;; esac
case " $TARGETS " in
*" pgshape-nostats "*)
    # The same binary with per-fingerprint statistics off: the cost of statistics alone.
    printf '[stats]\nenabled = false\n' >"$WORK/nostats.toml"
    # shellcheck disable=SC2086
    start_pgshape pgshape-nostats --config "$WORK/nostats.toml" $PGSHAPE_ARGS
    ;;
esac
case " $TARGETS " in
*" pgshape-base "*)
    # Another build of pgshape (e.g. the previous commit) for an A/B comparison in one run.
    [ -x "${PGSHAPE_BASE_BIN:-}" ] || die "pgshape-base needs PGSHAPE_BASE_BIN=path/to/pgshape"
    # shellcheck disable=SC2086
    PGSHAPE_BIN=$PGSHAPE_BASE_BIN start_pgshape pgshape-base $PGSHAPE_ARGS
    ;;
esac
case " $TARGETS " in *" pgbouncer "*) start_pgbouncer 200 ;; esac

# --- measure ------------------------------------------------------------------------------------
BENCH_RESULTS=$WORK/results.tsv
printf 'round\tmode\tclients\ttarget\ttps\tlatency_ms\n' >"$BENCH_RESULTS"
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
if "pgshape" in targets and "pgshape-base" in targets:
    extra += ["pgshape/pgshape-base"]
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
