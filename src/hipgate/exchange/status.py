"""Where the exchange stands now, read from the bookkeeping tables in one read-only snapshot:
`python -m hipgate.exchange.run status` prints it, `metrics` turns it into Prometheus text and
`hipgate exchange status` renders it on the control node.

- **backlog** per record type: records waiting to be acknowledged — captured changes the incremental run
  has not read yet (past the watermark) and records in pending outbox messages, each key counted once.
- **lag**: age of the oldest of those changes (seconds; 0 when nothing waits). Above `max_lag_minutes`
  the status alerts.
- **last success** per kind: the last acknowledged 4101 message (incremental), the last stored or
  acknowledged download page (downloads), the last confirmed chunk or completed file (history).
- **failures**: failed requests of the last 24 hours (hipgate_failure), all-time (the day counters) and
  the pending messages that carry an error.

Record types appear once an incremental run has read them (hipgate_watermark) or queued them: the upload
tables of record types 4101 does not carry (test_psn) are captured too, and must not count as backlog.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from hipgate.exchange.bookkeeping import FAILURE_KINDS
from hipgate.exchange.ledger import table

CST = dt.timezone(dt.timedelta(hours=8), "CST")
PENDING_LISTED = 20  # pending messages with an error listed in full; the rest only counted
ERROR_CHARS = 300


def iso(at: dt.datetime | None) -> str | None:
    return at.astimezone(CST).isoformat(timespec="seconds") if at is not None else None


def when(at: dt.datetime | None) -> dict[str, Any] | None:
    """A moment as the JSON carries it: China Standard Time text and Unix seconds."""
    return {"at": iso(at), "timestamp": round(at.timestamp(), 3)} if at is not None else None


@contextmanager
def snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One read-only REPEATABLE READ transaction when the connection is idle (every number from the same
    moment); inside a caller's transaction, that transaction."""
    own = conn.info.transaction_status == pq.TransactionStatus.IDLE and not conn.autocommit
    if own:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        yield
    finally:
        if own:
            conn.rollback()


def _one(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def record_types(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The record types the incremental run carries: read once (watermark) or queued."""
    rows = conn.execute(
        f"SELECT record_type FROM {table(schema, 'hipgate_watermark')}"
        f" UNION SELECT record_type FROM {table(schema, 'hipgate_outbox')} WHERE status = 'pending' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def backlog(conn: psycopg.Connection[Any], schema: str, code: str, now: dt.datetime) -> dict[str, Any]:
    """One record type's waiting records (captured and unread, queued, both as distinct keys) and lag."""
    horizon = _one(conn, f"SELECT horizon::text FROM {table(schema, 'hipgate_watermark')} WHERE record_type = %s",
                   (code,)) or "0"  # fmt: skip
    unread = f"SELECT record_key, changed_at AS at, 'c' AS src FROM {table(schema, 'hipgate_change')}" \
             " WHERE record_type = %s AND xid >= %s::xid8"  # fmt: skip
    queued = (
        f"SELECT r.record_key, r.changed_at AS at, 'q' AS src FROM {table(schema, 'hipgate_outbox_record')} r"
        f" JOIN {table(schema, 'hipgate_outbox')} o USING (msgid) WHERE o.status = 'pending' AND o.record_type = %s"
    )
    records, captured, in_outbox, oldest = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE c), count(*) FILTER (WHERE q), min(at) FROM"
        " (SELECT record_key, bool_or(src = 'c') AS c, bool_or(src = 'q') AS q, min(at) AS at"
        f"  FROM ({unread} UNION ALL {queued}) u GROUP BY record_key) k",
        (code, horizon, code),
    ).fetchone()  # type: ignore[misc]
    messages = _one(conn, f"SELECT count(*) FROM {table(schema, 'hipgate_outbox')}"
                    " WHERE status = 'pending' AND record_type = %s", (code,))  # fmt: skip
    return {
        "records": records,
        "captured": captured,
        "queued": in_outbox,
        "messages": messages,
        "oldest_change_at": iso(oldest),
        "lag_seconds": _age(now, oldest),
    }


def _age(now: dt.datetime, at: dt.datetime | None) -> float:
    return round(max((now - at).total_seconds(), 0.0), 3) if at is not None else 0.0


