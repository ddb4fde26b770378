"""Faults armed through the control API fire exactly as configured (count, window, transaction), are
listed with what they did, then stop; and a fault never loses what the platform accepted."""

from __future__ import annotations

import socket
import time
import urllib.error
from typing import Any

import pytest

from simulator_helpers import Client, admin, running, setl_record, signed_client, wait_until


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from running(tmp_path_factory.mktemp("sim"), anomaly_share=0.0)


@pytest.fixture
def client(sim: Any) -> Any:
    admin(sim[0], "DELETE", "/faults")  # each test starts with no fault armed
    yield from signed_client(sim, timeout=10)


def arm(sim: Any, **spec: Any) -> dict[str, Any]:
    return admin(sim[0], "POST", "/faults", spec)


def fired(sim: Any, fault: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in admin(sim[0], "GET", "/faults") if f["id"] == fault["id"])


def test_http_errors_fire_count_times_on_their_transaction_only(sim: Any, client: Client) -> None:
    fault = arm(sim, kind="http_500", infno="5201", count=2)
    assert client.call("4101", {"record_type": "setl", "records": [setl_record(1)]}).status == 200
    replies = [client.call("5201", {"limit": 1}) for _ in range(3)]
    assert [r.status for r in replies] == [500, 500, 200]
    assert [r.json["infcode"] for r in replies[:2]] == [-9999, -9999]
    state = fired(sim, fault)
    assert len(state["fired"]) == 2 and not state["active"]
    assert {e["infno"] for e in state["fired"]} == {"5201"} and all(e["msgid"] for e in state["fired"])


@pytest.mark.parametrize(("kind", "status", "infcode"), [("http_503", 503, -9002), ("http_429", 429, -9001)])
def test_retry_after(sim: Any, client: Client, kind: str, status: int, infcode: int) -> None:
    arm(sim, kind=kind, retry_after=7)
    reply = client.call("5401", {"limit": 1})
    assert (reply.status, reply.json["infcode"], reply.headers["Retry-After"]) == (status, infcode, "7")
    assert client.call("5401", {"limit": 1}).status == 200


def test_window_in_seconds(sim: Any, client: Client) -> None:
    fault = arm(sim, kind="http_503", seconds=1.0)
    statuses = [client.call("1301", {"limit": 1}).status for _ in range(3)]
    assert statuses == [503, 503, 503]
    time.sleep(1.1)
    assert client.call("1301", {"limit": 1}).status == 200
    assert len(fired(sim, fault)["fired"]) == 3


def test_slow_reply(sim: Any, client: Client) -> None:
    arm(sim, kind="slow", delay=1.0, infno="1301")
    t0 = time.monotonic()
    assert client.call("1301", {"limit": 1}).status == 200
    assert time.monotonic() - t0 >= 1.0
    t0 = time.monotonic()
    client.call("1301", {"limit": 1})
    assert time.monotonic() - t0 < 1.0


def test_lost_reply_is_processed_once_and_replayed(sim: Any, client: Client) -> None:
    fault = arm(sim, kind="lost_reply", infno="4101")
    msg = client.envelope("4101", {"record_type": "setl", "records": [setl_record(50)]})
    with pytest.raises((ConnectionError, OSError)):
        client.post("4101", msg)
    again = client.post("4101", msg)  # the middleware resends the same message
    assert again.status == 200 and again.json["output"]["results"][0]["result"] == "accepted"
    assert again.json["inf_refmsgid"] == msg["msgid"]
    assert "not sent" in fired(sim, fault)["fired"][0]["detail"]
    outcomes = [r["outcome"] for r in admin(sim[0], "GET", "/requests") if r["msgid"] == msg["msgid"]]
    assert outcomes == ["processed", "replayed"]


def test_reset_mid_body_processes_nothing(sim: Any, client: Client) -> None:
    fault = arm(sim, kind="reset", infno="4101", after_bytes=100)
    before = admin(sim[0], "GET", "/ledger/summary")
    with pytest.raises((ConnectionError, OSError)):
        client.call("4101", {"record_type": "setl", "records": [setl_record(60)]})
    assert admin(sim[0], "GET", "/ledger/summary")["totals"] == before["totals"]
    assert fired(sim, fault)["fired"][0]["detail"].startswith("connection reset after 100 of ")
    assert client.call("4101", {"record_type": "setl", "records": [setl_record(60)]}).status == 200


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_down_for_a_while_then_back(sim: Any, client: Client) -> None:
    simulator = sim[0]
    port = simulator.platform.port
    assert client.call("5201", {"limit": 1}).status == 200  # a kept-alive connection, cut by the fault
    fault = arm(sim, kind="down", seconds=1.5)
    assert _refused(port)
    assert admin(simulator, "GET", "/health")["listening"] is False
    with pytest.raises((ConnectionError, OSError)):
        client.call("5201", {"limit": 1})
    assert wait_until(lambda: not _refused(port), timeout=10)
    assert client.call("5201", {"limit": 1}).status == 200
    events = [e["event"] for e in fired(sim, fault)["fired"]]
    assert events == ["down", "up"]


def test_fault_api_refuses_nonsense_and_cancels(sim: Any, client: Client) -> None:
    nonsense = [
        {"kind": "meteor"},
        {"kind": "checksum", "infno": "4101"},
        {"kind": "http_500", "count": 0},
        {"kind": "down"},
        {"kind": "slow", "retry_after": 3},
        {"kind": "http_500", "infno": "41"},
    ]
    for spec in nonsense:
        with pytest.raises(urllib.error.HTTPError) as err:
            admin(sim[0], "POST", "/faults", spec)
        assert err.value.code == 400
    fault = arm(sim, kind="http_500", count=5)
    assert admin(sim[0], "DELETE", f"/faults/{fault['id']}") == {"cancelled": 1}
    assert client.call("5201", {"limit": 1}).status == 200
    assert fired(sim, fault)["fired"] == []


def test_faults_lose_nothing(sim: Any, client: Client) -> None:
    """A sender that retries whatever went wrong (same msgid) ends with every record held once."""
    arm(sim, kind="http_503", infno="4101", count=2)
    arm(sim, kind="lost_reply", infno="4101", count=2)
    arm(sim, kind="reset", infno="4101", count=1)
    batches = [[setl_record(100 + b * 10 + i) for i in range(10)] for b in range(5)]
    for batch in batches:
        msg = client.envelope("4101", {"record_type": "setl", "records": batch})
        for _ in range(10):
            try:
                reply = client.post("4101", msg)
            except (ConnectionError, OSError):
                continue
            if reply.status == 200:
                assert {r["result"] for r in reply.json["output"]["results"]} == {"accepted"}
                break
        else:
            pytest.fail("never accepted")
    held = {d["day"]: d["count"] for d in admin(sim[0], "GET", "/ledger/summary")["days"]}
    assert sum(held.values()) >= 50
    totals = admin(sim[0], "GET", "/ledger/summary")["totals"]["setl"]
    assert totals["duplicates_received"] == 0
