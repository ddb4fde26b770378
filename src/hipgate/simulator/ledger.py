"""The simulator's ledger: everything the platform accepted, in SQLite (stdlib) in the state directory.

One connection, one lock: the platform's requests are serialised at the ledger (a simulator needs
correctness, not throughput), and a message's effects and its stored reply are written in one
transaction, so a crash never leaves a processed message without its reply or the reverse.

Tables (schema version in meta):
  messages  every processed message (HTTP 200): msgid, sender, infno, SHA-256 of its canonical bytes
            without sign, the reply's bytes and status; the idempotency store
  requests  every request, processed or not: time, infno, msgid, HTTP status, infcode, the fault that hit it
  records   every accepted record, one row per (record type, key): updt_time, day, fingerprint, the
            canonical bytes of its normal form (zlib), how it came (4101 msgid or history file), versions replaced,
            duplicates received, reversal
  files     every history file: upload_id, name, size, SHA-256, chunking, file_qry_no, parse results
  chunks    confirmed chunks: upload_id, index, SHA-256, size
  outbox    what the platform publishes for download (5201/5301/5401): seq (the cursor order), key,
            body, served count, acknowledgement
  catalog   catalogue versions (1301/1302) with their entries
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hipgate.exchange.fingerprint import (
    FINGERPRINT_VERSION,
    key_text,
    record_bytes,
    record_day,
    summarise,
)

SCHEMA_VERSION = "1"
DB_NAME = "ledger.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  msgid TEXT PRIMARY KEY, sender_code TEXT NOT NULL, infno TEXT NOT NULL, request_sha256 TEXT NOT NULL,
  http_status INTEGER NOT NULL, infcode INTEGER NOT NULL, reply BLOB NOT NULL, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
  id INTEGER PRIMARY KEY, at TEXT NOT NULL, infno TEXT, msgid TEXT, http_status INTEGER, infcode INTEGER,
  outcome TEXT NOT NULL, fault_id INTEGER);
CREATE TABLE IF NOT EXISTS records (
  record_type TEXT NOT NULL, rec_key TEXT NOT NULL, updt_time TEXT NOT NULL, day TEXT NOT NULL,
  fingerprint TEXT NOT NULL, body BLOB NOT NULL, sender_code TEXT, msgid TEXT, file_qry_no TEXT,
  accepted_at TEXT NOT NULL, versions INTEGER NOT NULL DEFAULT 1, duplicates INTEGER NOT NULL DEFAULT 0,
  reversed_at TEXT, reversal_reason TEXT, PRIMARY KEY (record_type, rec_key));
CREATE INDEX IF NOT EXISTS records_by_day ON records (record_type, day, fingerprint);
CREATE TABLE IF NOT EXISTS files (
  upload_id TEXT PRIMARY KEY, file_sha256 TEXT NOT NULL UNIQUE, sender_code TEXT NOT NULL, file_name TEXT NOT NULL,
  admdvs TEXT NOT NULL, year INTEGER NOT NULL, record_type TEXT NOT NULL, file_size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL, chunk_count INTEGER NOT NULL, declared_records INTEGER NOT NULL,
  status TEXT NOT NULL, file_qry_no TEXT UNIQUE, started_at TEXT NOT NULL, completed_at TEXT,
  parse_status TEXT, parsed_records INTEGER, accepted INTEGER, duplicates INTEGER, rejected INTEGER,
  invalid_lines INTEGER, parse_error TEXT, parsed_at TEXT);
CREATE TABLE IF NOT EXISTS chunks (
  upload_id TEXT NOT NULL, chunk_index INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
  confirmed_at TEXT NOT NULL, PRIMARY KEY (upload_id, chunk_index));
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, infno TEXT NOT NULL, record_type TEXT NOT NULL, rec_key TEXT NOT NULL,
  updt_time TEXT NOT NULL, body TEXT NOT NULL, published_at TEXT NOT NULL, served INTEGER NOT NULL DEFAULT 0,
  reserved INTEGER NOT NULL DEFAULT 0, acked_at TEXT, ack_msgid TEXT, UNIQUE (record_type, rec_key));
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (infno, acked_at, seq);
CREATE TABLE IF NOT EXISTS catalog (
  catalog_code TEXT NOT NULL, ver TEXT NOT NULL, catalog_name TEXT NOT NULL, ver_name TEXT NOT NULL,
  release_time TEXT NOT NULL, entries TEXT NOT NULL, PRIMARY KEY (catalog_code, ver));
"""


