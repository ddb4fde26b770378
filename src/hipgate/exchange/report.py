"""The exchange's report for a range of days (China Standard Time), read from the bookkeeping tables:
`python -m hipgate.exchange.run report --from D --to D` prints it as JSON; `hipgate exchange report`
renders it (report_render) on the control node.

Per day and in total:
- records: changes captured, sent, and the platform's verdicts (accepted, duplicate, rejected), quarantined;
  messages acknowledged; history files completed and chunks confirmed; downloaded records and those
  acknowledged; anomalies received; failed requests (the day counters, hipgate_metric_day);
- lag percentiles over the records acknowledged that day: p50 and p99 are nearest-rank percentiles
  (`percentile_disc`: the smallest lag that at least 50 % / 99 % of the records did not exceed), from each
  record's own lag (hipgate_lag_sample.lags_s); a sample from before that column counts as `records`
  records of its mean lag. The maximum is the largest lag_max_s;
- availability: of the runs that started that day (hipgate_run) and have an outcome, the share that ended
  with exit code 0. A run that is still `running` while a later run of its kind has started was
  interrupted and counts as failed; the newest one of its kind still running has no outcome yet.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from hipgate.exchange.bookkeeping import METRICS, RUN_KINDS
from hipgate.exchange.ledger import table
from hipgate.exchange.status import iso, snapshot

MAX_DAYS = 366
FAILED_RUNS = ("refused", "unreachable", "error")


def days_between(date_from: dt.date, date_to: dt.date) -> list[dt.date]:
    """Every day of the range; a ValueError (zh/en) when it is reversed or longer than MAX_DAYS."""
    if date_to < date_from:
        raise ValueError(f"起始日期晚于结束日期 / the start date {date_from} is after the end date {date_to}")
    n = (date_to - date_from).days + 1
    if n > MAX_DAYS:
        raise ValueError(f"范围超过 {MAX_DAYS} 天 / the range is longer than {MAX_DAYS} days ({n})")
    return [date_from + dt.timedelta(days=i) for i in range(n)]


def _empty() -> dict[str, Any]:
    return {
        **dict.fromkeys(METRICS, 0),
        "lag_records": 0, "lag_p50_s": None, "lag_p99_s": None, "lag_max_s": None,
        "runs": 0, "runs_ok": 0, "runs_failed": 0, "runs_running": 0, "availability": None,
    }  # fmt: skip


def _counters(conn: psycopg.Connection[Any], schema: str, lo: dt.date, hi: dt.date) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"SELECT day, metric, record_type, sum(value) FROM {table(schema, 'hipgate_metric_day')}"
        " WHERE day BETWEEN %s AND %s GROUP BY 1, 2, 3",
        (lo, hi),
    ).fetchall()


def _lags(conn: psycopg.Connection[Any], schema: str, lo: dt.date, hi: dt.date, per_day: bool) -> list[Any]:
    """(day or None, records, p50, p99, max) from the per-record lags (or a mean standing for its records)."""
    key = "day" if per_day else "NULL::date"
    group = "GROUP BY 1" if per_day else ""
    samples = table(schema, "hipgate_lag_sample")
    return conn.execute(
        f"SELECT {key}, count(*), percentile_disc(0.5) WITHIN GROUP (ORDER BY s),"
        " percentile_disc(0.99) WITHIN GROUP (ORDER BY s),"
        f" (SELECT max(lag_max_s) FROM {samples} m WHERE m.day BETWEEN %s AND %s"
        + (" AND m.day = x.day)" if per_day else ")")
        + " FROM (SELECT day, unnest(coalesce(lags_s, array_fill(lag_avg_s, ARRAY[records]))) AS s"
        f" FROM {samples} WHERE day BETWEEN %s AND %s) x {group}",
        (lo, hi, lo, hi),
    ).fetchall()


def _runs(conn: psycopg.Connection[Any], schema: str, lo: dt.date, hi: dt.date) -> list[tuple[Any, ...]]:
    """(day, kind, outcome) of every run that started in the range; outcome ok, failed or running."""
    runs = table(schema, "hipgate_run")
    return conn.execute(
        "SELECT (r.started_at AT TIME ZONE 'Asia/Shanghai')::date, r.kind, CASE"
        " WHEN r.status = 'ok' THEN 'ok' WHEN r.status = ANY(%s) THEN 'failed'"
        f" WHEN EXISTS (SELECT 1 FROM {runs} l WHERE l.kind = r.kind AND l.started_at > r.started_at) THEN 'failed'"
        f" ELSE 'running' END FROM {runs} r"
        " WHERE (r.started_at AT TIME ZONE 'Asia/Shanghai')::date BETWEEN %s AND %s",
        (list(FAILED_RUNS), lo, hi),
    ).fetchall()


def _add_runs(row: dict[str, Any], outcome: str) -> None:
    row["runs_" + outcome] += 1
    if outcome != "running":
        row["runs"] += 1
    row["availability"] = round(row["runs_ok"] / row["runs"], 6) if row["runs"] else None


def _set_lag(row: dict[str, Any], n: int, p50: Any, p99: Any, top: Any) -> None:
    row.update(lag_records=n, lag_p50_s=_r(p50), lag_p99_s=_r(p99), lag_max_s=_r(top))


def _r(value: Any) -> float | None:
    return round(float(value), 3) if value is not None else None


def report(conn: psycopg.Connection[Any], schema: str, date_from: dt.date, date_to: dt.date) -> dict[str, Any]:
    """The report of [date_from, date_to] (see the module's docstring); days without activity are zeros."""
    days = days_between(date_from, date_to)
    rows = {d: {"day": d.isoformat(), **_empty()} for d in days}
    totals = _empty()
    by_type: dict[str, dict[str, int]] = {}
    runs_by_kind = {k: {"runs": 0, "runs_ok": 0, "runs_failed": 0, "runs_running": 0, "availability": None}
                    for k in RUN_KINDS}  # fmt: skip
    with snapshot(conn):
        (now,) = conn.execute("SELECT now()").fetchone()  # type: ignore[misc]
        for day, metric, rt, value in _counters(conn, schema, date_from, date_to):
            rows[day][metric] += int(value)
            totals[metric] += int(value)
            if rt:
                by_type.setdefault(rt, dict.fromkeys(METRICS, 0))[metric] += int(value)
        for day, n, p50, p99, top in _lags(conn, schema, date_from, date_to, per_day=True):
            _set_lag(rows[day], n, p50, p99, top)
        for _day, n, p50, p99, top in _lags(conn, schema, date_from, date_to, per_day=False):
            _set_lag(totals, n, p50, p99, top)
        for day, kind, outcome in _runs(conn, schema, date_from, date_to):
            for row in (rows[day], totals, runs_by_kind[kind]):
                _add_runs(row, outcome)
    return {
        "from": date_from.isoformat(),
        "to": date_to.isoformat(),
        "generated_at": iso(now),
        "days": list(rows.values()),
        "totals": totals,
        "by_record_type": dict(sorted(by_type.items())),
        "runs_by_kind": runs_by_kind,
    }
