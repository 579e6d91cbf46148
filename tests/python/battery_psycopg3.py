"""psycopg 3 battery: server-side binding with prepared statements from the first execute
(`prepare_threshold=0`), binary parameters and results, pipeline mode (including an error in
the middle of a pipeline, after which the server skips statements until Sync), executemany,
COPY (text and binary), a server-side cursor and a 4 MB bytea.

Usage: python battery_psycopg3.py DSN   (prints canonical JSON, see battery_common)
"""

import datetime
import decimal
import hashlib
import sys
import uuid

import psycopg
from psycopg import errors
from psycopg.types.json import Jsonb

from battery_common import Recorder


def status(cur):
    return cur.statusmessage


def main(dsn):
    # With prepare_threshold=0 every statement is Parse/Bind/Execute, except COPY (a Query).
    rec = Recorder("psycopg3", protocol="extended")
    conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
    rec.result("server_encoding", conn.info.parameter_status("server_encoding"))
    cur = conn.cursor()

    cur.execute(
        "CREATE TABLE /*t:p3_create*/ p3_items (id int PRIMARY KEY, name text, amount numeric, "
        "ident uuid, stamp timestamptz, blob bytea, doc jsonb, nums int8[])"
    )
    rec.ran("/*t:p3_create*/", status(cur))
    cur.execute("SET /*t:p3_tz*/ TIME ZONE 'UTC'")
    rec.ran("/*t:p3_tz*/", status(cur))

    # Server-side binding, binary parameters; the same statement prepared once, executed 3 times.
    for i in range(3):
        cur.execute(
            "INSERT /*t:p3_insert*/ INTO p3_items VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (i, f"name {i} ☃", decimal.Decimal(i) / 3, uuid.UUID(int=i),
             datetime.datetime(2024, 5, i + 1, tzinfo=datetime.timezone.utc), bytes(range(i * 7)),
             Jsonb({"i": i, "list": [i] * i}), [i, -i, 2**40]),
            binary=True,
        )
        rec.ran("/*t:p3_insert*/", status(cur))

    cur.execute("SELECT /*t:p3_select_bin*/ * FROM p3_items WHERE id >= %s ORDER BY id", (0,),
                binary=True)
    rec.ran("/*t:p3_select_bin*/", status(cur))
    rec.result("select_binary", cur.fetchall())
    cur.execute("SELECT /*t:p3_select_text*/ * FROM p3_items WHERE id >= %s ORDER BY id", (0,))
    rec.ran("/*t:p3_select_text*/", status(cur))
    rec.result("select_text", cur.fetchall())

    # executemany: psycopg pipelines the executions.
    cur.executemany("INSERT /*t:p3_many*/ INTO p3_items (id, name) VALUES (%s, %s)",
                    [(100 + i, f"many {i}") for i in range(20)])
    for _ in range(20):
        rec.ran("/*t:p3_many*/", command="INSERT", rows=1)
    rec.result("many_rowcount", cur.rowcount)

    # Pipeline mode: several statements in flight before any result is read.
    with conn.pipeline():
        c1 = conn.execute("SELECT /*t:p3_pipe_a*/ count(*) FROM p3_items")
        c2 = conn.execute("UPDATE /*t:p3_pipe_b*/ p3_items SET name = upper(name) WHERE id >= %s",
                          (100,))
        c3 = conn.execute("SELECT /*t:p3_pipe_c*/ id, name FROM p3_items WHERE id > %s ORDER BY id",
                          (115,))
    rec.ran("/*t:p3_pipe_a*/", status(c1))
    rec.ran("/*t:p3_pipe_b*/", status(c2))
    rec.ran("/*t:p3_pipe_c*/", status(c3))
    rec.result("pipe", [c1.fetchall(), c3.fetchall()])

    # An error inside a pipeline: the server skips what follows until Sync.
    try:
        with conn.pipeline():
            conn.execute("SELECT /*t:p3_pipe_ok*/ 1")
            conn.execute("SELECT /*t:p3_pipe_err*/ 1 / %s", (0,))
            conn.execute("SELECT /*t:p3_pipe_skipped*/ 2")
    except errors.DivisionByZero as e:
        rec.result("pipe_error", [e.sqlstate, e.diag.message_primary])
    rec.ran("/*t:p3_pipe_ok*/", command="SELECT", rows=1)
    rec.ran("/*t:p3_pipe_err*/", command="", rows=0, sqlstate="22012")
    rec.skipped("/*t:p3_pipe_skipped*/")
    cur.execute("SELECT /*t:p3_after_pipe*/ 'still fine'")
    rec.ran("/*t:p3_after_pipe*/", status(cur))
    rec.result("after_pipe", cur.fetchone())

    # Transaction with an error and rollback (extended protocol).
    try:
        with conn.transaction():
            cur.execute("INSERT /*t:p3_tx_ok*/ INTO p3_items (id) VALUES (%s)", (500,))
            rec.ran("/*t:p3_tx_ok*/", status(cur))
            cur.execute("INSERT /*t:p3_tx_dup*/ INTO p3_items (id) VALUES (%s)", (500,))
    except errors.UniqueViolation as e:
        rec.result("tx_error", e.sqlstate)
        rec.ran("/*t:p3_tx_dup*/", command="", rows=0, sqlstate="23505")
    cur.execute("SELECT /*t:p3_tx_check*/ count(*) FROM p3_items WHERE id = 500")
    rec.ran("/*t:p3_tx_check*/", status(cur))
    rec.result("tx_rolled_back", cur.fetchone())

    # COPY, text and binary.
    with cur.copy("COPY /*t:p3_copy_in*/ p3_items (id, name) FROM STDIN") as copy:
        for i in range(1000, 1100):
            copy.write_row((i, f"copied {i}"))
    rec.ran("/*t:p3_copy_in*/", status(cur), protocol="simple")
    with cur.copy("COPY /*t:p3_copy_bin_in*/ p3_items (id, amount) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int4", "numeric"])
        for i in range(2000, 2010):
            copy.write_row((i, decimal.Decimal("1.5") * i))
    rec.ran("/*t:p3_copy_bin_in*/", status(cur), protocol="simple")
    out = []
    with cur.copy("COPY (SELECT /*t:p3_copy_out*/ id, name, amount FROM p3_items ORDER BY id) "
                  "TO STDOUT") as copy:
        for row in copy.rows():
            out.append(row)
    # psycopg keeps no status after COPY TO; the server's tag is "COPY <rows sent>".
    rec.ran("/*t:p3_copy_out*/", command="COPY", rows=len(out), protocol="simple")
    rec.result("copy_out", [len(out), out[:3], out[-3:]])

    # A server-side (named) cursor: DECLARE, then FETCHes of 500.
    with conn.transaction():
        with conn.cursor(name="p3_cursor") as named:
            named.itersize = 500
            named.execute("SELECT /*t:p3_declare*/ g FROM generate_series(1, 1234) g")
            total = sum(row[0] for row in named)
    rec.result("named_cursor_sum", total)

    # 4 MB bytea both ways, binary.
    blob = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)
    cur.execute("SELECT /*t:p3_blob*/ %s::bytea", (blob,), binary=True)
    rec.ran("/*t:p3_blob*/", status(cur))
    back = cur.fetchone()[0]
    rec.result("blob", [len(back), bytes(back) == blob])

    # Large result, digest only.
    cur.execute("SELECT /*t:p3_large*/ g, repeat('x', g %% 50) FROM generate_series(1, %s) g",
                (100000,))
    rec.ran("/*t:p3_large*/", status(cur))
    digest = hashlib.sha256()
    for row in cur:
        digest.update(repr(row).encode())
    rec.result("large", digest.hexdigest())

    # Destructive statements that the shipped rule update-or-delete-without-where flags: they
    # run exactly as they would directly, because no shipped rule acts unless asked to.
    cur.execute("UPDATE /*t:p3_update_all*/ p3_items SET amount = amount * %s", (2,))
    rec.ran("/*t:p3_update_all*/", status(cur))
    rec.result("update_all", cur.rowcount)
    cur.execute("DELETE /*t:p3_delete_all*/ FROM p3_items")
    rec.ran("/*t:p3_delete_all*/", status(cur))
    rec.result("delete_all", cur.rowcount)

    conn.close()
    rec.dump()


if __name__ == "__main__":
    main(sys.argv[1])
