"""Shared helpers for the rewrite batteries (tests/clients_rewrite.rs).

pgshape rewrites the incident's query (Django's `.filter(items__sku__in=...).distinct()`, a
DISTINCT over a one-to-many join) and its `.distinct().count()` into EXISTS once it has proven
the rewrite from the catalog. A battery runs both with one driver's natural protocol:

1. once each through pgshape, on a connection it then closes: the first execution of a shape
   starts the proof and passes unchanged meanwhile (and a statement prepared before the proof
   stays the original for the life of its connection);
2. then it polls the admin API until both shapes' rewrite is `ready`;
3. then the measured executions, with several SKU lists and limits, once directly and once
   through pgshape, recording every row and the column metadata the driver reports, and what
   the server says each connection last ran (`pg_stat_activity.query`, read on a separate
   direct connection): the original through PostgreSQL directly, the EXISTS form through
   pgshape.

Usage: python rewrite_DRIVER.py DIRECT_DSN PROXIED_DSN ADMIN_ADDR FP_INCIDENT FP_COUNT

Prints one JSON document: `results` must be identical for `direct` and `proxied`; `sent` lists
the statement texts (the Rust side checks they are the fingerprints it waits for);
`executions` counts the proxied executions before and after the proof; `server_ran` is what
the server executed, with whether the driver sent `$n` parameters.
"""

import json
import sys
import time
import urllib.error
import urllib.request

from battery_common import canon

RULE = "distinct-over-fanout-join"

_COLUMNS = ('"shop_order"."id", "shop_order"."customer_id", "shop_order"."status", '
            '"shop_order"."created_at"')
_COUNT_COLUMNS = ('"shop_order"."id" AS "col1", "shop_order"."customer_id" AS "col2", '
                  '"shop_order"."status" AS "col3", "shop_order"."created_at" AS "col4"')
_FROM = (' FROM "shop_order" INNER JOIN "shop_orderitem" ON ("shop_order"."id" = '
         '"shop_orderitem"."order_id") WHERE "shop_orderitem"."sku" IN ({})')

# SKU lists of several lengths (Z never occurs) and limits; every case returns rows.
CASES = [
    (("A", "B"), 25),
    (("C",), 10),
    (("A", "D", "E", "F"), 100),
    (("B", "Z"), 3),
    (("F",), 400),
    (("E", "C"), 7),
]


def incident_sql(placeholders, limit):
    """The SQL Django 5.2 sends for the incident's queryset, with the IN list's placeholders
    (`%s`, `$n` or literals) and the LIMIT (Django inlines it; `$n` drivers may bind it)."""
    return ("SELECT DISTINCT " + _COLUMNS + _FROM.format(", ".join(placeholders))
            + ' ORDER BY "shop_order"."created_at" DESC LIMIT ' + str(limit))


def count_sql(placeholders):
    """Django's `.distinct().count()` of the same filter."""
    return ("SELECT COUNT(*) FROM (SELECT DISTINCT " + _COUNT_COLUMNS
            + _FROM.format(", ".join(placeholders)) + ") subquery")


def dollars(n, start=1):
    return [f"${i}" for i in range(start, start + n)]


def case_key(skus, limit=None):
    return "+".join(skus) + ("" if limit is None else f"/{limit}")


def rewrite_plan(admin, fingerprint):
    """The rule's plan for `fingerprint` from `GET /api/queries/{fp}`, or None."""
    try:
        with urllib.request.urlopen(f"http://{admin}/api/queries/{fingerprint}", timeout=10) as r:
            doc = json.load(r)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise
    for plan in (doc.get("rewrite") or {}).get("plans", []):
        if plan.get("rule") == RULE:
            return plan
    return None


def wait_ready(admin, fingerprints, timeout=20.0):
    """Polls until the rewrite of every fingerprint is proven; exits with the reason if not."""
    deadline = time.monotonic() + timeout
    pending = list(fingerprints)
    while pending:
        for fp in list(pending):
            plan = rewrite_plan(admin, fp)
            if plan is None or plan["state"] == "proving":
                continue
            if plan["state"] != "ready":
                sys.exit(f"the rewrite of {fp} was not made: {json.dumps(plan, indent=1)}")
            pending.remove(fp)
        if pending and time.monotonic() > deadline:
            sys.exit(f"no rewrite decision for {pending} within {timeout} s "
                     f"(last: {[rewrite_plan(admin, fp) for fp in pending]})")
        if pending:
            time.sleep(0.05)


class Side:
    """What one side (direct or proxied) saw."""

    def __init__(self):
        self.results = {}
        self.server_ran = {}

    def result(self, key, value):
        if key in self.results:
            raise KeyError(f"duplicate result key {key}")
        self.results[key] = canon(value)

    def ran(self, key, text, params):
        """The server's `pg_stat_activity.query` after `key`; `params`: the driver sent `$n`."""
        self.server_ran[key] = {"text": text, "params": params}


class Battery:
    def __init__(self, driver, argv):
        self.driver = driver
        self.direct_dsn, self.proxied_dsn, self.admin, self.fp_incident, self.fp_count = argv[1:6]
        self.sides = {"direct": Side(), "proxied": Side()}
        self.sent = {"incident": set(), "count": set()}
        self.executions = {"warm": {"incident": 0, "count": 0},
                           "measured": {"incident": 0, "count": 0}}
        self.phase = "warm"

    def executed(self, side, form, sql):
        """Counts one execution of `form` (`incident` or `count`) with text `sql`."""
        assert form in self.sent, form
        self.sent[form].add(sql)
        if side == "proxied":
            self.executions[self.phase][form] += 1

    def wait_ready(self):
        wait_ready(self.admin, [self.fp_incident, self.fp_count])
        self.phase = "measured"

    def dump(self):
        doc = {
            "driver": self.driver,
            "sent": {k: sorted(v) for k, v in self.sent.items()},
            "executions": self.executions,
            "direct": {"results": self.sides["direct"].results,
                       "server_ran": self.sides["direct"].server_ran},
            "proxied": {"results": self.sides["proxied"].results,
                        "server_ran": self.sides["proxied"].server_ran},
        }
        json.dump(doc, sys.stdout, sort_keys=True, indent=1)
        sys.stdout.write("\n")


def description(desc):
    """psycopg 2/3 `cursor.description`: every attribute of every column."""
    return [[c.name, c.type_code, c.display_size, c.internal_size, c.precision, c.scale,
             c.null_ok] for c in desc]


def cursor_result(cur):
    """What a psycopg 2/3 cursor reports of the statement it just ran."""
    return {"columns": description(cur.description), "rows": cur.fetchall(),
            "rowcount": cur.rowcount, "status": cur.statusmessage}
