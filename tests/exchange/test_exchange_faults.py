"""Every fault the simulator injects, against the incremental upload (4101) and the history upload (9102,
9103) through the real relay. Each case ends with the platform holding exactly what the source holds,
nothing received twice, and the armed fault seen to fire as often as it was armed. Last, the relay is killed
with SIGKILL while the platform holds a reply, and started again."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_mw import insert_setl, outbox, platform_summary, source_summary

from hipgate.exchange import downloads, history, incremental
from hipgate.exchange.incremental import Exchange
from hipgate.exchange.platform_client import RelayClient, RetryPolicy, Unreachable
from simulator_helpers import SENDER, admin, setl_record, wait_until

# The client's backoff in these tests: 0.05 s doubling to a 0.5 s cap, 40 attempts (≈ 19 s of waiting).
POLICY = RetryPolicy(attempts=40, base=0.05, cap=0.5)
# `down` lasts 3 s: longer than the cap and than the first four intervals together (0.05+0.1+0.2+0.4).
DOWN_SECONDS = 3.0

# (fault as the control API takes it, without infno; how many firings it must record)
TRANSPORT_AND_REPLY = [
    pytest.param({"kind": "http_500", "count": 2}, 2, id="http_500"),
    pytest.param({"kind": "http_503", "count": 2, "retry_after": 1}, 2, id="http_503"),
    pytest.param({"kind": "http_429", "count": 2, "retry_after": 1}, 2, id="http_429"),
    pytest.param({"kind": "reset", "count": 2}, 2, id="reset"),
    pytest.param({"kind": "slow", "count": 1, "delay": 2}, 1, id="slow"),
    pytest.param({"kind": "lost_reply", "count": 2}, 2, id="lost_reply"),
    pytest.param({"kind": "down", "seconds": DOWN_SECONDS}, 2, id="down"),  # fired: "down", then "up"
]


def _exchange(stack: Any, conninfo: str, ds: Any, iface: Any, **kw: Any) -> Exchange:
    client = RelayClient(f"https://127.0.0.1:{stack.relay_port}", stack.ca.path, *stack.client_cert,
                         timeout=30, policy=POLICY)  # fmt: skip
    return Exchange(psycopg.connect(conninfo), client, ds, iface, SENDER, **kw)


def _close(ex: Exchange) -> None:
    ex.conn.close()
    ex.client.close()


def _fired(stack: Any) -> list[dict[str, Any]]:
    (fault,) = admin(stack.sim, "GET", "/faults")
    return fault["fired"]


def _no_duplicates(stack: Any) -> None:
    totals = stack.sim.summary()["totals"]["setl"]
    assert totals["duplicates_received"] == 0, totals


@pytest.mark.parametrize(("fault", "firings"), TRANSPORT_AND_REPLY)
def test_incremental_upload_survives_every_fault(stack, exchange_db, ds, iface, fault, firings) -> None:
    with psycopg.connect(exchange_db) as conn:
        for n in range(1, 7):
            insert_setl(conn, setl_record(n))
    admin(stack.sim, "POST", "/faults", {**fault, "infno": "4101"} if fault["kind"] != "down" else fault)
    ex = _exchange(stack, exchange_db, ds, iface, batch_size=2)
    try:
        result = incremental.run(ex)
    finally:
        _close(ex)
    assert (result.accepted, result.messages, result.errors) == (6, 3, [])
    fired = _fired(stack)
    assert len(fired) == firings, fired
    if fault["kind"] == "down":
        assert [e["event"] for e in fired] == ["down", "up"]
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    _no_duplicates(stack)
    assert {m["status"] for m in outbox(exchange_db)} == {"acked"}
    outcomes = [r["outcome"] for r in stack.sim.requests() if r["infno"] == "4101"]
    # A lost reply is answered again from the platform's store when the same msgid comes back.
    assert outcomes.count("processed") == 3
    assert outcomes.count("replayed") == (firings if fault["kind"] == "lost_reply" else 0)


CHUNK = 64 << 10
COUNT = 1600


@pytest.fixture
def filled(exchange_db):
    with psycopg.connect(exchange_db) as conn:
        for n in range(1, COUNT + 1):
            noise = hashlib.sha512(str(n).encode()).hexdigest()  # incompressible enough for several chunks
            record = setl_record(n, day=f"2023-0{1 + n % 9}-1{n % 10}")
            insert_setl(conn, record | {"fixmedins_name": "医院" + noise[:100], "dise_name": noise[100:]})
    return exchange_db


def _history_exchange(stack, filled, ds, iface, tmp_path) -> tuple[Exchange, dict[str, Any]]:
    ex = _exchange(stack, filled, ds, iface)
    (f,) = history.export(ex, "440106", 2023, tmp_path / "out", chunk_size=CHUNK).files
    assert f["chunk_count"] >= 3
    return ex, f


def _platform_holds_the_year(stack, filled, ds) -> None:
    assert stack.sim.wait_files(60)
    expected = [d for d in source_summary(filled, ds) if d["day"].startswith("2023")]
    assert platform_summary(stack.sim) == expected
    _no_duplicates(stack)


CHUNK_FAULTS = [
    *TRANSPORT_AND_REPLY,
    pytest.param({"kind": "checksum", "count": 2}, 2, id="checksum"),  # -1301: the chunk is sent again
]


@pytest.mark.parametrize(("fault", "firings"), CHUNK_FAULTS)
def test_history_upload_survives_every_fault_on_a_chunk(stack, filled, ds, iface, tmp_path, fault, firings) -> None:
    ex, f = _history_exchange(stack, filled, ds, iface, tmp_path)
    admin(stack.sim, "POST", "/faults", {**fault, "infno": "9102"} if fault["kind"] != "down" else fault)
    try:
        result = history.upload(ex, "440106", 2023)
    finally:
        _close(ex)
    assert (result.errors, result.completed) == ([], [f["file_name"]])
    assert result.chunks_sent == f["chunk_count"]
    assert len(_fired(stack)) == firings
    chunk_outcomes = [r["outcome"] for r in stack.sim.requests() if r["infno"] == "9102"]
    assert chunk_outcomes.count("processed") == f["chunk_count"] + (firings if fault["kind"] == "checksum" else 0)
    _platform_holds_the_year(stack, filled, ds)


def test_history_upload_whose_file_check_fails_is_resumed_by_the_next_run(stack, filled, ds, iface, tmp_path) -> None:
    """9103 answered -1302 (the assembled file does not match): the run reports it naming the transaction and
    the file and completes nothing; the next run finishes the file, and nothing is held twice."""
    ex, f = _history_exchange(stack, filled, ds, iface, tmp_path)
    admin(stack.sim, "POST", "/faults", {"kind": "checksum", "infno": "9103", "count": 1})
    try:
        first = history.upload(ex, "440106", 2023)
        assert first.completed == [] and len(first.errors) == 1
        assert "9103" in str(first.errors[0]) and f["file_name"] in str(first.errors[0])
        second = history.upload(ex, "440106", 2023)
    finally:
        _close(ex)
    assert second.errors == [] and f["file_name"] in second.completed + second.skipped
    assert len(_fired(stack)) == 1
    _platform_holds_the_year(stack, filled, ds)


# ---------------------------------------------------------------- the relay killed mid-request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_relay(config: Path, log: Path) -> subprocess.Popen[str]:
    """The relay as its own process (as the service runs it), once it listens."""
    with log.open("a") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hipgate.exchange.relay", "--config", str(config)],
                                stdout=subprocess.PIPE, stderr=err, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening"):
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"the relay did not start: {log.read_text()[-2000:]}")
    return proc


@pytest.fixture
def relay_process(stack, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A second relay in front of the stack's simulator, as a process on a fixed port, restartable; every
    process it started is stopped by its PID."""
    port = _free_port()
    doc = json.loads(stack.relay_config.read_text())
    doc["listen"]["port"] = port
    config = tmp_path / "relay-process.json"
    config.write_text(json.dumps(doc))
    started: list[subprocess.Popen[str]] = []
    state = {"port": port, "started": started}
    state["start"] = lambda: started.append(_start_relay(config, tmp_path / "relay-process.log")) or started[-1]
    try:
        yield state
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


