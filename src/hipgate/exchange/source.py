"""What the platform should hold of a region-year (or of everything), from the exchange database: the counts
and fingerprints per day and record type of every record the dataset accepts (a refused record is quarantined,
never sent), in the form the simulator's `ledger-summary` gives, so the two can be compared record for record."""

from __future__ import annotations

from typing import Any

from hipgate.exchange.dataset import validate_record
from hipgate.exchange.fingerprint import record_day, record_fingerprint, summarise
from hipgate.exchange.history import history_types, region_year_records
from hipgate.exchange.incremental import Exchange


def source_summary(ex: Exchange, region: str | None = None, year: int | None = None) -> dict[str, Any]:
    """{"days": [{record_type, day, count, fingerprint}], "refused": {record_type: n}} of one region-year, or
    of every record where region and year are None (the platform's whole ledger), streamed (one
    REPEATABLE READ snapshot, server-side cursors: memory does not grow with the year)."""
    ex.conn.commit()
    ex.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    rows: list[tuple[str, str, str]] = []
    refused: dict[str, int] = {}
    try:
        for rt in history_types(ex):
            for record in region_year_records(ex, rt, region, year):
                if validate_record(rt, record, ex.ds):
                    refused[rt.code] = refused.get(rt.code, 0) + 1
                    continue
                rows.append((rt.code, record_day(record, rt.year or ""), record_fingerprint(record)))
    finally:
        ex.conn.rollback()
    return {"days": [d.as_dict() for d in summarise(rows)], "refused": refused}
