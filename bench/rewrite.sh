#!/usr/bin/env bash
# Measures what the built-in semi-join rewrite (rule distinct-over-fanout-join, action
# "rewrite": SELECT DISTINCT over a one-to-many join -> WHERE EXISTS) buys on the incident's
# Django queries, on a throw-away PostgreSQL cluster this script starts itself.
#
# Schema: Django's shop_order / shop_orderitem. Index configurations (INDEXES), each measured as
# its own block of the table on the same data:
#   django    Django's default indexes only: the primary keys and the index on the foreign key
#             shop_orderitem.order_id (no index on sku, qty or created_at)
#   indexed   the same plus what a back-office list filtered by sku and ordered by created_at
#             commonly has: db_index=True on OrderItem.sku and on Order.created_at, i.e.
#             CREATE INDEX ON shop_orderitem (sku); CREATE INDEX ON shop_order (created_at)
# With INDEXES=both (the default) "django" runs first, then the two indexes are built (and the
# tables analyzed) and "indexed" runs.
#
# Data: SCALE_ITEMS order items over SCALE_ITEMS/ITEMS_PER_ORDER orders (each item belongs to a
# random order, so items per order are Poisson around ITEMS_PER_ORDER, default 10 as in
# `pgshape demo`), generated with generate_series and a fixed seed; created_at grows with id and
# is unique, so ORDER BY created_at LIMIT 25 has one right answer. qty is uniform in 1..4.
# SKUs S0001..S4999 are skewed: S0001 is 16% of the items, the others follow a log-uniform
# (Zipf-like) law (S0002 about 7% of the items, S0010 about 1%, S4000 about 0.0025%). Items are
# drawn independently, so an order can have two lines of the same popular SKU. The issue's scale
# is SCALE_ITEMS >= 1000000 (the default); bigger: SCALE_ITEMS=5000000 bench/rewrite.sh.
#
# Queries, exactly as Django sends them through psycopg2 (literals inlined):
#   list   .filter(<filter>).distinct().order_by("-created_at")[:25]
#   count  the same queryset's .count(): SELECT COUNT(*) FROM (SELECT DISTINCT ...) subquery
# each under the filters of FILTERS (a filter is a condition on the joined shop_orderitem):
#   rare     items__sku__in=SKUS_RARE     (2 tail SKUs: a few orders, 1 join row each)
#   medium   items__sku__in=SKUS_MEDIUM   (2 mid SKUs: ~5% of the orders, ~1 join row each)
#   common   items__sku__in=SKUS_COMMON   (the 2 top SKUs: most orders, ~2-3 join rows each)
#   popular  items__sku__in=SKUS_POPULAR  (the top 10 SKUs: nearly all orders, ~4 join rows each)
#   qty      items__qty__gt=QTY_GT        (qty > 1: ~75% of every order's items, the heaviest
#            fan-out; the shape of the incident's "distinct() forced full dataset sort + dedup")
# The table shows, per filter, the share of orders that match and the join rows per matching
# order: the fan-out the DISTINCT undoes (1.0 = no duplicates, nothing to save but the DISTINCT).
#
# Two pgshape processes in front of the same server, identical but for the rule's action:
# "off" (action = observe: statements pass unchanged) and "on" (action = rewrite), both with
# --schema-dsn so the rewrite can be proven from the catalog. Each shape is warmed up through
# both (the first execution starts the background proof) before anything is measured, again in
# each index configuration.
#
# Per cell (index configuration x query x filter): the full result (psql -At) direct, via off
# and via on must be identical, else the script says so loudly and exits 1 after the table. Then
# REPS rounds of `pgbench -n -M simple -t ITERS` against off and on, alternating which goes
# first; a round's number is pgbench's "latency average" (client wall time per execution,
# connection set-up excluded). The table shows medians over the rounds; speedup = off / on.
# "rewritten" is how many of the "on" proxy's timed executions its /api/queries row counts as
# rewritten (the delta of rewrite.calls_rewritten around the timed runs; it must equal
# REPS x ITERS), so a cell where the rewrite did not happen cannot pass for a fast one. The off
# proxy must count 0.
#
# After the tables: the plan of each cell as the server ran it, original (via off) and rewritten
# (via on), captured with auto_explain (log_analyze) through the proxies, so the rewritten text
# and plan are exactly what pgshape sent. PLANS=full prints the whole EXPLAIN ANALYZE text,
# PLANS=short (default) the node names, PLANS=none skips it.
#
# Time: the default (1M items, 2 configurations x 2 queries x 5 filters = 20 cells, REPS=4,
# ITERS=2) takes about 5 minutes on 2 busy cores (load, warm-up and checks ~1.5 min, timed
# rounds ~3 min); the slow cells (no usable index: every plan reads all of shop_orderitem, up to
# ~1.4 s per execution) dominate, which is why REPS and ITERS are lower than before (7 x 3 with
# 3 filters and one configuration). The per-round ratios are printed to judge the spread.
#
# Usage: bench/rewrite.sh              (environment variables below change the defaults)
#   SCALE_ITEMS=1000000   order items (the issue's scale is >= 1M)
#   ITEMS_PER_ORDER=10    orders = SCALE_ITEMS / ITEMS_PER_ORDER
#   INDEXES=both          django | indexed | both (see above)
#   REPS=4                rounds (median over them)
#   ITERS=2               executions per pgbench run
#   QUERIES="list count"
#   FILTERS="rare medium common popular qty"   (SELECTIVITIES is the old name, still read)
#   SKUS_RARE="S4000 S4001"  SKUS_MEDIUM="S0041 S0042"  SKUS_COMMON="S0001 S0002"
#   SKUS_POPULAR="S0001 ... S0010"  QTY_GT=1
#   SKUS_<NAME>="..."     adds a SKU filter <name> (lower case in FILTERS)
#   PLANS=short           short | full | none
#   PGSHAPE_BIN=target/release/pgshape   (built with cargo build --release when missing)
#   PGSHAPE_ARGS=""       extra flags for both `pgshape serve`
#   KEEP_RESULTS=path     also copy the raw results (TSV) there, and the report next to it
#   HOLD=0                after the report, keep the cluster up this many seconds (its port is
#                         logged; removing the file it names ends it early) to EXPLAIN by hand
#                         on the same data; the wall time shown excludes it
#
# The tables and plan excerpts are printed by bench/rewrite/report.py.
#
# Runs as root too: initdb and postgres refuse to, so they then run as the `postgres` system
# user through runuser, in a temp dir owned by it. Everything started is stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
SCALE_ITEMS=${SCALE_ITEMS:-1000000}
ITEMS_PER_ORDER=${ITEMS_PER_ORDER:-10}
INDEXES=${INDEXES:-both}
REPS=${REPS:-4}
ITERS=${ITERS:-2}
QUERIES=${QUERIES:-"list count"}
FILTERS=${FILTERS:-${SELECTIVITIES:-"rare medium common popular qty"}}
SKUS_RARE=${SKUS_RARE:-"S4000 S4001"}
SKUS_MEDIUM=${SKUS_MEDIUM:-"S0041 S0042"}
SKUS_COMMON=${SKUS_COMMON:-"S0001 S0002"}
SKUS_POPULAR=${SKUS_POPULAR:-"S0001 S0002 S0003 S0004 S0005 S0006 S0007 S0008 S0009 S0010"}
QTY_GT=${QTY_GT:-1}
PLANS=${PLANS:-short}
HOLD=${HOLD:-0}
PGSHAPE_BIN=${PGSHAPE_BIN:-$ROOT/target/release/pgshape}
PGSHAPE_ARGS=${PGSHAPE_ARGS:-}
RULE=distinct-over-fanout-join