def _killed_mid_request(stack, relay_process, infno: str, work: Callable[[RelayClient], Any]) -> Any:
    """Run `work` against the relay process while the platform holds its reply to the first `infno`
    request; kill -9 the relay then, start it again; `work`'s outcome."""
    first = relay_process["start"]()
    admin(stack.sim, "POST", "/faults", {"kind": "slow", "infno": infno, "count": 1, "delay": 4})
    client = RelayClient(f"https://127.0.0.1:{relay_process['port']}", stack.ca.path, *stack.client_cert,
                         timeout=30, policy=POLICY)  # fmt: skip
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(client)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    try:
        assert wait_until(lambda: any(r["infno"] == infno for r in stack.sim.requests()))
        os.kill(first.pid, signal.SIGKILL)  # by the PID of the relay this test started
        first.wait(timeout=30)
        relay_process["start"]()
    finally:
        thread.join(timeout=120)
        client.close()
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_kill_9_of_the_relay_mid_incremental_loses_and_duplicates_nothing(
    stack, relay_process, exchange_db, ds, iface
) -> None:
    with psycopg.connect(exchange_db) as conn:
        for n in range(1, 5):
            insert_setl(conn, setl_record(n))

    def work(client: RelayClient) -> incremental.RunResult:
        ex = Exchange(psycopg.connect(exchange_db), client, ds, iface, SENDER, batch_size=2)
        try:
            return incremental.run(ex)
        finally:
            ex.conn.close()

    result = _killed_mid_request(stack, relay_process, "4101", work)
    assert (result.accepted, result.messages, result.errors) == (4, 2, [])
    outcomes = [r["outcome"] for r in stack.sim.requests() if r["infno"] == "4101"]
    assert outcomes.count("processed") == 2 and outcomes.count("replayed") == 1  # the held reply, asked again
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    _no_duplicates(stack)


