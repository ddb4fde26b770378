"""The incremental upload against the real simulator through the real relay: new and changed rows exactly
once, the xmin horizon (same cursor, late commit with an older updt_time), crashes between outbox and
send and between send and record, quarantine, and a platform that cannot be reached."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from helpers_mw import insert_setl, outbox, platform_summary, source_summary

from hipgate.exchange import incremental
from hipgate.exchange.platform_client import Unreachable
from simulator_helpers import admin, setl_record


class Crash(Exception):
    pass


def crash_at(point: str):
    def hook(name: str) -> None:
        if name == point:
            raise Crash(point)

    return hook


def _write(conninfo: str, *records: dict[str, Any]) -> None:
    with psycopg.connect(conninfo) as conn:
        for r in records:
            insert_setl(conn, r)


def _run(stack, conninfo, ds, iface, **kw) -> incremental.RunResult:
    ex = stack.exchange(conninfo, ds, iface, **kw)
    try:
        return incremental.run(ex)
    finally:
        ex.conn.close()
        ex.client.close()


def test_new_and_changed_rows_are_carried_exactly_once(stack, exchange_db, ds, iface) -> None:
    _write(exchange_db, *(setl_record(n) for n in range(1, 6)))
    first = _run(stack, exchange_db, ds, iface, batch_size=2)
    assert (first.queued, first.messages, first.accepted, first.errors) == (5, 3, 5, [])
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    with psycopg.connect(exchange_db) as conn:  # a changed record and a changed item
        conn.execute("UPDATE exchange.setl SET fixmedins_name = '改名医院', updt_time = '2024-03-06 08:00:00'"
                     " WHERE setl_id = %s", (setl_record(2)["setl_id"],))  # fmt: skip
        conn.execute("UPDATE exchange.setl SET updt_time = '2024-03-06 08:00:00' WHERE setl_id = %s",
                     (setl_record(3)["setl_id"],))  # fmt: skip
        conn.execute("UPDATE exchange.setl_item SET medins_list_codg = 'YP002' WHERE setl_id = %s",
                     (setl_record(3)["setl_id"],))  # fmt: skip
        conn.execute("UPDATE exchange.setl SET setl_id = setl_id WHERE setl_id = %s", (setl_record(4)["setl_id"],))
    second = _run(stack, exchange_db, ds, iface)
    # Record 4 was "updated" without a change: captured, but its version is the one the platform holds.
    assert (second.queued, second.accepted, second.unchanged) == (2, 2, 1)
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    third = _run(stack, exchange_db, ds, iface)
    assert (third.queued, third.messages) == (0, 0)
    totals = stack.sim.summary()["totals"]["setl"]
    assert totals["records"] == 5 and totals["duplicates_received"] == 0
    with psycopg.connect(exchange_db) as conn:
        lag = conn.execute("SELECT count(*), min(lag_max_s) >= 0 FROM exchange.hipgate_lag_sample").fetchone()
        metrics = dict(conn.execute("SELECT metric, sum(value) FROM exchange.hipgate_metric_day GROUP BY 1").fetchall())
        envelopes = conn.execute("SELECT count(*) FROM exchange.hipgate_outbox WHERE envelope IS NOT NULL").fetchone()
    assert lag == (4, True) and metrics["accepted"] == 7 and metrics["messages"] == 4
    assert envelopes == (0,)  # acknowledged messages keep no records


def test_same_cursor_value_across_batches_is_neither_missed_nor_doubled(stack, exchange_db, ds, iface) -> None:
    same = "2024-03-05 12:00:00"
    _write(exchange_db, *(setl_record(n, updt_time=same) for n in range(10, 17)))
    result = _run(stack, exchange_db, ds, iface, batch_size=3)
    assert (result.accepted, result.messages) == (7, 3)
    _write(exchange_db, *(setl_record(n, updt_time=same) for n in range(17, 19)))
    assert _run(stack, exchange_db, ds, iface, batch_size=3).accepted == 2
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)


def test_a_late_commit_with_an_older_updt_time_is_carried(stack, exchange_db, ds, iface) -> None:
    older = psycopg.connect(exchange_db)
    younger = psycopg.connect(exchange_db)
    try:
        # The older transaction writes first (older xid) and stays open while a younger one commits.
        insert_setl(older, setl_record(20, updt_time="2024-03-05 09:00:00"))
        insert_setl(younger, setl_record(21, updt_time="2024-03-05 11:00:00"))
        younger.commit()
        blocked = _run(stack, exchange_db, ds, iface)
        assert blocked.queued == 0  # nothing past the horizon of the still-running older transaction
        # A third transaction starting after the younger's commit writes an even older updt_time.
        late = psycopg.connect(exchange_db)
        insert_setl(late, setl_record(22, updt_time="2024-03-05 08:00:00"))
        older.commit()
        sent = _run(stack, exchange_db, ds, iface)
        assert sent.accepted == 2  # 20 and 21; 22 is still running
        late.commit()
        late.close()
        after = _run(stack, exchange_db, ds, iface)
        assert after.accepted == 1  # an updt_time cursor would have skipped it: it is older than what was sent
    finally:
        older.close()
        younger.close()
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    assert stack.sim.summary()["totals"]["setl"]["duplicates_received"] == 0


@pytest.mark.parametrize("point", ["outbox_stored", "sent"])
def test_a_crash_loses_and_duplicates_nothing(stack, exchange_db, ds, iface, point: str) -> None:
    _write(exchange_db, *(setl_record(n) for n in range(30, 34)))
    with pytest.raises(Crash):
        _run(stack, exchange_db, ds, iface, crash=crash_at(point))
    before = outbox(exchange_db)
    assert len(before) == 1 and before[0]["status"] == "pending"
    again = _run(stack, exchange_db, ds, iface)
    after = outbox(exchange_db)
    # The same message, same msgid: processed once by the platform (replayed after the crash at "sent").
    assert [m["msgid"] for m in after] == [before[0]["msgid"]] and after[0]["status"] == "acked"
    assert again.accepted == 4 and again.queued == 0
    outcomes = [r["outcome"] for r in stack.sim.requests() if r["infno"] == "4101"]
    assert outcomes == (["processed", "replayed"] if point == "sent" else ["processed"])
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)


def test_bad_records_are_quarantined_with_reasons_masked_and_never_sent(stack, exchange_db, ds, iface) -> None:
    bad = setl_record(40) | {"gend": "7"}
    bad["setl_item"][1]["med_chrgitm_type"] = "ZZ"
    _write(exchange_db, bad, setl_record(41))
    result = _run(stack, exchange_db, ds, iface)
    assert (result.quarantined, result.accepted) == (1, 1)
    with psycopg.connect(exchange_db) as conn:
        key, zh, en, masked = conn.execute(
            "SELECT record_key, reasons_zh, reasons_en, masked FROM exchange.hipgate_quarantine"
            " WHERE resolved_at IS NULL"
        ).fetchone()
        state = conn.execute(
            "SELECT status FROM exchange.hipgate_record_state"
            " WHERE record_key = jsonb_build_object('setl_id', %s::text)",
            (bad["setl_id"],),
        ).fetchone()
    assert key == {"setl_id": bad["setl_id"]} and state == ("quarantined",)
    assert "gend" in en and "setl_item[1].med_chrgitm_type" in en and "gend" in zh and "代码集" in zh
    assert masked["psn_name"] == "***" and masked["certno"] == "***" and masked["setl_id"] == bad["setl_id"]
    assert "张三" not in zh + en + str(masked)
    assert source_summary(exchange_db, ds, exclude={bad["setl_id"]}) == platform_summary(stack.sim)
    with psycopg.connect(exchange_db) as conn:  # fixed at the source: sent, and the quarantine resolved
        conn.execute("UPDATE exchange.setl SET gend = '1' WHERE setl_id = %s", (bad["setl_id"],))
        conn.execute("UPDATE exchange.setl_item SET med_chrgitm_type = '09' WHERE setl_id = %s", (bad["setl_id"],))
    assert _run(stack, exchange_db, ds, iface).accepted == 1
    with psycopg.connect(exchange_db) as conn:
        open_ = conn.execute("SELECT count(*) FROM exchange.hipgate_quarantine WHERE resolved_at IS NULL").fetchone()
    assert open_ == (0,) and platform_summary(stack.sim) == source_summary(exchange_db, ds)


def test_an_unreachable_platform_leaves_everything_pending(stack, exchange_db, ds, iface) -> None:
    _write(exchange_db, setl_record(50))
    admin(stack.sim, "POST", "/faults", {"kind": "http_503", "infno": "4101", "count": 10, "retry_after": 1})
    with pytest.raises(Unreachable) as err:
        _run(stack, exchange_db, ds, iface)
    assert "不可达" in err.value.zh and "pending" in err.value.en
    pending = outbox(exchange_db)
    assert [m["status"] for m in pending] == ["pending"] and "503" in pending[0]["last_error"]
    admin(stack.sim, "DELETE", "/faults")
    assert _run(stack, exchange_db, ds, iface).accepted == 1
    assert [m["msgid"] for m in outbox(exchange_db)] == [pending[0]["msgid"]]


def _cli_config(stack, conninfo: str, tmp_path) -> Any:
    import json

    path = tmp_path / "middleware.json"
    path.write_text(json.dumps({
        "sender_code": "44000001",
        "database": {"conninfo": conninfo},
        "relay": {"url": f"https://127.0.0.1:{stack.relay_port}", "ca": str(stack.ca.path),
                  "cert": str(stack.client_cert[0]), "key": str(stack.client_cert[1]), "timeout": 60},
        "retry": {"attempts": 100, "base": 0.1, "cap": 0.2},
    }))  # fmt: skip
    return path


@pytest.mark.parametrize("when", ["before_send", "before_record"])
def test_kill_9_of_a_run_loses_and_duplicates_nothing(stack, exchange_db, ds, iface, tmp_path, when: str) -> None:
    import os
    import signal
    import subprocess
    import sys

    from simulator_helpers import wait_until

    _write(exchange_db, *(setl_record(n) for n in range(60, 64)))
    if when == "before_send":  # the platform answers 503: the run keeps retrying the stored message
        admin(stack.sim, "POST", "/faults", {"kind": "http_503", "infno": "4101", "count": 10_000, "retry_after": 1})
    else:  # the platform processes the message and holds the reply back
        admin(stack.sim, "POST", "/faults", {"kind": "slow", "infno": "4101", "count": 1, "delay": 8})
    command = [sys.executable, "-m", "hipgate.exchange.run", "incremental", "--config"]
    with (tmp_path / "run.log").open("w") as err:
        proc = subprocess.Popen([*command, str(_cli_config(stack, exchange_db, tmp_path))], stderr=err)
    try:
        wanted = {"processed"} if when == "before_record" else None  # before_send: any answer (503s)
        assert wait_until(
            lambda: any(
                r["infno"] == "4101" and (wanted is None or r["outcome"] in wanted) for r in stack.sim.requests()
            )
        )
        stored = outbox(exchange_db)
        assert [m["status"] for m in stored] == ["pending"]
        os.kill(proc.pid, signal.SIGKILL)  # by the PID of the run this test started
    finally:
        proc.kill()  # a no-op after the SIGKILL above; stops it if an assertion failed first
        proc.wait(timeout=30)
    admin(stack.sim, "DELETE", "/faults")
    result = _run(stack, exchange_db, ds, iface)
    assert result.accepted == 4 and result.queued == 0
    assert [m["msgid"] for m in outbox(exchange_db)] == [stored[0]["msgid"]]
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    assert stack.sim.summary()["totals"]["setl"]["duplicates_received"] == 0
