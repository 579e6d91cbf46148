#!/usr/bin/env python3
"""The workload and the checks of bench/soak (run by it; see there for usage).

Mixed load through pgshape for N minutes: threads that connect, run a random number of
operations and disconnect (politely with Terminate, or by just closing the socket), over the
simple protocol (literals, multi-statement strings), the extended protocol (one statement, or a
pipeline of several before one Sync), transactions, statements that fail (division by zero),
COPY FROM STDIN, statements cancelled with a CancelRequest, and a statement hitting the shipped
distinct-over-fanout-join rule (set to `warn` here, so each hit also sends a NOTICE); meanwhile
SIGHUP reloads the rules every minute and pgshape's RSS and open fds are sampled.

Every statement template carries its own column or table alias (`soak_<name>`), which both
pgshape's normalized text and pg_stat_statements' keep, so the three counts of each template
are reconciled by query text: what the workload ran, what pgshape counted, what PostgreSQL
counted. pg_stat_statements counts only statements that completed, pgshape every statement.

Python 3 standard library only: the wire protocol is spoken here directly (trust auth).
"""

import argparse
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

# --------------------------------------------------------------------------- wire protocol


class PgError(Exception):
    def __init__(self, fields):
        self.fields = fields
        super().__init__(f"{fields.get('C')}: {fields.get('M')}")

    @property
    def sqlstate(self):
        return self.fields.get("C")


def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