def test_kill_9_of_the_relay_mid_chunk_loses_and_duplicates_nothing(
    stack, relay_process, filled, ds, iface, tmp_path
) -> None:
    ex, f = _history_exchange(stack, filled, ds, iface, tmp_path)
    _close(ex)

    def work(client: RelayClient) -> history.HistoryResult:
        ex = Exchange(psycopg.connect(filled), client, ds, iface, SENDER)
        try:
            return history.upload(ex, "440106", 2023)
        finally:
            ex.conn.close()

    result = _killed_mid_request(stack, relay_process, "9102", work)
    assert (result.errors, result.completed, result.chunks_sent) == ([], [f["file_name"]], f["chunk_count"])
    outcomes = [r["outcome"] for r in stack.sim.requests() if r["infno"] == "9102"]
    assert outcomes.count("processed") == f["chunk_count"] and outcomes.count("replayed") == 1
    _platform_holds_the_year(stack, filled, ds)


# ---------------------------------------------------------------- kill -9 of a run at seeded random moments

KILLS = 6
SEED = 20261204
FORMS = 60  # 20 pages of 3


def _run_config(stack, conninfo: str, tmp_path: Path) -> Path:
    path = tmp_path / "middleware.json"
    path.write_text(json.dumps({
        "sender_code": SENDER,
        "database": {"conninfo": conninfo},
        "relay": {"url": f"https://127.0.0.1:{stack.relay_port}", "ca": str(stack.ca.path),
                  "cert": str(stack.client_cert[0]), "key": str(stack.client_cert[1]), "timeout": 60},
        "retry": {"attempts": 100, "base": 0.1, "cap": 0.2},
        "batch_size": 4,
        "download_limit": 3,
    }))  # fmt: skip
    return path


