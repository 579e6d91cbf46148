"""psycopg2 and the incident rewrite: literals inlined, like Django with psycopg2.

`cursor.execute(sql, params)` with `%s` is interpolated by psycopg2 on the client, so each
execution is a simple-protocol Query with the SKUs as quoted literals (Django inlines the LIMIT
itself). Run on a connection in autocommit (Django's default) and inside a transaction (as in
`transaction.atomic()`).

Usage: python rewrite_psycopg2.py DIRECT_DSN PROXIED_DSN ADMIN FP_INCIDENT FP_COUNT
(see rewrite_common)
"""

import sys

import psycopg2

from rewrite_common import CASES, Battery, case_key, count_sql, cursor_result, incident_sql


def backend_pid(cur):
    # Not conn.get_backend_pid(): that is the BackendKeyData, which a proxy may stand in for.
    cur.execute("SELECT pg_backend_pid()")
    return cur.fetchone()[0]


def last_query(observer, pid):
    with observer.cursor() as cur:
        cur.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,))
        return cur.fetchone()[0]


def run(bat, side, dsn, observer, cases, modes=("autocommit", "transaction")):
    rec = bat.sides[side]
    for mode in modes:
        conn = psycopg2.connect(dsn)
        conn.autocommit = mode == "autocommit"
        cur = conn.cursor()
        pid = backend_pid(cur)
        for skus, limit in cases:
            placeholders = ["%s"] * len(skus)
            for form, sql in (("incident", incident_sql(placeholders, limit)),
                              ("count", count_sql(placeholders))):
                cur.execute(sql, skus)
                sent = cur.query.decode()
                bat.executed(side, form, sent)
                key = f"{mode}/{form}/{case_key(skus, limit if form == 'incident' else None)}"
                if observer is not None:
                    rec.result(key, cursor_result(cur))
                    rec.ran(key, last_query(observer, pid), params=False)
        if not conn.autocommit:
            conn.commit()
        conn.close()


def main(argv):
    bat = Battery("psycopg2", argv)
    # Each shape once through pgshape: the proof starts, the statement runs as sent.
    run(bat, "proxied", bat.proxied_dsn, None, CASES[:1], modes=("autocommit",))
    bat.wait_ready()
    observer = psycopg2.connect(bat.direct_dsn)
    observer.autocommit = True
    run(bat, "direct", bat.direct_dsn, observer, CASES)
    run(bat, "proxied", bat.proxied_dsn, observer, CASES)
    observer.close()
    bat.dump()


if __name__ == "__main__":
    main(sys.argv)
