"""Shared helpers for the client batteries.

Each battery connects to one DSN, runs a fixed script and prints one canonical JSON document:
``results`` (what the driver returned: must be identical direct and through pgshape) and
``expect`` (one entry per statement the battery knows it sent, with the command tag the server
answered: the Rust side checks that pgshape reported exactly one event for each).

Statements are found in pgshape's events by a marker comment placed *inside* the statement
(``SELECT /*t:name*/ ...``) so it survives any statement splitting. Nothing here may depend on
the connection (no pids, ports, timings, database names), or the two runs would differ.
"""

import base64
import datetime
import decimal
import ipaddress
import json
import re
import sys
import uuid


def canon(value):
    """Turns driver values into JSON that compares exactly (type tag + text)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return {"float": repr(value)}
    if isinstance(value, decimal.Decimal):
        return {"numeric": str(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > 64:
            import hashlib

            return {"bytes_len": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        return {"bytes": base64.b64encode(raw).decode()}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {type(value).__name__: value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"interval": str(value)}
    if isinstance(value, uuid.UUID):
        return {"uuid": str(value)}
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address,
                          ipaddress.IPv4Network, ipaddress.IPv6Network,
                          ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        return {"inet": str(value)}
    if isinstance(value, dict):
        return {str(k): canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    if hasattr(value, "items"):  # asyncpg Record
        return {k: canon(v) for k, v in value.items()}
    return {type(value).__name__: str(value)}


_TAG = re.compile(r"^(.*?)(?: \d+)*$")


def split_tag(status):
    """`INSERT 0 5` -> ("INSERT", 5); `CREATE TABLE` -> ("CREATE TABLE", 0)."""
    if not status:
        return "", 0
    words = status.split()
    numbers = []
    while words and words[-1].isdigit():
        numbers.insert(0, int(words.pop()))
    return " ".join(words), (numbers[-1] if numbers else 0)


class Recorder:
    def __init__(self, name, protocol=None):
        self.name = name
        # "simple" or "extended" when every recorded statement used that sub-protocol.
        self.protocol = protocol
        self.results = {}
        self.expect = []

    def result(self, key, value):
        if key in self.results:
            raise KeyError(f"duplicate result key {key}")
        self.results[key] = canon(value)

    def ran(self, marker, status=None, *, command=None, rows=None, sqlstate=None, protocol=None):
        """Records that the statement containing `marker` ran once, with the server's tag."""
        if status is not None:
            command, rows = split_tag(status)
        entry = {
            "match": marker,
            "command": command or "",
            "rows": rows or 0,
            "sqlstate": sqlstate,
        }
        if protocol or self.protocol:
            entry["protocol"] = protocol or self.protocol
        self.expect.append(entry)

    def skipped(self, marker):
        """The statement was sent but the server skipped it (an earlier error in the pipeline)."""
        self.expect.append({"match": marker, "absent": True})

    def dump(self):
        json.dump({"battery": self.name, "results": self.results, "expect": self.expect},
                  sys.stdout, sort_keys=True, indent=1)
        sys.stdout.write("\n")
