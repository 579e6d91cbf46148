#!/bin/sh
# The compose stack's load generator: a Django-like shop workload through pgshape, so the
# dashboard has data within a minute. pgbench (from the postgres image) runs the scripts of
# this directory with psycopg2's simple protocol and Django's sqlcommenter tags: order pages,
# customer histories, checkouts and, now and then, the incident's orders panel (SELECT
# DISTINCT over orders JOIN order items). Each round also makes one IntegrityError.
#
# Connection: the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE).
# LOADGEN_RATE transactions per second (default 10), LOADGEN_SECONDS per round (default 60),
# LOADGEN_ROUNDS (default 0: forever). The tests run it with one short round.
set -eu
cd "$(dirname "$0")"
rate=${LOADGEN_RATE:-10}
seconds=${LOADGEN_SECONDS:-60}
rounds=${LOADGEN_ROUNDS:-0}

# The schema exists once the server's init script finished and pgshape relays.
until psql -X -q -c 'SELECT 1 FROM shop_orderitem LIMIT 1' >/dev/null 2>&1; do
    echo "loadgen: waiting for the shop database behind ${PGHOST:-localhost}:${PGPORT:-5432}"
    sleep 2
done

round=0
while [ "$rounds" -eq 0 ] || [ "$round" -lt "$rounds" ]; do
    round=$((round + 1))
    psql -X -q -f integrity_error.sql >/dev/null 2>&1 || true
    # -n: no vacuum of pgbench's own tables (there are none); weights after @.
    pgbench -n -M simple -c 4 -j 1 -R "$rate" -T "$seconds" \
        -f order_detail.sql@10 -f customer_orders.sql@5 -f checkout.sql@2 \
        -f orders_panel.sql@1 \
        || echo "loadgen: pgbench round $round failed; next round" >&2
done
