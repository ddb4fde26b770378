"""The ledger, the shared fingerprint, the config, fault specs and determinism, without a server."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hipgate.exchange.fingerprint import record_fingerprint, summarise, summarise_records
from hipgate.simulator import publish
from hipgate.simulator.config import ConfigError, load_config
from hipgate.simulator.context import Env, now_cst, secret_of
from hipgate.simulator.faults import FaultBook, FaultSpecError, parse_spec
from hipgate.simulator.ledger import Ledger, ledger_summary, reverse_record, store_record
from hipgate.simulator.outbox import CursorError, make_cursor, read_cursor
from simulator_helpers import contract, person_record, setl_record, write_config

KEY = ("setl_id",)


def store(conn: Any, record: dict[str, Any]) -> str:
    return store_record(conn, "setl", KEY, "setl_time", record, at="2025-01-01 00:00:00", sender_code="44000001").result


def test_fingerprint_ignores_nulls_and_item_order_but_not_content() -> None:
    a = setl_record(1, items=3)
    b = json.loads(json.dumps(a))
    b["setl_item"].reverse()
    b["enddate"] = None
    del a["enddate"]
    assert record_fingerprint(a) == record_fingerprint(b)
    c = dict(a, psn_cash_pay="20.01")
    assert record_fingerprint(c) != record_fingerprint(a)


def test_summary_counts_days_and_sees_duplicates_and_changes() -> None:
    recs = [setl_record(i, day=f"2024-03-0{1 + i % 3}") for i in range(30)]
    base = summarise_records("setl", recs, "setl_time")
    shuffled = recs[:]
    random.Random(1).shuffle(shuffled)
    assert summarise_records("setl", shuffled, "setl_time") == base
    assert [(d.day, d.count) for d in base] == [("2024-03-01", 10), ("2024-03-02", 10), ("2024-03-03", 10)]
    assert summarise_records("setl", [*recs, recs[0]], "setl_time") != base  # a duplicate
    assert summarise_records("setl", recs[1:], "setl_time") != base  # one missing
    assert summarise([]) == []


def test_store_record_by_key_and_updt_time(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    with ledger.tx() as conn:
        assert store(conn, setl_record(1)) == "accepted"
        assert store(conn, setl_record(1)) == "duplicate"
        assert store(conn, setl_record(1, updt_time="2024-03-04 00:00:00")) == "rejected"
        assert store(conn, setl_record(1, updt_time="2024-03-06 00:00:00")) == "accepted"
        assert store(conn, setl_record(2)) == "accepted"
        assert reverse_record(conn, "setl", {"setl_id": "S0000000002"}, "drill", "2025-01-01 00:00:00") == "reversed"
        summary = ledger_summary(conn)
    assert summary["totals"]["setl"] == {"records": 1, "reversed": 1, "duplicates_received": 1, "versions_replaced": 1}
    # The ledger's day summary is the source's for what the platform holds: the later version of record 1.
    held = [setl_record(1, updt_time="2024-03-06 00:00:00")]
    assert summary["days"] == [d.as_dict() for d in summarise_records("setl", held, "setl_time")]
    ledger.close()


def test_ledger_summary_cli_reads_a_state_directory(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state")
    with ledger.tx() as conn:
        for i in range(5):
            store(conn, setl_record(i))
        store_record(conn, "test_psn", ("psn_no",), "updt_time", person_record(1), at="x", sender_code=None)
    ledger.close()
    run = [sys.executable, "-m", "hipgate.simulator", "ledger-summary", "--state-dir", str(tmp_path / "state")]
    first = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert first == second
    out = json.loads(first)
    assert [(d["record_type"], d["day"], d["count"]) for d in out["days"]] == [
        ("setl", "2024-03-05", 5), ("test_psn", "2025-01-02", 1),
    ]  # fmt: skip
    missing = subprocess.run([*run[:-1], str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no ledger" in missing.stderr


def test_config_refusals(tmp_path: Path) -> None:
    path, _ = write_config(tmp_path)
    assert load_config(path).admin_host == "127.0.0.1"
    for i, (overrides, words) in enumerate(
        (
            ({"admin": {"host": "0.0.0.0", "port": 9000}}, "loopback"),
            ({"listen": {"host": "127.0.0.1", "port": 70000}}, "port"),
            ({"anomaly_share": 2}, "anomaly_share"),
            ({"surprise": 1}, "unknown"),
            (
                {"senders": [{"sender_code": "4400001", "cainfo": "AA", "signtype": "SM2", "public": "x"}]},
                "sender_code",
            ),
            ({"signing": {"signtype": "RSA", "key": "k", "cainfo": "AA"}}, "signtype"),
        )
    ):
        sub = tmp_path / f"bad{i}"
        sub.mkdir()
        bad, _ = write_config(sub, **overrides)
        with pytest.raises(ConfigError, match=words):
            load_config(bad)


def test_fault_specs_and_book() -> None:
    clock = [100.0]
    book = FaultBook(clock=lambda: clock[0])
    spec = parse_spec({"kind": "http_503", "infno": "4101", "count": 2}, default_retry_after=4)
    assert spec["params"] == {"retry_after": 4}
    fault = book.arm(spec)
    assert book.take("transport", "5201", None) is None
    assert book.take("transport", "4101", "m1") is fault
    assert book.take("reply", "4101", "m2") is None  # another stage
    assert book.take("transport", "4101", "m3") is fault
    assert book.take("transport", "4101", "m4") is None
    window = book.arm(parse_spec({"kind": "slow", "seconds": 5, "delay": 0.5}, 1))
    assert book.take("reply", "1301", None) is window
    clock[0] += 6
    assert book.take("reply", "1301", None) is None
    assert parse_spec({"kind": "http_500"}, 1)["count"] == 1  # default: the next request only
    with pytest.raises(FaultSpecError):
        parse_spec({"kind": "duplicate_ack", "infno": "4101"}, 1)
    assert [f["active"] for f in book.listing()] == [False, False]


def test_cursors_are_bound_to_transaction_and_scope() -> None:
    secret = secret_of(1)
    cursor = make_cursor(secret, "5201", 42)
    assert read_cursor(secret, "5201", cursor) == 42
    for bad in (cursor.replace("42", "43"), make_cursor(secret_of(2), "5201", 42), "5201~42", "junk"):
        with pytest.raises(CursorError):
            read_cursor(secret, "5201", bad)
    with pytest.raises(CursorError):
        read_cursor(secret, "5401", cursor)
    with pytest.raises(CursorError):
        read_cursor(secret, "1301", make_cursor(secret, "1301", 1, "med_list"), "gend")


def _env(tmp_path: Path, seed: int) -> Env:
    path, _ = write_config(tmp_path, seed=seed)
    cfg = load_config(path)
    return Env(cfg, contract(), Ledger(cfg.state_dir), FaultBook(), cfg.state_dir / "uploads", secret_of(seed))


def _without_times(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    times = {"issu_time", "updt_time", "detc_time", "fdbk_enddate"}
    return [{k: v for k, v in item.items() if k not in times} for item in items]


def test_generated_content_follows_the_seed(tmp_path: Path) -> None:
    made = []
    for i, seed in enumerate((5, 5, 6)):
        env = _env(tmp_path / str(i), seed)
        with env.ledger.tx() as conn:
            for n in range(20):
                store(conn, setl_record(n))
            made.append(
                (_without_times(publish.fee_check_forms(env, conn, 4, now_cst())),
                 _without_times(publish.cross_visits(env, conn, 4, now_cst())),
                 [publish.anomaly_for(env, "setl", setl_record(n), {"setl_id": f"S{n:010d}"}, now_cst()) is not None
                  for n in range(300)])
            )  # fmt: skip
        env.ledger.close()
    assert made[0] == made[1]
    assert made[0] != made[2]
    share = sum(made[0][2]) / 300
    assert 0.0 < share < 0.08
    for form in made[0][0]:
        assert form["setl_id"].startswith("S00000000")  # about settlements the platform holds
    env = _env(tmp_path / "valid", 5)
    with env.ledger.tx() as conn:
        generated = {"cross_visit": publish.cross_visits(env, conn, 20, now_cst()),
                     "fee_check_form": publish.fee_check_forms(env, conn, 20, now_cst())}  # fmt: skip
    env.ledger.close()
    for record_type, items in generated.items():  # what the platform publishes conforms to the dataset
        assert [contract().record_problem(record_type, item) for item in items] == [None] * 20