def _killed_runs(sim: Any, what: str, config: Path, log: Path, rng: random.Random) -> list[float]:
    """KILLS runs of `python -m hipgate.exchange.run WHAT`, each killed with SIGKILL (by its PID) at a moment
    drawn from `rng`, counted from its first request to the platform (the start-up before it varies with the
    machine's load); the moments."""
    moments = []
    for _ in range(KILLS):
        moment = rng.uniform(0.0, 2.0)
        seen = len(sim.requests())
        with log.open("a") as err:
            proc = subprocess.Popen([sys.executable, "-m", "hipgate.exchange.run", what, "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        try:
            assert wait_until(
                lambda seen=seen, proc=proc: len(sim.requests()) > seen or proc.poll() is not None, timeout=120
            )
            try:
                proc.wait(timeout=moment)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                moments.append(round(moment, 3))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    return moments


@pytest.mark.parametrize("what", ["incremental", "downloads"])
def test_kill_9_of_a_run_at_seeded_random_moments_loses_and_duplicates_nothing(
    stack, exchange_db, ds, iface, tmp_path, what: str
) -> None:
    if what == "incremental":
        with psycopg.connect(exchange_db) as conn:
            for n in range(1, 241):  # 60 messages of 4, 0.15 s each at least: more than the kills interrupt
                insert_setl(conn, setl_record(n))
    else:
        admin(stack.sim, "POST", "/publish", {"kind": "fee_check_form", "count": FORMS})
    # Every reply held 0.15 s, so that a run lasts seconds and the moments fall inside its work.
    admin(stack.sim, "POST", "/faults", {"kind": "slow", "delay": 0.15, "count": 100_000})
    config = _run_config(stack, exchange_db, tmp_path)
    moments = _killed_runs(stack.sim, what, config, tmp_path / "runs.log", random.Random(f"{SEED}-{what}"))
    assert len(moments) >= KILLS - 1, moments  # the runs were still working when killed
    admin(stack.sim, "DELETE", "/faults")
    requests = stack.sim.requests()
    ex = _exchange(stack, exchange_db, ds, iface)
    try:
        if what == "incremental":
            assert any(r["infno"] == "4101" and r["outcome"] == "processed" for r in requests), moments
            result = incremental.run(ex)
            assert result.errors == [] and result.queued == 0
        else:
            assert any(r["infno"] == "5201" for r in requests), moments
            assert downloads.run(ex, limit=3).errors == []
    finally:
        _close(ex)
    if what == "incremental":
        assert platform_summary(stack.sim) == source_summary(exchange_db, ds), moments
        assert {m["status"] for m in outbox(exchange_db)} == {"acked"}
        _no_duplicates(stack)
    else:
        with psycopg.connect(exchange_db) as conn:
            forms = conn.execute("SELECT count(*), count(hg_acked_at) FROM exchange.fee_check_form")
            assert forms.fetchone() == (FORMS, FORMS), moments  # the key is the platform's: a repeat stores nothing
            unacked = conn.execute("SELECT count(*) FROM exchange.hipgate_download_page WHERE acked_at IS NULL")
            assert unacked.fetchone() == (0,), moments
        served = admin(stack.sim, "GET", "/outbox?infno=5201")
        assert len(served) == FORMS and all(item.get("acked_at") or item.get("acknowledged") for item in served)


def test_platform_down_across_three_scheduled_runs_then_each_record_once(stack, exchange_db, ds, iface) -> None:
    """Down longer than the backoff cap and than three runs of the schedule: each run gives up with
    Unreachable and keeps its messages pending under the same msgids; the first run after it is back sends
    them, once."""
    with psycopg.connect(exchange_db) as conn:
        for n in range(1, 7):
            insert_setl(conn, setl_record(n))
    admin(stack.sim, "POST", "/faults", {"kind": "down", "seconds": 4})
    short = RetryPolicy(attempts=3, base=0.05, cap=0.2)  # a scheduled run's few retries
    msgids: list[str] | None = None
    for _run in range(3):
        client = RelayClient(f"https://127.0.0.1:{stack.relay_port}", stack.ca.path, *stack.client_cert,
                             timeout=30, policy=short)  # fmt: skip
        ex = Exchange(psycopg.connect(exchange_db), client, ds, iface, SENDER, batch_size=2)
        try:
            with pytest.raises(Unreachable):
                incremental.run(ex)
        finally:
            _close(ex)
        pending = outbox(exchange_db)
        assert {m["status"] for m in pending} == {"pending"}
        msgids = msgids or [m["msgid"] for m in pending]
        assert [m["msgid"] for m in pending] == msgids  # resent as the same messages, never re-queued
    assert [e["event"] for e in _fired(stack)] == ["down"]  # still down after the three runs
    assert wait_until(lambda: [e["event"] for e in _fired(stack)] == ["down", "up"], timeout=30)
    ex = _exchange(stack, exchange_db, ds, iface, batch_size=2)
    try:
        result = incremental.run(ex)
    finally:
        _close(ex)
    assert (result.accepted, result.errors) == (6, [])
    after = outbox(exchange_db)
    assert [m["msgid"] for m in after] == msgids and {m["status"] for m in after} == {"acked"}
    assert platform_summary(stack.sim) == source_summary(exchange_db, ds)
    _no_duplicates(stack)
