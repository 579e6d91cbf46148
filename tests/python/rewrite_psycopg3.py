"""psycopg 3 and the incident rewrite: server-side binding.

A plain psycopg 3 cursor (not `ClientCursor`) turns `%s` into `$n` and sends Parse/Bind/Execute
with the values as parameters: the SKUs and the limit. Three connections: prepared statements
off (an unnamed statement parsed at every execution), `prepare_threshold=0` (a named
statement prepared at the first execution of each text, then only Bind/Execute), and the same
with binary parameters and results.

Usage: python rewrite_psycopg3.py DIRECT_DSN PROXIED_DSN ADMIN FP_INCIDENT FP_COUNT
(see rewrite_common)
"""

import sys

import psycopg

from rewrite_common import (CASES, Battery, case_key, count_sql, cursor_result, dollars,
                            incident_sql)

MODES = [
    # name, connect() options, execute() options
    ("unnamed", {"prepare_threshold": None}, {}),
    ("prepared", {"prepare_threshold": 0}, {}),
    ("prepared_binary", {"prepare_threshold": 0}, {"binary": True}),
]


def backend_pid(conn):
    # Not conn.info.backend_pid: that is the BackendKeyData, which a proxy may stand in for.
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def last_query(observer, pid):
    return observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s",
                            (pid,)).fetchone()[0]


def run(bat, side, dsn, observer, cases, modes):
    rec = bat.sides[side]
    for mode, connect_opts, execute_opts in modes:
        conn = psycopg.connect(dsn, autocommit=True, **connect_opts)
        pid = backend_pid(conn)
        cur = conn.cursor()
        for skus, limit in cases:
            n = len(skus)
            forms = (
                ("incident", incident_sql(["%s"] * n, "%s"), (*skus, limit),
                 incident_sql(dollars(n), f"${n + 1}")),
                ("count", count_sql(["%s"] * n), skus, count_sql(dollars(n))),
            )
            for form, sql, params, wire in forms:
                cur.execute(sql, params, **execute_opts)
                bat.executed(side, form, wire)
                key = f"{mode}/{form}/{case_key(skus, limit if form == 'incident' else None)}"
                if observer is not None:
                    rec.result(key, cursor_result(cur))
                    rec.ran(key, last_query(observer, pid), params=True)
        if observer is not None:
            # Named statements exist exactly when the driver prepared them.
            named = conn.execute(
                "SELECT count(*) FROM pg_prepared_statements "
                "WHERE position('shop_order' in statement) > 0").fetchone()[0]
            rec.result(f"{mode}/prepared_statements", named)
        conn.close()


def main(argv):
    bat = Battery("psycopg3", argv)
    # Each shape once through pgshape: the proof starts, the statement runs as sent.
    run(bat, "proxied", bat.proxied_dsn, None, CASES[:1], MODES[1:2])
    bat.wait_ready()
    observer = psycopg.connect(bat.direct_dsn, autocommit=True)
    run(bat, "direct", bat.direct_dsn, observer, CASES, MODES)
    run(bat, "proxied", bat.proxied_dsn, observer, CASES, MODES)
    observer.close()
    bat.dump()


if __name__ == "__main__":
    main(sys.argv)
