"""Cursor-paged downloads (5201, 5301, 5401) and their acknowledgements (5202, 5302, 5402).

Each published item has a sequence number: the order of publication, which is the document's order
(updt_time, then key: a batch is published with one updt_time, in key order). A download returns the
unacknowledged items after the cursor; so a middleware that lost a page (or restarts from no cursor)
gets its unacknowledged items again, and an acknowledged item never comes back, except once per item
through the duplicate_ack fault (the middleware must still store it once).

Cursors are opaque to the middleware: `<infno>~<position>~<MAC>`; one that was not made by this
simulator for this transaction (and this catalogue filter) is -1401.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

from hipgate.exchange.fingerprint import canonical, key_text


class CursorError(ValueError):
    pass


def make_cursor(secret: bytes, infno: str, position: int, scope: str = "") -> str:
    mac = hmac.new(secret, f"cursor|{infno}|{position}|{scope}".encode(), "sha256").hexdigest()[:16]
    return f"{infno}~{position}~{mac}"


def read_cursor(secret: bytes, infno: str, cursor: str | None, scope: str = "") -> int:
    """The position a cursor stands for (0: from the beginning)."""
    if cursor is None:
        return 0
    parts = cursor.split("~")
    if len(parts) != 3 or parts[0] != infno or not parts[1].isdigit():
        raise CursorError(cursor)
    position = int(parts[1])
    if not hmac.compare_digest(make_cursor(secret, infno, position, scope), cursor):
        raise CursorError(cursor)
    return position


def publish(
    conn: sqlite3.Connection,
    infno: str,
    record_type: str,
    key_elements: tuple[str, ...],
    records: Iterable[Mapping[str, Any]],
    at: str,
) -> list[dict[str, Any]]:
    """Add items for download `infno`; an item whose key is already published is left as it is (so
    publishing is idempotent). Returns the keys added."""
    added = []
    items = sorted(records, key=lambda r: (str(r["updt_time"]), key_text({k: r[k] for k in key_elements})))
    for record in items:
        key = {k: record[k] for k in key_elements}
        cur = conn.execute(
            "INSERT OR IGNORE INTO outbox (infno, record_type, rec_key, updt_time, body, published_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (infno, record_type, key_text(key), str(record["updt_time"]), canonical(dict(record)).decode(), at),
        )
        if cur.rowcount:
            added.append(key)
    return added


def download(
    conn: sqlite3.Connection,
    secret: bytes,
    infno: str,
    cursor: str | None,
    limit: int,
    reserve: int = 0,
) -> tuple[dict[str, Any], list[str]]:
    """One page: {records, next_cursor, more}, and the keys re-served by the duplicate_ack fault
    (`reserve` acknowledged items, each at most once, newest acknowledgement first)."""
    position = read_cursor(secret, infno, cursor)
    again = []
    if reserve:
        again = conn.execute(
            "SELECT seq, rec_key, body FROM outbox WHERE infno = ? AND acked_at IS NOT NULL AND reserved = 0"
            " ORDER BY acked_at DESC, seq DESC LIMIT ?",
            (infno, min(reserve, limit)),
        ).fetchall()
    room = limit - len(again)
    rows = conn.execute(
        "SELECT seq, rec_key, body FROM outbox WHERE infno = ? AND seq > ? AND acked_at IS NULL ORDER BY seq LIMIT ?",
        (infno, position, room + 1),
    ).fetchall()
    more = len(rows) > room
    rows = rows[:room]
    if again:
        conn.executemany("UPDATE outbox SET reserved = reserved + 1 WHERE seq = ?", [(r["seq"],) for r in again])
    served = [*again, *rows]
    if served:
        conn.executemany("UPDATE outbox SET served = served + 1 WHERE seq = ?", [(r["seq"],) for r in served])
    last = rows[-1]["seq"] if rows else position
    page = {
        "records": [json.loads(r["body"]) for r in served],
        "next_cursor": make_cursor(secret, infno, last),
        "more": more,
    }
    return page, [r["rec_key"] for r in again]


def acknowledge(
    conn: sqlite3.Connection, infno: str, keys: list[Mapping[str, Any]], msgid: str, at: str
) -> list[dict[str, Any]]:
    """Per key: acknowledged, already_acknowledged, or unknown (never published for download `infno`)."""
    results = []
    for idx, key in enumerate(keys):
        rec_key = key_text(key)
        row = conn.execute(
            "SELECT seq, acked_at FROM outbox WHERE infno = ? AND rec_key = ?", (infno, rec_key)
        ).fetchone()
        if row is None:
            result = "unknown"
        elif row["acked_at"] is not None:
            result = "already_acknowledged"
        else:
            conn.execute("UPDATE outbox SET acked_at = ?, ack_msgid = ? WHERE seq = ?", (at, msgid, row["seq"]))
            result = "acknowledged"
        results.append({"idx": idx, "key": dict(key), "result": result})
    return results


def listing(conn: sqlite3.Connection, infno: str | None = None) -> list[dict[str, Any]]:
    """What was published, with its delivery state (the control API)."""
    sql = "SELECT seq, infno, record_type, rec_key, updt_time, published_at, served, reserved, acked_at FROM outbox"
    rows = conn.execute(
        sql + (" WHERE infno = ? ORDER BY seq" if infno else " ORDER BY seq"), (infno,) if infno else ()
    )
    return [dict(r) for r in rows]
