"""asyncpg and the incident rewrite: `$n` parameters, named prepared statements, binary.

`conn.fetch(sql, *args)` prepares a named statement per text (asyncpg's statement cache: Parse
and Describe once, then Bind/Execute with binary values), and `conn.prepare(sql)` makes an
explicit one whose parameter and column types asyncpg reports (`get_parameters()`,
`get_attributes()`, from the server's ParameterDescription and RowDescription).

Usage: python rewrite_asyncpg.py DIRECT_URL PROXIED_URL ADMIN FP_INCIDENT FP_COUNT
(see rewrite_common)
"""

import asyncio
import sys

import asyncpg

from rewrite_common import CASES, Battery, case_key, count_sql, dollars, incident_sql


def types(ts):
    return [[t.oid, t.name, t.kind, t.schema] for t in ts]


async def run(bat, side, url, observer, cases):
    rec = bat.sides[side]
    conn = await asyncpg.connect(url)
    # Not conn.get_server_pid(): that is the BackendKeyData, which a proxy may stand in for.
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    for skus, limit in cases:
        n = len(skus)
        forms = (
            ("incident", incident_sql(dollars(n), f"${n + 1}"), (*skus, limit)),
            ("count", count_sql(dollars(n)), skus),
        )
        for form, sql, args in forms:
            rows = await conn.fetch(sql, *args)
            bat.executed(side, form, sql)
            if observer is None:
                continue
            key = f"{form}/{case_key(skus, limit if form == 'incident' else None)}"
            rec.ran(key, await observer.fetchval(
                "SELECT query FROM pg_stat_activity WHERE pid = $1", pid), params=True)
            # The same text prepared explicitly: what Describe told asyncpg, and its rows.
            stmt = await conn.prepare(sql)
            again = await stmt.fetch(*args)
            bat.executed(side, form, sql)
            rec.result(key, {
                "params": types(stmt.get_parameters()),
                "columns": [[a.name, *types([a.type])[0]] for a in stmt.get_attributes()],
                "rows": [list(r.items()) for r in rows],
                "prepared_rows": [list(r.items()) for r in again],
            })
    await conn.close()


async def main(argv):
    bat = Battery("asyncpg", argv)
    # Each shape once through pgshape: the proof starts, the statement runs as sent.
    await run(bat, "proxied", bat.proxied_dsn, None, CASES[:1])
    bat.wait_ready()
    observer = await asyncpg.connect(bat.direct_dsn)
    await run(bat, "direct", bat.direct_dsn, observer, CASES)
    await run(bat, "proxied", bat.proxied_dsn, observer, CASES)
    await observer.close()
    bat.dump()


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
