"""asyncpg battery: the extended protocol with asyncpg's own prepared statements and binary
codecs for every value, pipelined executemany, copy_records_to_table (binary COPY FROM),
copy_from_query, errors in transactions, and cancel via a query timeout (asyncpg sends a
CancelRequest on a new connection).

Usage: python battery_asyncpg.py postgres://...   (prints canonical JSON, see battery_common)
"""

import asyncio
import datetime
import decimal
import hashlib
import io
import ipaddress
import sys
import time
import uuid

import asyncpg

from battery_common import Recorder


# fetchrow()/fetchval() Execute with a row limit of 1, so the server ends them with
# PortalSuspended (no command tag) after the first row.
SUSPENDED_ONE = {"command": "", "rows": 1, "protocol": "extended"}


async def main(url):
    rec = Recorder("asyncpg")
    conn = await asyncpg.connect(url)
    await conn.execute("SET TIME ZONE 'UTC'")

    # execute() without arguments is a simple-protocol Query.
    status = await conn.execute(
        "CREATE TABLE /*t:a_create*/ a_items (id int PRIMARY KEY, name text, amount numeric, "
        "ident uuid, stamp timestamptz, span interval, addr inet, blob bytea, nums int[], "
        "flag bool, ratio float8)"
    )
    rec.ran("/*t:a_create*/", status, protocol="simple")
    status = await conn.execute("CREATE TYPE /*t:a_enum*/ a_mood AS ENUM ('sad', 'ok', 'happy')")
    rec.ran("/*t:a_enum*/", status, protocol="simple")

    # Binary codecs for each parameter and column.
    for i in range(3):
        status = await conn.execute(
            "INSERT /*t:a_insert*/ INTO a_items VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            i, f"näme {i}", decimal.Decimal(i) / 7, uuid.UUID(int=i + 1),
            datetime.datetime(2023, 3, i + 1, 12, tzinfo=datetime.timezone.utc),
            datetime.timedelta(days=i, seconds=i), ipaddress.ip_address(f"10.0.0.{i}"),
            bytes(range(i * 11)), [i, None, -i], i % 2 == 0, i / 4,
        )
        rec.ran("/*t:a_insert*/", status, protocol="extended")
    rows = await conn.fetch("SELECT /*t:a_select*/ * FROM a_items ORDER BY id")
    rec.ran("/*t:a_select*/", command="SELECT", rows=len(rows), protocol="extended")
    rec.result("select", [dict(r) for r in rows])

    # An explicit prepared statement executed several times.
    stmt = await conn.prepare("SELECT /*t:a_prepared*/ $1::int * 2, $2::a_mood")
    values = []
    for i in range(5):
        values.append(list(await stmt.fetchrow(i, ["sad", "ok", "happy"][i % 3])))
        rec.ran("/*t:a_prepared*/", **SUSPENDED_ONE)
    rec.result("prepared", values)
    rec.result("prepared_types", [a.name for a in stmt.get_attributes()])

    # executemany pipelines Bind/Execute for every row.
    await conn.executemany("INSERT /*t:a_many*/ INTO a_items (id, name) VALUES ($1, $2)",
                           [(100 + i, f"many {i}") for i in range(50)])
    for _ in range(50):
        rec.ran("/*t:a_many*/", command="INSERT", rows=1, protocol="extended")

    # Error from a prepared statement, then inside a transaction.
    try:
        await conn.fetchval("SELECT /*t:a_div0*/ 1 / $1::int", 0)
    except asyncpg.DivisionByZeroError as e:
        rec.result("div0", [e.sqlstate, str(e)])
        rec.ran("/*t:a_div0*/", command="", rows=0, sqlstate="22012", protocol="extended")
    try:
        async with conn.transaction():
            status = await conn.execute("INSERT /*t:a_tx_ok*/ INTO a_items (id) VALUES ($1)", 900)
            rec.ran("/*t:a_tx_ok*/", status, protocol="extended")
            await conn.execute("INSERT /*t:a_tx_dup*/ INTO a_items (id) VALUES ($1)", 900)
    except asyncpg.UniqueViolationError as e:
        rec.result("tx_error", e.sqlstate)
        rec.ran("/*t:a_tx_dup*/", command="", rows=0, sqlstate="23505", protocol="extended")
    count = await conn.fetchval("SELECT /*t:a_tx_check*/ count(*) FROM a_items WHERE id = 900")
    rec.ran("/*t:a_tx_check*/", **SUSPENDED_ONE)
    rec.result("tx_rolled_back", count)

    # Binary COPY FROM STDIN of Python records.
    await conn.execute("CREATE TABLE a_copy (id int, name text, amount numeric, stamp timestamptz)")
    records = [(i, f"rec {i}", decimal.Decimal(i) / 8,
                datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
                + datetime.timedelta(minutes=i)) for i in range(5000)]
    status = await conn.copy_records_to_table("a_copy", records=records)
    rec.result("copy_records_status", status)
    rec.ran('COPY "a_copy"', status, protocol="simple")
    buf = io.BytesIO()
    status = await conn.copy_from_query(
        "SELECT /*t:a_copy_out*/ id, name, amount FROM a_copy WHERE id % 100 = 0 ORDER BY id",
        output=buf, format="csv")
    rec.ran("/*t:a_copy_out*/", status, protocol="simple")
    rec.result("copy_out", buf.getvalue().decode())

    # LISTEN/NOTIFY between two sessions: the notification arrives on the listener's
    # connection while it is idle.
    received = asyncio.Queue()
    def on_notify(_conn, _pid, channel, payload):
        received.put_nowait([channel, payload])

    await conn.add_listener("a_channel", on_notify)
    other = await asyncpg.connect(url)
    status = await other.execute("NOTIFY /*t:a_notify*/ a_channel, 'hello ☃'")
    rec.ran("/*t:a_notify*/", status, protocol="simple")
    await other.close()
    rec.result("notification", await asyncio.wait_for(received.get(), 10))
    await conn.remove_listener("a_channel", on_notify)

    # Large result through the binary codecs.
    rows = await conn.fetch("SELECT /*t:a_large*/ g, md5(g::text) FROM generate_series(1, 100000) g")
    rec.ran("/*t:a_large*/", command="SELECT", rows=len(rows), protocol="extended")
    rec.result("large", hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest())

    # Cancel via timeout: asyncpg cancels the running statement through a CancelRequest.
    started = time.monotonic()
    try:
        await conn.fetchval("SELECT /*t:a_sleep*/ pg_sleep(30)", timeout=0.5)
        rec.result("cancel", "not cancelled")
    except asyncio.TimeoutError:
        rec.result("cancel", "timeout")
    rec.result("cancel_fast", time.monotonic() - started < 5)
    rec.ran("/*t:a_sleep*/", command="", rows=0, sqlstate="57014", protocol="extended")
    rec.result("after_cancel", await conn.fetchval("SELECT /*t:a_after_cancel*/ 'alive'"))
    rec.ran("/*t:a_after_cancel*/", **SUSPENDED_ONE)

    # Destructive statements that the shipped rule update-or-delete-without-where flags: they
    # run exactly as they would directly, because no shipped rule acts unless asked to.
    status = await conn.execute("UPDATE /*t:a_update_all*/ a_items SET amount = amount * $1", 2)
    rec.ran("/*t:a_update_all*/", status, protocol="extended")
    rec.result("update_all", status)
    status = await conn.execute("DELETE /*t:a_delete_all*/ FROM a_items")
    rec.ran("/*t:a_delete_all*/", status, protocol="simple")
    rec.result("delete_all", status)

    await conn.close()
    rec.dump()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