class Conn:
    """One protocol-3 session; every method reads up to ReadyForQuery."""

    def __init__(self, port, user, db, app):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.notices = 0
        self.port = port
        params = cstr("user") + cstr(user) + cstr("database") + cstr(db)
        params += cstr("application_name") + cstr(app) + b"\0"
        body = struct.pack("!I", 196608) + params
        self.sock.sendall(struct.pack("!I", len(body) + 4) + body)
        self.key = None
        while True:
            kind, body = self.read()
            if kind == b"R":
                (code,) = struct.unpack("!I", body[:4])
                if code != 0:
                    raise RuntimeError(f"authentication {code} asked: the soak uses trust")
            elif kind == b"K":
                self.key = body
            elif kind == b"E":
                raise PgError(error_fields(body))
            elif kind == b"Z":
                return

    def read(self):
        while True:
            if len(self.buf) >= 5:
                (length,) = struct.unpack("!I", self.buf[1:5])
                if len(self.buf) >= 1 + length:
                    kind, body = self.buf[:1], self.buf[5 : 1 + length]
                    self.buf = self.buf[1 + length :]
                    if kind == b"N":
                        self.notices += 1
                        continue
                    return kind, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def results(self):
        """Reads until ReadyForQuery: one (rows, sqlstate or None) per statement."""
        out, rows = [], 0
        while True:
            kind, body = self.read()
            if kind == b"D":
                rows += 1
            elif kind == b"C":
                out.append((rows, None))
                rows = 0
            elif kind == b"I":
                out.append((0, None))
            elif kind == b"E":
                out.append((rows, error_fields(body).get("C")))
                rows = 0
            elif kind == b"G":
                return out, "copy"
            elif kind == b"Z":
                return out, chr(body[0])

    def simple(self, sql):
        self.sock.sendall(msg(b"Q", cstr(sql)))
        return self.results()

    def extended(self, statements):
        """`statements`: (sql, [text params]); all before one Sync (a pipeline when > 1)."""
        out = b""
        for sql, params in statements:
            out += msg(b"P", cstr("") + cstr(sql) + struct.pack("!H", 0))
            bind = cstr("") + cstr("") + struct.pack("!HH", 0, len(params))
            for p in params:
                v = str(p).encode()
                bind += struct.pack("!i", len(v)) + v
            bind += struct.pack("!H", 0)
            out += msg(b"B", bind)
            out += msg(b"E", cstr("") + struct.pack("!I", 0))
        out += msg(b"S")
        self.sock.sendall(out)
        # ParseComplete/BindComplete carry nothing to count.
        return self.results()

    def copy_in(self, sql, lines):
        self.sock.sendall(msg(b"Q", cstr(sql)))
        first, state = self.results()
        if state != "copy":
            return first, state
        data = "".join(lines).encode()
        self.sock.sendall(msg(b"d", data) + msg(b"c"))
        return self.results()

    def cancel(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(struct.pack("!II", 16, 80877102) + self.key)
        s.recv(1)  # the server closes it when done
        s.close()

    def close(self, polite=True):
        try:
            if polite:
                self.sock.sendall(msg(b"X"))
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- the workload

# name -> how its statements are matched in pgshape's and PostgreSQL's normalized text
MARKERS = {
    "point": "soak_point",
    "point_ext": "soak_point_ext",
    "update_tx": "soak_upd",
    "pipeline": "soak_pipe",
    "multi_a": "soak_multi_a",
    "multi_b": "soak_multi_b",
    "error": "soak_err",
    "copy": "soak_copy",
    "cancel": "soak_sleep",
    "rule": "soak_rule",
    "begin": "BEGIN",
    "commit": "COMMIT",
}
EXPECTED_ERRORS = {"error": {"22012"}, "cancel": {"57014"}}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.issued = {k: 0 for k in MARKERS}
        self.ok = {k: 0 for k in MARKERS}
        self.errors = {}  # (template, sqlstate) -> n
        self.unexpected = []
        self.connects = 0
        self.abrupt = 0
        self.notices = 0

    def add(self, name, results):
        with self.lock:
            for _rows, state in results:
                self.issued[name] += 1
                if state is None:
                    self.ok[name] += 1
                else:
                    self.errors[(name, state)] = self.errors.get((name, state), 0) + 1
                    if state not in EXPECTED_ERRORS.get(name, ()):
                        self.unexpected.append(f"{name}: SQLSTATE {state}")


def one_op(conn, tally, rng):
    r = rng.random()
    aid = rng.randint(1, 100_000)
    if r < 0.25:
        res, _ = conn.simple(
            f"SELECT abalance AS soak_point FROM pgbench_accounts WHERE aid = {aid}"
        )
        tally.add("point", res)
    elif r < 0.45:
        res, _ = conn.extended(
            [("SELECT abalance AS soak_point_ext FROM pgbench_accounts WHERE aid = $1", [aid])]
        )
        tally.add("point_ext", res)
    elif r < 0.55:
        res, _ = conn.simple("BEGIN")
        tally.add("begin", res)
        res, _ = conn.extended(
            [
                (
                    "UPDATE pgbench_accounts AS soak_upd SET abalance = abalance + $1 WHERE aid = $2",
                    [rng.randint(-100, 100), aid],
                )
            ]
        )
        tally.add("update_tx", res)
        res, _ = conn.simple("COMMIT")
        tally.add("commit", res)
    elif r < 0.65:
        n = rng.randint(2, 8)
        res, _ = conn.extended([("SELECT $1::int + 1 AS soak_pipe", [i]) for i in range(n)])
        tally.add("pipeline", res)
    elif r < 0.72:
        res, _ = conn.simple(f"SELECT {aid} AS soak_multi_a; SELECT {aid} + 1 AS soak_multi_b")
        tally.add("multi_a", res[:1])
        tally.add("multi_b", res[1:])
    elif r < 0.78:
        res, _ = conn.simple(f"SELECT 1 / ({aid} - {aid}) AS soak_err")
        tally.add("error", res)
    elif r < 0.84:
        lines = [f"{aid + i}\tsoak row {i}\n" for i in range(rng.randint(1, 200))]
        res, _ = conn.copy_in("COPY soak_copy (a, b) FROM STDIN", lines)
        tally.add("copy", res)
    elif r < 0.87:
        conn.sock.sendall(msg(b"Q", cstr("SELECT pg_sleep(3) AS soak_sleep")))
        time.sleep(rng.uniform(0.05, 0.3))
        conn.cancel()
        res, _ = conn.results()
        tally.add("cancel", res)
    else:
        before = conn.notices
        res, _ = conn.simple(
            "SELECT DISTINCT o.id AS soak_rule FROM orders o "
            f"JOIN order_items i ON i.order_id = o.id WHERE o.id < {rng.randint(2, 50)}"
        )
        tally.add("rule", res)
        with tally.lock:
            tally.notices += conn.notices - before


def client_loop(port, tally, stop, seed, errors):
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            conn = Conn(port, "bench", "bench", "soak")
        except Exception as e:  # noqa: BLE001 - every failure is reported
            errors.append(f"connect: {e}")
            time.sleep(0.5)
            continue
        with tally.lock:
            tally.connects += 1
        try:
            for _ in range(rng.randint(1, 60)):
                if stop.is_set():
                    break
                one_op(conn, tally, rng)
        except Exception as e:  # noqa: BLE001
            errors.append(f"session: {e!r}")
        polite = rng.random() < 0.8
        if not polite:
            with tally.lock:
                tally.abrupt += 1
        conn.close(polite)


# --------------------------------------------------------------------------- observation


def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.read().decode()


def metric(text, name, labels=None):
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        if series != name and not series.startswith(name + "{"):
            continue
        if labels and not all(f'{k}="{v}"' in series for k, v in labels.items()):
            continue
        total += float(value)
    return total


def proc_sample(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def slope_per_min(samples):
    """Least-squares slope of (seconds, value) pairs, per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    if den == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in samples) / den * 60


def psql(args, sql):
    out = subprocess.run(
        [args.psql, "-h", "127.0.0.1", "-p", str(args.pg_port), "-U", "bench", "-d", "bench",
         "-XAtq", "-F", "\t", "-c", sql],
        capture_output=True, text=True, check=True,
    )
    return out.stdout


def count_by_marker(rows):
    """rows: (normalized text, calls) -> calls per template, by its marker."""
    counts = {k: 0 for k in MARKERS}
    for text, calls in rows:
        for name, marker in MARKERS.items():
            if marker in ("BEGIN", "COMMIT"):
                if text.strip().rstrip(";").upper() == marker:
                    counts[name] += calls
            elif re.search(rf"\b{marker}\b", text):
                counts[name] += calls
    return counts


def reload_rules(args, n):
    path = os.path.join(args.rules, "distinct-over-fanout-join.toml")
    with open(path) as f:
        text = re.sub(r"\n# soak reload \d+\n?$", "\n", f.read())
    with open(path, "w") as f:
        f.write(text.rstrip("\n") + f"\n# soak reload {n}\n")
    os.kill(args.pgshape_pid, signal.SIGHUP)


def server_log_errors(path):
    expected = ("division by zero", "canceling statement due to user request")
    unexpected = []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.search(r"\b(ERROR|FATAL|PANIC):\s+(.*)", line)
            if m and not any(e in m.group(2) for e in expected):
                unexpected.append(line.strip())
    return unexpected


def pgshape_log_problems(path):
    bad = []
    with open(path, errors="replace") as f:
        for line in f:
            if re.search(r"\b(WARN|ERROR)\b", line):
                bad.append(line.strip())
    return bad


def main():
    ap = argparse.ArgumentParser()
    for name in ("port", "admin-port", "pg-port", "pgshape-pid", "clients"):
        ap.add_argument("--" + name, type=int, required=True)
    ap.add_argument("--minutes", type=float, required=True)
    for name in ("rules", "psql", "pgshape-log", "pg-log", "json"):
        ap.add_argument("--" + name, required=True)
    args = ap.parse_args()

    duration = args.minutes * 60
    warmup = min(120.0, duration * 0.2)
    tally, stop, errors = Tally(), threading.Event(), []
    threads = [
        threading.Thread(target=client_loop, args=(args.port, tally, stop, i, errors), daemon=True)
        for i in range(args.clients)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    samples, reloads, next_reload, next_report = [], 0, start + 60, start + 60
    while True:
        now = time.monotonic()
        if now - start >= duration:
            break
        rss, fds = proc_sample(args.pgshape_pid)
        samples.append((now - start, rss, fds))
        if now >= next_reload:
            reloads += 1
            reload_rules(args, reloads)
            next_reload += 60
        if now >= next_report:
            with tally.lock:
                done = sum(tally.issued.values())
            print(f"    {int(now - start) // 60} min: {done} statements, {tally.connects} "
                  f"connections, RSS {rss} KiB, {fds} fds", file=sys.stderr, flush=True)
            next_report += 60
        time.sleep(min(5.0, max(0.1, duration - (now - start))))
    stop.set()
    for t in threads:
        t.join(timeout=30)

    # Every client has closed; the proxy may still be closing their server connections.
    deadline = time.monotonic() + 10
    while True:
        left = int(psql(args, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'bench' "
                              "AND pid <> pg_backend_pid()").strip())
        if left == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    metrics = http_get(args.admin_port, "/metrics")
    queries = json.loads(http_get(args.admin_port, "/api/queries?sort=calls&limit=1000"))
    rows = queries if isinstance(queries, list) else queries.get("queries", [])
    pgshape_counts = count_by_marker(
        (r["query"], r["calls"]) for r in rows if r.get("database") == "bench")
    pgss_rows = []
    for line in psql(args, "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d "
                           "ON d.oid = s.dbid WHERE d.datname = 'bench'").splitlines():
        text, _, calls = line.rpartition("\t")
        pgss_rows.append((text, int(calls)))
    pgss_counts = count_by_marker(pgss_rows)

    ok = True
    print("\n| template | run by the workload | of them completed | pgshape calls | "
          "pg_stat_statements calls | reconciled |")
    print("|---|---:|---:|---:|---:|---|")
    for name in MARKERS:
        issued, done = tally.issued[name], tally.ok[name]
        good = pgshape_counts[name] == issued and pgss_counts[name] == done
        ok &= good
        print(f"| `{MARKERS[name]}` | {issued} | {done} | {pgshape_counts[name]} | "
              f"{pgss_counts[name]} | {'yes' if good else 'NO'} |")
    total = sum(tally.issued.values())
    statements_metric = int(metric(metrics, "pgshape_statements_total"))
    rule_hits = int(metric(metrics, "pgshape_rule_hits_total",
                           {"rule": "distinct-over-fanout-join"}))
    reloads_ok = int(metric(metrics, "pgshape_rule_reloads_total", {"result": "ok"}))

    steady = [s for s in samples if s[0] >= warmup]
    rss_slope = slope_per_min([(t, r) for t, r, _ in steady])
    fd_slope = slope_per_min([(t, f) for t, _, f in steady])
    RSS_BOUND, FD_BOUND = 256.0, 1.0  # KiB per minute, fds per minute
    rss_end, fds_end = proc_sample(args.pgshape_pid)
    server_errors = server_log_errors(args.pg_log)
    proxy_problems = pgshape_log_problems(args.pgshape_log)

    checks = [
        ("statements (pgshape_statements_total = workload)", f"{statements_metric} = {total}",
         statements_metric == total),
        ("rule hits = `soak_rule` statements", f"{rule_hits} = {tally.issued['rule']}",
         rule_hits == tally.issued["rule"]),
        ("NOTICEs from the `warn` rule = its hits", f"{tally.notices} = {tally.issued['rule']}",
         tally.notices == tally.issued["rule"]),
        ("rule reloads (SIGHUP) accepted", f"{reloads_ok} of {reloads}", reloads_ok == reloads),
        ("RSS slope after warm-up", f"{rss_slope:+.1f} KiB/min (bound ±{RSS_BOUND:.0f})",
         abs(rss_slope) < RSS_BOUND),
        ("open fds slope after warm-up", f"{fd_slope:+.2f} fds/min (bound ±{FD_BOUND:.0f})",
         abs(fd_slope) < FD_BOUND),
        ("RSS min / max after warm-up",
         f"{min(r for _, r, _ in steady)} / {max(r for _, r, _ in steady)} KiB" if steady else "-",
         True),
        ("open fds at the end (idle)", str(fds_end), True),
        ("errors the workload did not cause (client side)",
         str(len(tally.unexpected) + len(errors)), not tally.unexpected and not errors),
        ("unexpected ERROR/FATAL in the PostgreSQL log", str(len(server_errors)),
         not server_errors),
        ("WARN/ERROR lines in pgshape's log", str(len(proxy_problems)), not proxy_problems),
        ("backends left behind", str(left), left == 0),
        ("pgshape client / server connections open at the end",
         f"{int(metric(metrics, 'pgshape_client_connections_active'))} / "
         f"{int(metric(metrics, 'pgshape_server_connections_active'))}",
         metric(metrics, "pgshape_client_connections_active") == 0
         and metric(metrics, "pgshape_server_connections_active") == 0),
    ]
    print("\n| check | figure | ok |\n|---|---|---|")
    for what, figure, good in checks:
        ok &= good
        print(f"| {what} | {figure} | {'yes' if good else 'NO'} |")
    print(f"\n{args.minutes:g} min, {args.clients} client threads: {total} statements in "
          f"{tally.connects} connections ({tally.abrupt} closed without Terminate), "
          f"{len(samples)} RSS/fd samples, warm-up {warmup:.0f} s.")
    for line in (tally.unexpected + errors + server_errors + proxy_problems)[:20]:
        print("  unexpected:", line)
    with open(args.json, "w") as f:
        json.dump({"issued": tally.issued, "ok": tally.ok, "pgshape": pgshape_counts,
                   "pg_stat_statements": pgss_counts, "samples": samples,
                   "rss_slope_kib_per_min": rss_slope, "fd_slope_per_min": fd_slope,
                   "passed": ok}, f, indent=1)
    print("\nsoak:", "PASSED" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
