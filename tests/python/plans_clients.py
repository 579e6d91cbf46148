"""asyncpg or psycopg 3 runs one `$n` SELECT a few times through pgshape, for tests/plans.rs.

asyncpg prepares a named statement once (Parse, Describe), then sends Bind/Execute with binary
values; psycopg 3 binds server-side with text values and declared types (an int as int2, int4
or int8 by its size), in unnamed statements at first. Either way the plan sampler asks for the
values after the first execution, so a later Bind is captured. The values are the test's
planted ones, which must never come back out of pgshape.

Usage: python plans_clients.py asyncpg|psycopg3 PROXIED_URL SQL TEXT_VALUE INT_VALUE RUNS
(SQL with $1, $2; psycopg 3 gets them as %s)
"""

import asyncio
import json
import sys


async def with_asyncpg(url, sql, values, runs):
    import asyncpg

    conn = await asyncpg.connect(url)
    rows = 0
    for _ in range(runs):
        rows += len(await conn.fetch(sql, *values))
    await conn.close()
    return rows


def with_psycopg3(url, sql, values, runs):
    import psycopg

    rows = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(runs):
            rows += len(conn.execute(sql.replace("$1", "%s").replace("$2", "%s"), values).fetchall())
    return rows


driver, url, sql, text, number, runs = sys.argv[1:7]
values, runs = (text, int(number)), int(runs)
if driver == "asyncpg":
    rows = asyncio.run(with_asyncpg(url, sql, values, runs))
else:
    rows = with_psycopg3(url, sql, values, runs)
print(json.dumps({"rows": rows}))
