"""Downloads from the real simulator through the relay: each record stored once, a re-served item stored
once, a crash between store and acknowledgement, the cursor moving only after the acknowledgement."""

from __future__ import annotations

import logging

import psycopg
import pytest

from hipgate.exchange import downloads
from simulator_helpers import admin


class Crash(Exception):
    pass


def _run(stack, conninfo, ds, iface, limit: int = 3, crash=None) -> downloads.DownloadResult:
    ex = stack.exchange(conninfo, ds, iface, crash=crash)
    try:
        return downloads.run(ex, limit=limit)
    finally:
        ex.conn.close()
        ex.client.close()


def _count(conninfo: str, table: str, where: str = "true") -> int:
    with psycopg.connect(conninfo) as conn:
        return conn.execute(f"SELECT count(*) FROM exchange.{table} WHERE {where}").fetchone()[0]


def test_downloads_are_stored_once_and_acknowledged(stack, exchange_db, ds, iface) -> None:
    admin(stack.sim, "POST", "/publish", {"kind": "fee_check_form", "count": 7})
    admin(stack.sim, "POST", "/publish", {"kind": "cross_visit", "count": 4})
    admin(stack.sim, "POST", "/faults", {"kind": "duplicate_ack", "infno": "5201", "count": 1, "items": 2})
    result = _run(stack, exchange_db, ds, iface)
    assert result.errors == [] and result.stored == 11
    assert _count(exchange_db, "fee_check_form") == 7 and _count(exchange_db, "cross_visit_inbox") == 4
    assert _count(exchange_db, "cross_visit") == 0  # never into the upload table, so never sent back
    assert _count(exchange_db, "fee_check_form", "hg_acked_at IS NULL") == 0
    again = _run(stack, exchange_db, ds, iface)
    assert (again.stored, again.acknowledged) == (0, 0)
    outbox = admin(stack.sim, "GET", "/outbox?infno=5201")
    assert outbox and all(item.get("acked_at") or item.get("acknowledged") for item in outbox), outbox[:1]


def test_a_crash_between_store_and_ack_stores_nothing_twice(stack, exchange_db, ds, iface) -> None:
    admin(stack.sim, "POST", "/publish", {"kind": "fee_check_form", "count": 5})

    def crash(point: str) -> None:
        if point == "stored":
            raise Crash(point)

    with pytest.raises(Crash):
        _run(stack, exchange_db, ds, iface, crash=crash)
    assert _count(exchange_db, "fee_check_form") == 3
    assert _count(exchange_db, "hipgate_download_page", "acked_at IS NULL") == 1
    assert _count(exchange_db, "hipgate_download_cursor", "infno = '5201'") == 0  # not moved before the ack
    result = _run(stack, exchange_db, ds, iface)
    assert result.errors == [] and _count(exchange_db, "fee_check_form") == 5
    assert _count(exchange_db, "fee_check_form", "hg_acked_at IS NULL") == 0
    assert _count(exchange_db, "hipgate_download_page", "acked_at IS NULL") == 0


def test_anomalies_go_to_the_journal_and_the_day_counter(stack, exchange_db, ds, iface, caplog) -> None:
    from hipgate.exchange.downloads import journal_anomaly

    rt = ds.records["anomaly"]
    with caplog.at_level(logging.WARNING, logger="hipgate.exchange.anomaly"):
        journal_anomaly({"ano_id": "A1", "ano_type": "x", "rec_key": '{"setl_id":"S1"}'}, rt)
    line = caplog.records[-1].getMessage()
    assert line.startswith("hipgate-anomaly {") and '"ano_id": "A1"' in line and '"event": "anomaly"' in line
