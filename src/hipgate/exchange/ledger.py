"""Small writes to the bookkeeping tables shared by the incremental, download and history runs: the
per-day counters, quarantine entries, failures, runs and keys as the tables hold them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from hipgate.exchange.dataset import RecordType, mask_record
from hipgate.exchange.fingerprint import key_text
from hipgate.exchange.violations import Violation

# Days are the platform's (China Standard Time), whatever the database server's time zone.
TODAY = "(now() AT TIME ZONE 'Asia/Shanghai')::date"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table(schema: str, name: str) -> str:
    return f"{ident(schema)}.{ident(name)}"


def bump(conn: psycopg.Connection[Any], schema: str, metric: str, record_type: str = "", n: int = 1) -> None:
    """Add n to today's counter (in the caller's transaction, so it counts exactly what was committed)."""
    if n == 0:
        return
    conn.execute(
        f"INSERT INTO {table(schema, 'hipgate_metric_day')} (day, metric, record_type, value)"
        f" VALUES ({TODAY}, %s, %s, %s) ON CONFLICT (day, metric, record_type)"
        " DO UPDATE SET value = hipgate_metric_day.value + EXCLUDED.value",
        (metric, record_type, n),
    )


def failure(
    conn: psycopg.Connection[Any],
    schema: str,
    kind: str,
    error: str,
    record_type: str = "",
    infno: str | None = None,
    msgid: str | None = None,
) -> None:
    """One failed request: today's `failures` counter and a timed row (in the caller's transaction)."""
    bump(conn, schema, "failures", record_type)
    conn.execute(
        f"INSERT INTO {table(schema, 'hipgate_failure')} (kind, record_type, infno, msgid, error)"
        " VALUES (%s, %s, %s, %s, %s)",
        (kind, record_type, infno, msgid, error[:2000]),
    )


def run_started(conn: psycopg.Connection[Any], schema: str, kind: str) -> int:
    """A run's row, committed before it does anything (so a killed run shows as interrupted)."""
    (run_id,) = conn.execute(
        f"INSERT INTO {table(schema, 'hipgate_run')} (kind) VALUES (%s) RETURNING id", (kind,)
    ).fetchone()  # type: ignore[misc]
    conn.commit()
    return int(run_id)


def run_finished(
    conn: psycopg.Connection[Any], schema: str, run_id: int, status: str, exit_code: int, summary: Any = None
) -> None:
    conn.rollback()
    conn.execute(
        f"UPDATE {table(schema, 'hipgate_run')} SET finished_at = clock_timestamp(), status = %s, exit_code = %s,"
        " summary = %s WHERE id = %s",
        (status, exit_code, Jsonb(summary) if summary is not None else None, run_id),
    )
    conn.commit()


def key_of(rt: RecordType, record: Mapping[str, Any]) -> dict[str, Any]:
    return {code: record.get(code) for code in rt.key}


def quarantine(
    conn: psycopg.Connection[Any],
    schema: str,
    rt: RecordType,
    record: Mapping[str, Any],
    fingerprint: str,
    violations: Iterable[Violation],
    source: str = "incremental",
) -> bool:
    """Quarantine one bad record version (key, reasons zh/en, masked copy); False if it already was."""
    violations = list(violations)
    cur = conn.execute(
        f"INSERT INTO {table(schema, 'hipgate_quarantine')}"
        " (record_type, record_key, fingerprint, reasons_zh, reasons_en, masked, source)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (record_type, record_key, fingerprint) DO NOTHING",
        (
            rt.code,
            Jsonb(key_of(rt, record)),
            fingerprint,
            "\n".join(f"{v.path}: {v.zh}" for v in violations),
            "\n".join(f"{v.path}: {v.en}" for v in violations),
            Jsonb(mask_record(rt, record)),
            source,
        ),
    )
    return cur.rowcount == 1


def merge_violations(*groups: Iterable[Violation]) -> list[Violation]:
    """The dataset's and the document's findings, one per field (the first to name it)."""
    seen: set[str] = set()
    out: list[Violation] = []
    for group in groups:
        for v in group:
            if v.path not in seen:
                seen.add(v.path)
                out.append(v)
    return out


def same_key(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return key_text(a) == key_text(b)