started=$(date +%s)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
PGBENCH=$bindir/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench) || die "pgbench not found"
PSQL=$bindir/psql
[ -x "$PSQL" ] || PSQL=$(command -v psql) || die "psql not found"
command -v curl >/dev/null || die "curl not found"
need_pgshape
ORDERS=$((SCALE_ITEMS / ITEMS_PER_ORDER))
[ "$ORDERS" -ge 1 ] || die "SCALE_ITEMS / ITEMS_PER_ORDER must be at least 1"
case $INDEXES in
django | indexed) CONFIGS=$INDEXES ;;
both) CONFIGS="django indexed" ;;
*) die "INDEXES must be django, indexed or both (not $INDEXES)" ;;
esac
[[ $QTY_GT =~ ^-?[0-9]+$ ]] || die "QTY_GT must be an integer"
[[ $HOLD =~ ^[0-9]+$ ]] || die "HOLD must be a number of seconds"

sql_at() { # port sql: the result, unaligned, tuples only
    "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U bench -d bench -c "$2"
}

# --- cluster and data ---------------------------------------------------------------------------
start_postgres 50
log "loading $SCALE_ITEMS items over $ORDERS orders"
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U bench -d bench <<SQL >/dev/null
CREATE TABLE shop_order (
    id bigserial PRIMARY KEY,
    customer_id integer NOT NULL,
    status varchar(20) NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE shop_orderitem (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL,
    sku varchar(32),
    qty integer NOT NULL,
    price numeric(10, 2) NOT NULL
);
SELECT setseed(0.42);
INSERT INTO shop_order (customer_id, status, created_at)
SELECT 1 + floor(random() * 50000)::int,
       (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + floor(random() * 5)::int],
       timestamptz '2021-01-01 00:00:00+00' + g * interval '2 minutes'
           + floor(random() * 100) * interval '1 second'
FROM generate_series(1, $ORDERS) AS g;
INSERT INTO shop_orderitem (order_id, sku, qty, price)
SELECT 1 + floor(r.o * $ORDERS)::bigint,
       CASE WHEN r.s < 0.16 THEN 'S0001'
            ELSE 'S' || lpad((1 + floor(exp(r.z * ln(4999))))::int::text, 4, '0') END,
       1 + floor(r.q * 4)::int,
       round((1 + r.p * 199)::numeric, 2)
FROM (SELECT g, random() AS o, random() AS s, random() AS z, random() AS q, random() AS p
      FROM generate_series(1, $SCALE_ITEMS) AS g) AS r;
-- What Django's migration ends with: the foreign key and the index on it.
ALTER TABLE shop_orderitem ADD FOREIGN KEY (order_id) REFERENCES shop_order (id);
CREATE INDEX ON shop_orderitem (order_id);
VACUUM ANALYZE shop_order;
VACUUM ANALYZE shop_orderitem;
SQL

# The indexes of the "indexed" configuration: Django's db_index=True on the two columns.
INDEXED_DDL='CREATE INDEX shop_orderitem_sku_idx ON shop_orderitem (sku); CREATE INDEX shop_order_created_at_idx ON shop_order (created_at)'
config_desc() { # config
    case $1 in
    django) printf 'Django default indexes only: PKs + shop_orderitem(order_id)' ;;
    indexed) printf 'Django defaults + db_index on sku and created_at: PKs + shop_orderitem(order_id), shop_orderitem(sku), shop_order(created_at)' ;;
    esac
}
apply_config() { # config
    case $1 in
    django) ;; # the data as loaded
    indexed)
        log "building the indexes of configuration indexed: $INDEXED_DDL"
        sql_at "$PG_PORT" "$INDEXED_DDL; ANALYZE shop_order; ANALYZE shop_orderitem" >/dev/null
        ;;
    esac
    log "configuration $1, indexes: $(sql_at "$PG_PORT" "SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes WHERE tablename IN ('shop_order', 'shop_orderitem')")"
}

