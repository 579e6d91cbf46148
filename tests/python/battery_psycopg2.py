"""psycopg2 battery: the simple query protocol (psycopg2 interpolates parameters client-side
and sends one Query message per execute), multi-statement strings, errors in transactions,
COPY both ways, notices, LISTEN/NOTIFY and a large result.

Usage: python battery_psycopg2.py DSN   (prints canonical JSON, see battery_common)
"""

import datetime
import decimal
import hashlib
import io
import select
import sys

import psycopg2
import psycopg2.errors
import psycopg2.extras

from battery_common import Recorder


def main(dsn):
    rec = Recorder("psycopg2", protocol="simple")
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    rec.result("server_encoding", conn.get_parameter_status("server_encoding"))
    rec.result("protocol_version", conn.protocol_version)

    cur.execute(
        "CREATE TABLE /*t:p2_create*/ p2_items (id int PRIMARY KEY, name text, "
        "price numeric(10,2), data bytea, tags text[], created timestamptz, doc jsonb)"
    )
    rec.ran("/*t:p2_create*/", cur.statusmessage)

    rows = [
        (1, "plain", decimal.Decimal("9.99"), b"\x00\x01\xff", ["a", "b"],
         datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
         psycopg2.extras.Json({"k": [1, 2, None]})),
        (2, "quote ' and \\ back", decimal.Decimal("0.10"), b"", [],
         datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc),
         psycopg2.extras.Json({})),
        (3, "unicodé ☃ 𝄞", None, None, None, None, None),
    ]
    for row in rows:
        cur.execute("INSERT /*t:p2_insert*/ INTO p2_items VALUES (%s, %s, %s, %s, %s, %s, %s)", row)
        rec.ran("/*t:p2_insert*/", cur.statusmessage)

    cur.execute("SET TIME ZONE 'UTC'")
    cur.execute("SELECT /*t:p2_select*/ * FROM p2_items ORDER BY id")
    rec.ran("/*t:p2_select*/", cur.statusmessage)
    rec.result("select_rows", cur.fetchall())
    rec.result("select_types", [d.type_code for d in cur.description])

    # Parameters of many types, interpolated by the driver into one simple Query.
    cur.execute(
        "SELECT /*t:p2_params*/ %s::int, %s::bool, %s::float8, %s::numeric, %s::text, "
        "%s::bytea, %s::date, %s::int[], %s IS NULL",
        (42, True, 1.5, decimal.Decimal("123.456"), "it's", b"\xde\xad", datetime.date(2020, 2, 29),
         [1, 2, 3], None),
    )
    rec.ran("/*t:p2_params*/", cur.statusmessage)
    rec.result("params", cur.fetchone())

    # Several statements in one Query: one result (the last) for the driver, three for pgshape.
    cur.execute(
        "UPDATE /*t:p2_multi_update*/ p2_items SET price = price * 2 WHERE price IS NOT NULL; "
        "INSERT /*t:p2_multi_insert*/ INTO p2_items (id, name) VALUES (4, 'four'); "
        "SELECT /*t:p2_multi_select*/ id, price FROM p2_items ORDER BY id"
    )
    rec.ran("/*t:p2_multi_update*/", command="UPDATE", rows=2)
    rec.ran("/*t:p2_multi_insert*/", command="INSERT", rows=1)
    rec.ran("/*t:p2_multi_select*/", cur.statusmessage)
    rec.result("multi_last", cur.fetchall())

    # Errors: outside a transaction, then inside one, followed by ROLLBACK.
    try:
        cur.execute("SELECT /*t:p2_div0*/ 1/0")
    except psycopg2.errors.DivisionByZero as e:
        rec.result("div0", [e.pgcode, e.diag.message_primary])
        rec.ran("/*t:p2_div0*/", command="", rows=0, sqlstate="22012")
    cur.execute("BEGIN /*t:p2_begin*/")
    rec.ran("/*t:p2_begin*/", cur.statusmessage)
    cur.execute("INSERT /*t:p2_tx_insert*/ INTO p2_items (id, name) VALUES (10, 'ten')")
    rec.ran("/*t:p2_tx_insert*/", cur.statusmessage)
    try:
        cur.execute("INSERT /*t:p2_dup*/ INTO p2_items (id, name) VALUES (1, 'dup')")
    except psycopg2.errors.UniqueViolation as e:
        rec.result("dup", [e.pgcode, e.diag.message_primary, e.diag.constraint_name])
        rec.ran("/*t:p2_dup*/", command="", rows=0, sqlstate="23505")
    try:
        cur.execute("SELECT /*t:p2_aborted*/ 1")
    except psycopg2.errors.InFailedSqlTransaction as e:
        rec.result("aborted", e.pgcode)
        rec.ran("/*t:p2_aborted*/", command="", rows=0, sqlstate="25P02")
    cur.execute("ROLLBACK /*t:p2_rollback*/")
    rec.ran("/*t:p2_rollback*/", cur.statusmessage)
    cur.execute("SELECT /*t:p2_after_rb*/ count(*) FROM p2_items")
    rec.ran("/*t:p2_after_rb*/", cur.statusmessage)
    rec.result("count_after_rollback", cur.fetchone())

    # The driver's own transaction handling (implicit BEGIN, commit()).
    conn.autocommit = False
    cur.execute("DELETE /*t:p2_delete*/ FROM p2_items WHERE id = 4")
    rec.ran("/*t:p2_delete*/", cur.statusmessage)
    conn.commit()
    conn.autocommit = True

    # COPY both ways.
    cur.copy_expert("COPY /*t:p2_copy_in*/ p2_items (id, name) FROM STDIN",
                    io.StringIO("100\tcopied one\n101\tcopied\\ttab\n102\t\\N\n"))
    # psycopg2 keeps no status message for COPY; rowcount comes from the server's "COPY n".
    rec.ran("/*t:p2_copy_in*/", command="COPY", rows=cur.rowcount)
    out = io.StringIO()
    cur.copy_expert("COPY (SELECT /*t:p2_copy_out*/ id, name FROM p2_items ORDER BY id) TO STDOUT", out)
    rec.ran("/*t:p2_copy_out*/", command="COPY", rows=cur.rowcount)
    rec.result("copy_out", out.getvalue())

    # Notices and an empty query (EmptyQueryResponse).
    cur.execute("DO /*t:p2_notice*/ $$BEGIN RAISE NOTICE 'hello from the server'; END$$")
    rec.ran("/*t:p2_notice*/", cur.statusmessage)
    rec.result("notices", [n.strip() for n in conn.notices])
    try:
        cur.execute("/*t:p2_empty*/")
    except psycopg2.ProgrammingError as e:
        # The server answered EmptyQueryResponse; psycopg2 turns that into this error.
        rec.result("empty", str(e))
    rec.ran("/*t:p2_empty*/", command="", rows=0)

    # LISTEN/NOTIFY: the notification arrives asynchronously.
    cur.execute("LISTEN /*t:p2_listen*/ p2_channel")
    rec.ran("/*t:p2_listen*/", cur.statusmessage)
    cur.execute("NOTIFY /*t:p2_notify*/ p2_channel, 'payload ☃'")
    rec.ran("/*t:p2_notify*/", cur.statusmessage)
    deadline = 50
    while not conn.notifies and deadline:
        select.select([conn], [], [], 0.1)
        conn.poll()
        deadline -= 1
    rec.result("notifies", [[n.channel, n.payload] for n in conn.notifies])

    # A large result, checked by digest.
    cur.execute("SELECT /*t:p2_large*/ g, md5(g::text) FROM generate_series(1, 50000) g")
    rec.ran("/*t:p2_large*/", cur.statusmessage)
    digest = hashlib.sha256()
    for row in cur:
        digest.update(repr(row).encode())
    rec.result("large", [cur.rowcount, digest.hexdigest()])

    # Destructive statements that the shipped rule update-or-delete-without-where flags: they
    # run exactly as they would directly, because no shipped rule acts unless asked to.
    cur.execute("UPDATE /*t:p2_update_all*/ p2_items SET name = upper(name)")
    rec.ran("/*t:p2_update_all*/", cur.statusmessage)
    rec.result("update_all", cur.rowcount)
    cur.execute("DELETE /*t:p2_delete_all*/ FROM p2_items")
    rec.ran("/*t:p2_delete_all*/", cur.statusmessage)
    rec.result("delete_all", cur.rowcount)

    conn.close()
    rec.dump()


if __name__ == "__main__":
    main(sys.argv[1])
