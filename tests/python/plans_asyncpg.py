"""asyncpg runs one `$n` SELECT a few times through pgshape, for tests/plans.rs.

asyncpg prepares a named statement once (Parse, Describe), then sends Bind/Execute with binary
values: the plan sampler asks for the values after the first execution, so a later Bind is
captured. The values are the test's planted ones, which must never come back out of pgshape.

Usage: python plans_asyncpg.py PROXIED_URL SQL TEXT_VALUE INT_VALUE RUNS
"""

import asyncio
import json
import sys

import asyncpg


async def main(url, sql, text, number, runs):
    conn = await asyncpg.connect(url)
    rows = 0
    for _ in range(runs):
        rows += len(await conn.fetch(sql, text, number))
    await conn.close()
    print(json.dumps({"rows": rows}))


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