class Ledger:
    """The SQLite database of one state directory, shared by the server's threads."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_NAME
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the ledger's lock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_readonly(state_dir: Path) -> sqlite3.Connection:
    """A reader beside a running server (WAL lets it read while the server writes)."""
    path = state_dir / DB_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ledger here / 此处没有账本")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


# ---------------------------------------------------------------- messages (idempotency)


def find_message(conn: sqlite3.Connection, msgid: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM messages WHERE msgid = ?", (msgid,)).fetchone()


def store_message(
    conn: sqlite3.Connection,
    *,
    msgid: str,
    sender_code: str,
    infno: str,
    request_sha256: str,
    http_status: int,
    infcode: int,
    reply: bytes,
    at: str,
) -> None:
    conn.execute(
        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (msgid, sender_code, infno, request_sha256, http_status, infcode, reply, at),
    )


def log_request(
    conn: sqlite3.Connection,
    *,
    at: str,
    infno: str | None,
    msgid: str | None,
    http_status: int | None,
    infcode: int | None,
    outcome: str,
    fault_id: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO requests (at, infno, msgid, http_status, infcode, outcome, fault_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, infno, msgid, http_status, infcode, outcome, fault_id),
    )


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Stored:
    """What storing one record did: result as the document names it (accepted, duplicate, rejected)."""

    result: str
    err_msg: str | None
    key: dict[str, Any]
    changed: bool  # a new record or a new version: what may give an anomaly
    rec_key: str = ""  # key_text(key), as the records table holds it


# Records whose held versions one SELECT looks up (SQLite allows 32766 parameters, older builds 999).
HELD_LOOKUP = 500
# New records written by one executemany: their compressed bodies wait in memory until then.
WRITE_ROWS = 50
_INSERT = (
    "INSERT INTO records (updt_time, day, fingerprint, body, sender_code, msgid, file_qry_no, accepted_at,"
    " record_type, rec_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def store_record(
    conn: sqlite3.Connection,
    record_type: str,
    key_elements: tuple[str, ...],
    day_element: str,
    record: Mapping[str, Any],
    *,
    at: str,
    sender_code: str | None,
    msgid: str | None = None,
    file_qry_no: str | None = None,
) -> Stored:
    """Idempotent by key and updt_time, as the document says: a new key or a later updt_time is accepted
    (the later version replaces the held one); the same updt_time is a duplicate and changes nothing; an
    earlier one is rejected. A reversed record sent again is accepted again (reinstated)."""
    return store_records(
        conn, record_type, key_elements, day_element, [record], at=at, sender_code=sender_code, msgid=msgid,
        file_qry_no=file_qry_no,
    )[0]  # fmt: skip


def store_records(
    conn: sqlite3.Connection,
    record_type: str,
    key_elements: tuple[str, ...],
    day_element: str,
    records: Sequence[Mapping[str, Any]],
    *,
    at: str,
    sender_code: str | None,
    msgid: str | None = None,
    file_qry_no: str | None = None,
) -> list[Stored]:
    """store_record of each record, in order, with the same results and the same rows as one by one (a key
    repeated in the batch sees its earlier version), in the caller's transaction: the versions held are read
    with one SELECT per HELD_LOOKUP keys, and the inserts, new versions and duplicate counts are written with
    executemany (inserts WRITE_ROWS at a time, so few compressed bodies wait in memory). Inserts go first,
    so a key new in this batch exists before its later versions update it or its duplicates count; new
    versions and duplicate counts touch different columns."""
    keyed = []
    for record in records:
        key = {k: record[k] for k in key_elements}
        keyed.append((record, key, key_text(key)))
    held: dict[str, tuple[str, str, str | None]] = {}  # rec_key -> (updt_time, fingerprint, reversed_at)
    wanted = list(dict.fromkeys(rec_key for _, _, rec_key in keyed))
    for start in range(0, len(wanted), HELD_LOOKUP):
        chunk = wanted[start : start + HELD_LOOKUP]
        rows = conn.execute(
            "SELECT rec_key, updt_time, fingerprint, reversed_at FROM records WHERE record_type = ?"
            f" AND rec_key IN ({', '.join('?' * len(chunk))})",
            (record_type, *chunk),
        )
        held.update((r[0], (r[1], r[2], r[3])) for r in rows)
    inserts: list[tuple[Any, ...]] = []
    versions: list[tuple[Any, ...]] = []
    duplicates: list[tuple[str, str]] = []
    out: list[Stored] = []
    for record, key, rec_key in keyed:
        updt_time = str(record["updt_time"])
        body = record_bytes(record)  # the normal form: nulls dropped, items in canonical order
        fingerprint = hashlib.sha256(body).hexdigest()
        day = record_day(record, day_element)
        have = held.get(rec_key)
        if have is not None and have[2] is None and updt_time == have[0]:
            duplicates.append((record_type, rec_key))
            note = None
            if fingerprint != have[1]:
                note = (
                    "同键同更新时间的记录内容不同，保留原记录 / "
                    "same key and updt_time but other content: the held record is kept"
                )
            out.append(Stored("duplicate", note, key, False, rec_key))
            continue
        if have is not None and have[2] is None and updt_time < have[0]:
            out.append(
                Stored(
                    "rejected",
                    f"更新时间早于平台已有版本（{have[0]}）/ older than the version held (updt_time {have[0]})",
                    key,
                    False,
                    rec_key,
                )
            )
            continue
        row = (
            updt_time, day, fingerprint,
            zlib.compress(body, 1),  # level 1: the ledger is written at the pace of a history file
            sender_code, msgid, file_qry_no, at, record_type, rec_key,
        )  # fmt: skip
        if have is None:
            inserts.append(row)
            if len(inserts) >= WRITE_ROWS:
                conn.executemany(_INSERT, inserts)
                inserts.clear()
        else:
            versions.append(row)
        held[rec_key] = (updt_time, fingerprint, None)
        out.append(Stored("accepted", None, key, True, rec_key))
    if inserts:
        conn.executemany(_INSERT, inserts)
    if versions:
        conn.executemany(
            "UPDATE records SET updt_time = ?, day = ?, fingerprint = ?, body = ?, sender_code = ?, msgid = ?,"
            " file_qry_no = ?, accepted_at = ?, versions = versions + 1, reversed_at = NULL, reversal_reason = NULL"
            " WHERE record_type = ? AND rec_key = ?",
            versions,
        )
    if duplicates:
        conn.executemany(
            "UPDATE records SET duplicates = duplicates + 1 WHERE record_type = ? AND rec_key = ?", duplicates
        )
    return out


def reverse_record(conn: sqlite3.Connection, record_type: str, key: Mapping[str, Any], reason: str, at: str) -> str:
    """9202: reversed | already_reversed | unknown."""
    rec_key = key_text(key)
    held = conn.execute(
        "SELECT reversed_at FROM records WHERE record_type = ? AND rec_key = ?", (record_type, rec_key)
    ).fetchone()
    if held is None:
        return "unknown"
    if held["reversed_at"] is not None:
        return "already_reversed"
    conn.execute(
        "UPDATE records SET reversed_at = ?, reversal_reason = ? WHERE record_type = ? AND rec_key = ?",
        (at, reason, record_type, rec_key),
    )
    return "reversed"


# ---------------------------------------------------------------- the summary


def day_records(conn: sqlite3.Connection, record_type: str, day: str) -> list[dict[str, Any]]:
    """The records of one day and type, key by key: to find which record differs when a day's
    fingerprint does not match the source's (reversed ones included, marked)."""
    rows = conn.execute(
        "SELECT rec_key, updt_time, fingerprint, reversed_at, msgid, file_qry_no, versions, duplicates FROM records"
        " WHERE record_type = ? AND day = ? ORDER BY rec_key",
        (record_type, day),
    )
    return [dict(r) | {"key": json.loads(r["rec_key"])} for r in rows]