def last_success(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    t = functools.partial(table, schema)
    incremental = _one(conn, f"SELECT max(acked_at) FROM {t('hipgate_outbox')} WHERE status = 'acked'")
    downloads = _one(conn, f"SELECT max(acked_at) FROM {t('hipgate_download_page')}")
    history = _one(
        conn,
        f"SELECT greatest((SELECT max(confirmed_at) FROM {t('hipgate_history_chunk')}),"
        f" (SELECT max(completed_at) FROM {t('hipgate_history_file')}))",
    )
    return {"incremental": when(incremental), "downloads": when(downloads), "history": when(history)}


def failures(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    by_kind = dict.fromkeys(FAILURE_KINDS, 0)
    for kind, n in conn.execute(
        f"SELECT kind, count(*) FROM {table(schema, 'hipgate_failure')}"
        " WHERE at > now() - interval '24 hours' GROUP BY kind"
    ).fetchall():
        by_kind[kind] = n
    total = _one(conn, f"SELECT coalesce(sum(value), 0) FROM {table(schema, 'hipgate_metric_day')}"
                 " WHERE metric = 'failures'")  # fmt: skip
    rows = conn.execute(
        f"SELECT msgid, infno, record_type, attempts, infcode, last_error, created_at, sent_at, count(*) OVER ()"
        f" FROM {table(schema, 'hipgate_outbox')} WHERE status = 'pending' AND last_error IS NOT NULL"
        " ORDER BY created_at, msgid LIMIT %s",
        (PENDING_LISTED,),
    ).fetchall()
    listed = [
        {"msgid": m, "infno": i, "record_type": rt, "attempts": a, "infcode": c, "last_error": (e or "")[:ERROR_CHARS],
         "created_at": iso(ca), "last_attempt_at": iso(sa)}
        for m, i, rt, a, c, e, ca, sa, _ in rows
    ]  # fmt: skip
    return {
        "last_24h": sum(by_kind.values()),
        "last_24h_by_kind": by_kind,
        "total": int(total),
        "pending": rows[0][-1] if rows else 0,
        "pending_messages": listed,
    }


def quarantined(conn: psycopg.Connection[Any], schema: str) -> dict[str, int]:
    rows = conn.execute(
        f"SELECT record_type, count(*) FROM {table(schema, 'hipgate_quarantine')}"
        " WHERE resolved_at IS NULL GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return {rt: n for rt, n in rows}


def alert_reasons(lag_seconds: float, max_lag_minutes: int) -> list[dict[str, str]]:
    if lag_seconds <= max_lag_minutes * 60:
        return []
    return [
        {
            "zh": f"上传延迟 {lag_seconds:.0f} 秒，超过阈值 {max_lag_minutes} 分钟（max_lag_minutes）。",
            "en": f"upload lag {lag_seconds:.0f} s exceeds the threshold of {max_lag_minutes} min (max_lag_minutes).",
        }
    ]


def status(conn: psycopg.Connection[Any], schema: str, max_lag_minutes: int) -> dict[str, Any]:
    """The exchange's status now (see the module's docstring); `alert` when the lag exceeds the threshold."""
    with snapshot(conn):
        now, day = conn.execute("SELECT now(), (now() AT TIME ZONE 'Asia/Shanghai')::date").fetchone()  # type: ignore[misc]
        per_type = {code: backlog(conn, schema, code, now) for code in record_types(conn, schema)}
        oldest = min((b["oldest_change_at"] for b in per_type.values() if b["oldest_change_at"]), default=None)
        lag = max((b["lag_seconds"] for b in per_type.values()), default=0.0)
        q = quarantined(conn, schema)
        anomalies = _one(conn, f"SELECT coalesce(sum(value), 0) FROM {table(schema, 'hipgate_metric_day')}"
                         " WHERE metric = 'anomalies' AND day = %s", (day,))  # fmt: skip
        unacked_pages = _one(conn, f"SELECT count(*) FROM {table(schema, 'hipgate_download_page')}"
                             " WHERE acked_at IS NULL")  # fmt: skip
        doc = {
            "generated_at": iso(now),
            "generated_timestamp": round(now.timestamp(), 3),
            "day": day.isoformat(),
            "max_lag_minutes": max_lag_minutes,
            "lag_seconds": lag,
            "oldest_unacknowledged_at": oldest,
            "backlog": per_type,
            "backlog_records": sum(b["records"] for b in per_type.values()),
            "pending_messages": sum(b["messages"] for b in per_type.values()),
            "downloads_unacknowledged_pages": unacked_pages,
            "last_success": last_success(conn, schema),
            "failures": failures(conn, schema),
            "quarantined_open": sum(q.values()),
            "quarantined_open_by_record_type": q,
            "anomalies_today": int(anomalies),
        }
    reasons = alert_reasons(lag, max_lag_minutes)
    return doc | {"alert": bool(reasons), "reasons": reasons}
