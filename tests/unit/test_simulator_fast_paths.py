"""The simulator's batched ledger writes (issue 17 item 4) leave the ledger as record-by-record storing
did: store_records of a batch gives the results and the rows store_record gives one record at a time,
whatever repeats inside the batch; the one-shot HMAC derives the same ids."""

from __future__ import annotations

import hashlib
import hmac
import random
import sqlite3
from pathlib import Path
from typing import Any

from hipgate.simulator.context import Env, secret_of
from hipgate.simulator.ledger import HELD_LOOKUP, WRITE_ROWS, Ledger, reverse_record, store_record, store_records
from simulator_helpers import setl_record

KEY = ("setl_id",)
AT = "2025-01-01 00:00:00"


def _rows(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute("SELECT * FROM records ORDER BY record_type, rec_key")]


def _tricky(n: int) -> list[dict[str, Any]]:
    """New keys, keys repeated inside the batch with a later, the same or an earlier updt_time, the same
    updt_time with other content, and keys held before the batch (one of them reversed)."""
    rng = random.Random(n)
    out = []
    for _ in range(n):
        k = rng.randrange(n // 3)
        hour = rng.choice((9, 10, 10, 11))
        r = setl_record(k, updt_time=f"2024-03-05 {hour:02d}:00:00", items=1 + k % 3)
        if rng.random() < 0.2:
            r["psn_cash_pay"] = "20.01"  # other content under the same key and time
        out.append(r)
    return out


def _store_all(tmp: Path, batch: bool, before: list[dict[str, Any]], records: list[dict[str, Any]]) -> tuple:
    ledger = Ledger(tmp)
    with ledger.tx() as conn:
        for r in before:
            store_record(conn, "setl", KEY, "setl_time", r, at=AT, sender_code="44000001")
        reverse_record(conn, "setl", {"setl_id": before[0]["setl_id"]}, "撤销 / withdrawn", AT)
    with ledger.tx() as conn:
        if batch:
            results = store_records(conn, "setl", KEY, "setl_time", records, at=AT, sender_code="44000001",
                                    file_qry_no="FQ1")  # fmt: skip
        else:
            results = [store_record(conn, "setl", KEY, "setl_time", r, at=AT, sender_code="44000001",
                                    file_qry_no="FQ1") for r in records]  # fmt: skip
        rows = _rows(conn)
    ledger.close()
    return results, rows


def test_a_batch_is_stored_as_its_records_one_by_one(tmp_path: Path) -> None:
    n = HELD_LOOKUP + WRITE_ROWS * 3 + 7  # several lookups and several insert writes
    records = _tricky(n)
    before = [setl_record(k, updt_time="2024-03-05 10:00:00") for k in (0, 1, 2, n // 3 - 1)]
    one_by_one = _store_all(tmp_path / "one", False, before, records)
    batched = _store_all(tmp_path / "batch", True, before, records)
    assert batched == one_by_one
    results = [s.result for s in batched[0]]
    assert {"accepted", "duplicate", "rejected"} <= set(results), results
    assert any(s.err_msg for s in batched[0] if s.result == "duplicate")  # same time, other content
    assert all(s.rec_key == f'{{"setl_id":"{s.key["setl_id"]}"}}' for s in batched[0])
    assert store_records(sqlite3.connect(":memory:"), "setl", KEY, "setl_time", [], at=AT, sender_code=None) == []


def test_derive_is_the_hmac_it_was() -> None:
    env = Env(None, None, None, None, Path("."), secret_of(17))  # type: ignore[arg-type]
    parts = ("anomaly", "setl", '{"setl_id":"S1"}', "2024-03-05 10:00:00")
    want = hmac.new(secret_of(17), "|".join(map(str, parts)).encode(), hashlib.sha256).hexdigest()
    assert env.derive(*parts) == want