def ledger_summary(conn: sqlite3.Connection) -> dict[str, Any]:
    """Counts and fingerprints per day and record type of the records held (reversed ones left out: the
    platform no longer counts them), as `hipgate.exchange.fingerprint` defines them, and beside them what
    a comparison with the source needs to explain a difference."""
    rows = conn.execute("SELECT record_type, day, fingerprint FROM records WHERE reversed_at IS NULL")
    days = summarise((r[0], r[1], r[2]) for r in rows)
    totals: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT record_type, count(*) AS held, sum(reversed_at IS NOT NULL) AS reversed, sum(duplicates) AS dups,"
        " sum(versions - 1) AS replaced FROM records GROUP BY record_type ORDER BY record_type"
    ):
        totals[r["record_type"]] = {
            "records": r["held"] - r["reversed"],
            "reversed": r["reversed"],
            "duplicates_received": r["dups"],
            "versions_replaced": r["replaced"],
        }
    files = conn.execute(
        "SELECT count(*) AS n, sum(status = 'complete') AS complete, sum(parse_status = 'parsed') AS parsed FROM files"
    ).fetchone()
    return {
        "fingerprint_version": FINGERPRINT_VERSION,
        "days": [d.as_dict() for d in days],
        "totals": totals,
        "files": {"uploads": files["n"], "complete": files["complete"] or 0, "parsed": files["parsed"] or 0},
        "messages": conn.execute("SELECT count(*) FROM messages").fetchone()[0],
    }