# --- the two proxies ----------------------------------------------------------------------------
DSN="host=127.0.0.1 port=$PG_PORT dbname=bench user=bench"
declare -A ADMIN
for variant in off on; do
    mkdir -p "$WORK/rules-$variant"
    cp "$ROOT"/rules/*.toml "$WORK/rules-$variant/"
done
sed -i 's/^action = "observe"$/action = "rewrite"/' "$WORK/rules-on/$RULE.toml"
grep -q '^action = "rewrite"$' "$WORK/rules-on/$RULE.toml" || die "could not set action = \"rewrite\" in $RULE.toml"
grep -q '^action = "observe"$' "$WORK/rules-off/$RULE.toml" || die "$RULE.toml is not at action = \"observe\""
for variant in off on; do
    PORT[$variant]=$(free_port)
    ADMIN[$variant]=$(free_port)
    log "starting pgshape $variant (rule action $(sed -n 's/^action = "\(.*\)"$/\1/p' "$WORK/rules-$variant/$RULE.toml")) on port ${PORT[$variant]}, admin ${ADMIN[$variant]}"
    # shellcheck disable=SC2086
    "$PGSHAPE_BIN" serve --listen "127.0.0.1:${PORT[$variant]}" --upstream "127.0.0.1:$PG_PORT" \
        --admin "127.0.0.1:${ADMIN[$variant]}" --rules "$WORK/rules-$variant" --schema-dsn "$DSN" \
        $PGSHAPE_ARGS >"$WORK/pgshape-$variant.log" 2>&1 &
    PID[$variant]=$!
    wait_ready "${PORT[$variant]}" "pgshape $variant"
done

api() { # variant path
    curl -fsS "http://127.0.0.1:${ADMIN[$1]}$2"
}

# Sums of rewrite.calls_rewritten over the /api/queries rows of each query kind, as
# "list count" (one read serves both kinds).
rewritten_calls() { # variant
    api "$1" "/api/queries?limit=1000" | python3 -c '
import json, sys
total = {"list": 0, "count": 0}
for row in json.load(sys.stdin):
    q = row.get("query", "").lower()
    n = (row.get("rewrite") or {}).get("calls_rewritten", 0)
    if q.startswith("select count(*) from (select distinct"):
        total["count"] += n
    elif q.startswith("select distinct") and "order by" in q:
        total["list"] += n
print(total["list"], total["count"])'
}
declare -A REWRITTEN # [variant-kind]: the last reading
read_rewritten() { # variant
    read -r "REWRITTEN[$1-list]" "REWRITTEN[$1-count]" < <(rewritten_calls "$1")
}

# --- the statements -----------------------------------------------------------------------------
skus_of() { # filter -> the IN list's contents, psycopg2-style
    local var list out="" s
    var="SKUS_${1^^}"
    list=${!var:-}
    [ -n "$list" ] || die "unknown filter $1 (qty, or a SKU list in $var)"
    for s in $list; do out+="${out:+, }'$s'"; done
    printf '%s' "$out"
}
pred_of() { # filter -> the WHERE condition on shop_orderitem, as Django writes it
    case $1 in
    qty) printf '"shop_orderitem"."qty" > %s' "$QTY_GT" ;;
    *) printf '"shop_orderitem"."sku" IN (%s)' "$(skus_of "$1")" ;;
    esac
}
label_of() { # filter -> short text for the table
    local var n first last
    case $1 in
    qty) printf 'qty > %s' "$QTY_GT" ;;
    *)
        skus_of "$1" >/dev/null
        var="SKUS_${1^^}"
        read -r -a list <<<"${!var}"
        n=${#list[@]}
        first=${list[0]}
        last=${list[$((n - 1))]}
        if [ "$n" -le 3 ]; then
            printf 'sku in %s' "$(tr -s ' ' ',' <<<"${list[*]}")"
        else
            printf 'sku in %s SKUs %s..%s' "$n" "$first" "$last"
        fi
        ;;
    esac
}
query_sql() { # query filter
    local pred
    pred=$(pred_of "$2")
    case $1 in
    list) printf '%s' "SELECT DISTINCT \"shop_order\".\"id\", \"shop_order\".\"customer_id\", \"shop_order\".\"status\", \"shop_order\".\"created_at\" FROM \"shop_order\" INNER JOIN \"shop_orderitem\" ON (\"shop_order\".\"id\" = \"shop_orderitem\".\"order_id\") WHERE $pred ORDER BY \"shop_order\".\"created_at\" DESC LIMIT 25" ;;
    count) printf '%s' "SELECT COUNT(*) FROM (SELECT DISTINCT \"shop_order\".\"id\" AS \"col1\", \"shop_order\".\"customer_id\" AS \"col2\", \"shop_order\".\"status\" AS \"col3\", \"shop_order\".\"created_at\" AS \"col4\" FROM \"shop_order\" INNER JOIN \"shop_orderitem\" ON (\"shop_order\".\"id\" = \"shop_orderitem\".\"order_id\") WHERE $pred) subquery" ;;
    *) die "unknown query $1 (list, count)" ;;
    esac
}

# Share of orders that match, and the fan-out the DISTINCT has to undo: join rows per matching
# order (1.0 = no duplicates at all, so nothing for the rewrite to save but the DISTINCT itself).
declare -A SHARE FANOUT LABEL
for f in $FILTERS; do
    LABEL[$f]=$(label_of "$f")
    IFS='|' read -r SHARE[$f] FANOUT[$f] < <(sql_at "$PG_PORT" "SELECT round(100.0 * count(DISTINCT order_id) / (SELECT count(*) FROM shop_order), 3), round(count(*)::numeric / nullif(count(DISTINCT order_id), 0), 2) FROM shop_orderitem WHERE $(pred_of "$f")")
    log "filter $f (${LABEL[$f]}): in ${SHARE[$f]}% of the orders, ${FANOUT[$f]:-0} join rows per matching order"
done
for q in $QUERIES; do
    for f in $FILTERS; do
        query_sql "$q" "$f" >"$WORK/$q-$f.sql"
        printf ';\n' >>"$WORK/$q-$f.sql"
    done
done

shapes_state() { # variant: one line per shape of the rule, "state fingerprint reason"
    api "$1" /api/rules | python3 -c '
import json, sys
doc = json.load(sys.stdin)
rules = doc.get("rules", doc) if isinstance(doc, dict) else doc
for rule in rules:
    if rule.get("id") != sys.argv[1]:
        continue
    for s in ((rule.get("rewrite") or {}).get("shapes") or []):
        reason = s.get("reason", "")
        print(s.get("state"), s.get("fingerprint"), reason, "|", s.get("original", ""))' "$RULE"
}

BENCH_RESULTS=$WORK/results.tsv
printf 'config\tround\tquery\tfilter\ttarget\tlatency_ms\trewritten\n' >"$BENCH_RESULTS"
declare -A SAME
FAILED=0
NOTES=""
first_config=1
for cfg in $CONFIGS; do
    apply_config "$cfg"

    # --- warm-up: the first executions start the proofs; then wait for them ---------------------
    # Twice per proxy in the first configuration (the proofs start there), once afterwards (the
    # identical-results check below runs each cell once more before the timed rounds).
    warm=1
    [ "$first_config" -eq 1 ] && warm=2
    log "[$cfg] warming up (each shape $warm time(s) through each proxy, then waiting for the proofs)"
    for q in $QUERIES; do
        for f in $FILTERS; do
            for variant in off on; do
                for _ in $(seq 1 "$warm"); do sql_at "${PORT[$variant]}" "$(query_sql "$q" "$f")" >/dev/null; done
            done
        done
    done
    for _ in $(seq 1 50); do
        states=$(shapes_state on)
        if [ -n "$states" ] && ! grep -q '^proving ' <<<"$states"; then break; fi
        sleep 0.2
    done
    [ "$first_config" -eq 1 ] && sleep 1
    log "[$cfg] rule $RULE, shapes as the on proxy sees them:"
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        log "  $line"
        case $line in ready\ *) ;; *) NOTES+="- [$cfg] on proxy, shape not rewritten: $line"$'\n' ;; esac
    done <<<"$(shapes_state on)"
    first_config=0

    # --- identical results ----------------------------------------------------------------------
    for q in $QUERIES; do
        for f in $FILTERS; do
            sql=$(query_sql "$q" "$f")
            base=$WORK/out-$cfg-$q-$f
            sql_at "$PG_PORT" "$sql" >"$base-direct.txt"
            sql_at "${PORT[off]}" "$sql" >"$base-off.txt"
            sql_at "${PORT[on]}" "$sql" >"$base-on.txt"
            if cmp -s "$base-direct.txt" "$base-off.txt" && cmp -s "$base-direct.txt" "$base-on.txt"; then
                SAME[$cfg-$q-$f]=yes
            else
                SAME[$cfg-$q-$f]=NO
                FAILED=1
                printf '\n!!!!! RESULTS DIFFER: %s with filter %s, indexes %s !!!!!\n' "$q" "$f" "$cfg" >&2
                diff "$base-direct.txt" "$base-on.txt" | head -n 20 >&2 || true
                diff "$base-direct.txt" "$base-off.txt" | head -n 20 >&2 || true
            fi
            log "[$cfg] $q/$f: $(wc -l <"$base-direct.txt") row(s), identical: ${SAME[$cfg-$q-$f]}"
        done
    done

    # --- measure --------------------------------------------------------------------------------
    # "rewritten" is the delta of the counters around each timed run; a run's "after" reading is
    # the next run's "before" on the same proxy (only this script talks to the proxies).
    read_rewritten off
    read_rewritten on
    for round in $(seq 1 "$REPS"); do
        for q in $QUERIES; do
            for f in $FILTERS; do
                # Alternate who goes first: the second run meets the caches the first one warmed.
                if [ $((round % 2)) -eq 1 ]; then order=(off on); else order=(on off); fi
                for variant in "${order[@]}"; do
                    before=${REWRITTEN[$variant-$q]}
                    out=$("$PGBENCH" -n -M simple -t "$ITERS" -f "$WORK/$q-$f.sql" \
                        -h 127.0.0.1 -p "${PORT[$variant]}" -U bench bench 2>&1) \
                        || die "pgbench against $variant failed:\n$out"
                    read_rewritten "$variant"
                    after=${REWRITTEN[$variant-$q]}
                    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
                    [ -n "$lat" ] || die "cannot parse pgbench output:\n$out"
                    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cfg" "$round" "$q" "$f" "$variant" "$lat" \
                        "$((after - before))" >>"$BENCH_RESULTS"
                    log "[$cfg] round $round  $q/$f  $variant: $lat ms, rewritten $((after - before))/$ITERS"
                done
            done
        done
    done

    # --- plans, as the server ran them (auto_explain through each proxy) -------------------------
    if [ "$PLANS" != none ]; then
        log "[$cfg] capturing plans with auto_explain"
        for q in $QUERIES; do
            for f in $FILTERS; do
                for variant in off on; do
                    offset=$(stat -c %s "$WORK/postgres.log")
                    printf "LOAD 'auto_explain';\nSET auto_explain.log_min_duration = 0;\nSET auto_explain.log_analyze = on;\nSET auto_explain.log_buffers = on;\n%s;\n" \
                        "$(query_sql "$q" "$f")" \
                        | "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT[$variant]}" -U bench -d bench >/dev/null
                    sleep 0.3
                    tail -c +"$((offset + 1))" "$WORK/postgres.log" >"$WORK/plan-$cfg-$q-$f-$variant.log"
                done
            done
        done
    fi
done

# --- report -------------------------------------------------------------------------------------
{
    printf '\n## pgshape semi-join rewrite: %s\n\n' "$RULE"
    printf 'machine: %s cores (%s), %s GB RAM; %s; %s\n' "$(nproc)" \
        "$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)" \
        "$(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" \
        "$(sql_at "$PG_PORT" 'SELECT version()' | sed 's/ on .*//; s/ (.*//')" \
        "$("$PGSHAPE_BIN" --version)"
    printf 'load average at the end: %s (other processes share the machine: compare the per-round ratios)\n' \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'data: %s items over %s orders (%s items per order on average), qty uniform in 1..4\n' \
        "$SCALE_ITEMS" "$ORDERS" "$ITEMS_PER_ORDER"
    printf 'timing: median over %s rounds of pgbench -n -M simple -t %s (latency average), off/on alternating first\n' \
        "$REPS" "$ITERS"
    printf 'targets (issue): list >= 5x at low selectivity, count >= 3x, identical results, Django default indexes, >= 1M items\n'
} >"$WORK/report.md"
python3 "$ROOT/bench/rewrite/report.py" table "$BENCH_RESULTS" "$SCALE_ITEMS" "$QUERIES" "$FILTERS" "$REPS" "$ITERS" \
    "$(for f in $FILTERS; do printf '%s=%s=%s=%s;' "$f" "${SHARE[$f]}" "${LABEL[$f]}" "${FANOUT[$f]:-0}"; done)" \
    "$(for k in "${!SAME[@]}"; do printf '%s=%s;' "$k" "${SAME[$k]}"; done)" \
    "$(for c in $CONFIGS; do printf '%s=%s;' "$c" "$(config_desc "$c")"; done)" >>"$WORK/report.md"

if [ "$PLANS" != none ]; then
    {
        printf '\n### Plans as run (auto_explain, ANALYZE): original via off, rewritten via on\n'
        for cfg in $CONFIGS; do
            for q in $QUERIES; do
                for f in $FILTERS; do
                    for variant in off on; do
                        python3 "$ROOT/bench/rewrite/report.py" plan "$WORK/plan-$cfg-$q-$f-$variant.log" \
                            "[$cfg] $q/$f $variant" "$PLANS"
                    done
                done
            done
        done
    } >>"$WORK/report.md"
fi

{
    printf '\non proxy /metrics:\n'
    api on /metrics | grep '^pgshape_rewrites_total' | sed 's/^/  /' || printf '  (no pgshape_rewrites_total samples)\n'
    if [ -n "$NOTES" ]; then printf '\nnotes:\n%s' "$NOTES"; fi
    printf '\nwall time: %s s\n' "$(($(date +%s) - started))"
} >>"$WORK/report.md"
cat "$WORK/report.md"
if [ -n "${KEEP_RESULTS:-}" ]; then cp "$WORK/report.md" "${KEEP_RESULTS%.tsv}.md"; fi

if [ "$HOLD" -gt 0 ]; then
    touch "$WORK/hold"
    log "holding the cluster for $HOLD s (rm $WORK/hold ends it): $PSQL -h 127.0.0.1 -p $PG_PORT -U bench bench (indexes: ${CONFIGS##* })"
    for _ in $(seq 1 "$HOLD"); do
        [ -e "$WORK/hold" ] || break
        sleep 1
    done
fi

rc=0
if [ "$FAILED" -ne 0 ]; then
    printf '\nerror: RESULTS DIFFER between direct and a proxy for: %s\n' \
        "$(for k in "${!SAME[@]}"; do [ "${SAME[$k]}" = NO ] && printf '%s ' "$k"; done)" >&2
    rc=1
fi
if awk -F'\t' -v want="$ITERS" 'NR > 1 && $5 == "on" && $7 != want { bad = 1 } NR > 1 && $5 == "off" && $7 != 0 { bad = 1 } END { exit !bad }' "$BENCH_RESULTS"; then
    printf '\nerror: the on proxy did not rewrite every timed execution (or the off proxy did); see the "rewritten" column\n' >&2
    rc=1
fi
exit "$rc"
