"""Status, report and metrics over real exchanges: the runs (`python -m hipgate.exchange.run`, in process)
send, download and upload history through the real relay to the simulator on a real PostgreSQL, then
`status`, `report` and `metrics` must show exactly what happened."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers_mw import insert_setl
from rich.console import Console

from hipgate.exchange import report_render, run
from hipgate.exchange.report import report
from hipgate.exchange.status import status
from simulator_helpers import admin, setl_record


def _config(stack: Any, conninfo: str, directory: Path, **extra: Any) -> Path:
    path = directory / "middleware.json"
    path.write_text(json.dumps({
        "sender_code": "44000001",
        "database": {"conninfo": conninfo},
        "relay": {"url": f"https://127.0.0.1:{stack.relay_port}", "ca": str(stack.ca.path),
                  "cert": str(stack.client_cert[0]), "key": str(stack.client_cert[1]), "timeout": 30},
        "retry": {"attempts": 2, "base": 0.05, "cap": 0.1},
        "history": {"dir": str(directory / "history"), "chunk_size": 65536},
        **extra,
    }))  # fmt: skip
    return path


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _today(conninfo: str) -> dt.date:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT (now() AT TIME ZONE 'Asia/Shanghai')::date").fetchone()[0]


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A strict reader of the text format as the tests need it: every line is HELP, TYPE or a sample."""
    sample = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
    out = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        m = sample.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        labels = tuple(label.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def test_status_report_and_metrics_count_what_the_runs_did(anomalous_stack, exchange_db, tmp_path, capsys) -> None:
    stack = anomalous_stack
    config = str(_config(stack, exchange_db, tmp_path))
    with psycopg.connect(exchange_db) as conn:
        for n in range(1, 6):
            insert_setl(conn, setl_record(n))
        insert_setl(conn, setl_record(9, day="2023-05-05") | {"gend": "7"})  # quarantined, another year
    assert _main(capsys, "incremental", "--config", config)[0] == 0
    admin(stack.sim, "POST", "/publish", {"kind": "fee_check_form", "count": 7})
    admin(stack.sim, "POST", "/publish", {"kind": "cross_visit", "count": 4})
    assert _main(capsys, "downloads", "--config", config)[0] == 0
    assert _main(capsys, "history-export", "--config", config, "--region", "440106", "--year", "2024")[0] == 0
    code, out, _ = _main(capsys, "history-upload", "--config", config, "--region", "440106", "--year", "2024",
                         "--progress", "json")  # fmt: skip
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    progress = [line for line in lines if line.get("event") == "progress"]
    assert progress and progress[-1]["bytes_done"] == progress[-1]["bytes_total"] > 0
    assert progress[-1]["records_done"] == progress[-1]["records_total"] == 5
    assert lines[-1]["completed"] == ["setl_440106_2024_001.jsonl.gz"]

    code, out, _ = _main(capsys, "status", "--config", config)
    st = json.loads(out)
    assert code == 0 and st["backlog_records"] == 0 and st["lag_seconds"] == 0 and not st["alert"]
    assert st["backlog"] == {
        t: {"records": 0, "captured": 0, "queued": 0, "messages": 0, "oldest_change_at": None, "lag_seconds": 0.0}
        for t in ("cross_visit", "setl")
    }
    assert all(st["last_success"][k] for k in ("incremental", "downloads", "history"))
    assert (st["quarantined_open"], st["quarantined_open_by_record_type"]) == (1, {"setl": 1})
    assert st["anomalies_today"] == 5 and st["failures"]["last_24h"] == 0 and st["max_lag_minutes"] == 30

    # Two new records; the platform is down: their message stays pending with its error.
    with psycopg.connect(exchange_db) as conn:
        insert_setl(conn, setl_record(6))
        insert_setl(conn, setl_record(7))
    captured = status(psycopg.connect(exchange_db), "exchange", 30)
    waiting = {k: captured["backlog"]["setl"][k] for k in ("records", "captured", "queued", "messages")}
    assert waiting == {"records": 2, "captured": 2, "queued": 0, "messages": 0}
    assert captured["lag_seconds"] > 0
    admin(stack.sim, "POST", "/faults", {"kind": "http_503", "infno": "4101", "count": 100, "retry_after": 1})
    assert _main(capsys, "incremental", "--config", config)[0] == 4
    with psycopg.connect(exchange_db) as conn:  # as if the changes were two hours old
        conn.execute(
            "UPDATE exchange.hipgate_outbox_record SET changed_at = now() - interval '2 hours'"
            " WHERE msgid IN (SELECT msgid FROM exchange.hipgate_outbox WHERE status = 'pending')"
        )
    code, out, _ = _main(capsys, "status", "--config", config)
    st = json.loads(out)
    assert st["backlog"]["setl"]["records"] == st["backlog"]["setl"]["queued"] == 2
    assert (st["backlog"]["setl"]["captured"], st["backlog"]["setl"]["messages"], st["pending_messages"]) == (0, 1, 1)
    assert 7200 <= st["lag_seconds"] < 7300 and st["alert"] and code == 0
    assert "exceeds the threshold of 30 min" in st["reasons"][0]["en"]
    assert "超过阈值 30 分钟" in st["reasons"][0]["zh"]
    fails = st["failures"]
    assert (fails["last_24h"], fails["last_24h_by_kind"]["incremental"]) == (1, 1)
    assert (fails["pending"], fails["total"]) == (1, 1)
    (pending,) = fails["pending_messages"]
    assert pending["infno"] == "4101" and "503" in pending["last_error"] and pending["record_type"] == "setl"
    assert "张三" not in out  # no personal data

    textfile = tmp_path / "hipgate-exchange.prom"
    code, _, err = _main(capsys, "metrics", "--config", config, "--textfile", str(textfile), "--max-lag-minutes", "60")
    assert code == 0
    alert = [line for line in err.splitlines() if line.startswith("ALERT")]
    assert len(alert) == 1 and "threshold 60 min" in alert[0] and "超过阈值 60 分钟" in alert[0]
    m = parse_prometheus(textfile.read_text())
    assert m[("hipgate_exchange_up", ())] == 1 and m[("hipgate_exchange_alert", ())] == 1
    assert m[("hipgate_exchange_backlog", (("record_type", "setl"),))] == 2
    assert m[("hipgate_exchange_backlog", (("record_type", "cross_visit"),))] == 0
    assert m[("hipgate_exchange_pending_messages", (("record_type", "setl"),))] == 1
    assert (
        7200 <= m[("hipgate_exchange_lag_seconds", ())] < 7300 and m[("hipgate_exchange_max_lag_seconds", ())] == 3600
    )
    assert m[("hipgate_exchange_failures_total", ())] == 1 and m[("hipgate_exchange_failures_last_24h", ())] == 1
    assert m[("hipgate_exchange_failing_pending_messages", ())] == 1
    assert m[("hipgate_exchange_quarantined", ())] == 1 and m[("hipgate_exchange_anomalies_today", ())] == 5
    for kind in ("incremental", "downloads", "history"):
        assert m[("hipgate_exchange_last_success_timestamp_seconds", (("kind", kind),))] > 1.7e9
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".hipgate-exchange")] == []  # no temp left

    today = _today(exchange_db).isoformat()
    code, out, _ = _main(capsys, "report", "--config", config, "--from", today, "--to", today)
    doc = json.loads(out)
    (day,) = doc["days"]
    expected = {
        "day": today, "changes": 8, "sent": 5, "accepted": 5, "duplicate": 0, "rejected": 0, "quarantined": 1,
        "messages": 1, "failures": 1, "downloaded": 16, "acknowledged": 16, "anomalies": 5, "files": 1, "chunks": 1,
        "lag_records": 5, "runs": 5, "runs_ok": 4, "runs_failed": 1, "runs_running": 0, "availability": 0.8,
    }  # fmt: skip
    assert {k: day[k] for k in expected} == expected
    assert 0 <= day["lag_p50_s"] <= day["lag_p99_s"] <= day["lag_max_s"] < 600
    assert {k: doc["totals"][k] for k in expected if k != "day"} == {k: v for k, v in expected.items() if k != "day"}
    assert doc["by_record_type"]["setl"]["accepted"] == 5 and doc["by_record_type"]["anomaly"]["anomalies"] == 5
    assert doc["runs_by_kind"]["incremental"] == {"runs": 2, "runs_ok": 1, "runs_failed": 1, "runs_running": 0,
                                                  "availability": 0.5}  # fmt: skip

    # The control node renders exactly these documents.
    console = Console(record=True, width=250)
    console.print(report_render.status_tables(st))
    console.print(report_render.report_table(doc))
    text = console.export_text()
    assert "是 / YES" in text and "setl" in text and "80.0 %" in text
    page = report_render.report_html(doc, {"middleware": "mw01"})
    assert page.count("<svg ") == 3 and "张三" not in page

    # The platform back: the pending message goes, the backlog and the alert with it.
    admin(stack.sim, "DELETE", "/faults")
    assert _main(capsys, "incremental", "--config", config)[0] == 0
    code, _, err = _main(capsys, "metrics", "--config", config, "--textfile", str(textfile))
    m = parse_prometheus(textfile.read_text())
    assert code == 0 and "ALERT" not in err and m[("hipgate_exchange_alert", ())] == 0
    assert (
        m[("hipgate_exchange_backlog", (("record_type", "setl"),))] == 0
        and m[("hipgate_exchange_lag_seconds", ())] == 0
    )
    assert m[("hipgate_exchange_failing_pending_messages", ())] == 0 and m[("hipgate_exchange_failures_total", ())] == 1


def test_lag_percentiles_and_availability_follow_their_definitions(exchange_db) -> None:
    with psycopg.connect(exchange_db) as conn:
        conn.execute(
            "INSERT INTO exchange.hipgate_lag_sample (msgid, day, record_type, records, lag_max_s, lag_avg_s, lags_s)"
            " VALUES ('m1', '2024-03-01', 'setl', 100, 100, 50.5, (SELECT array_agg(g::float8) FROM"
            " generate_series(100, 1, -1) g)),"
            " ('m2', '2024-03-02', 'setl', 3, 900, 500, NULL)"  # recorded before lags_s: 3 records of the mean
        )
        conn.execute(
            "INSERT INTO exchange.hipgate_run (kind, started_at, finished_at, status, exit_code) VALUES"
            " ('incremental', '2024-03-01 08:00+08', NULL, 'running', NULL),"  # a later run started: interrupted
            " ('incremental', '2024-03-01 08:15+08', '2024-03-01 08:16+08', 'ok', 0),"
            " ('downloads', '2024-03-01 23:59:59+08', NULL, 'running', NULL),"  # the newest: no outcome yet
            " ('history-upload', '2024-03-01 16:00:00+00', '2024-03-01 16:30+00', 'refused', 3)"  # 03-02 00:00 CST
        )
        doc = report(conn, "exchange", dt.date(2024, 3, 1), dt.date(2024, 3, 3))
    d1, d2, d3 = doc["days"]
    assert (d1["lag_records"], d1["lag_p50_s"], d1["lag_p99_s"], d1["lag_max_s"]) == (100, 50.0, 99.0, 100.0)
    assert (d2["lag_records"], d2["lag_p50_s"], d2["lag_p99_s"], d2["lag_max_s"]) == (3, 500.0, 500.0, 900.0)
    assert (d3["lag_records"], d3["lag_p50_s"], d3["availability"]) == (0, None, None)
    t = doc["totals"]
    # 103 records: the 52nd smallest is the median (nearest rank), the 102nd the 99th percentile.
    assert (t["lag_records"], t["lag_p50_s"], t["lag_p99_s"], t["lag_max_s"]) == (103, 52.0, 500.0, 900.0)
    assert (d1["runs"], d1["runs_ok"], d1["runs_failed"], d1["runs_running"], d1["availability"]) == (2, 1, 1, 1, 0.5)
    assert (d2["runs"], d2["runs_failed"], d2["availability"]) == (1, 1, 0.0)
    assert (t["runs"], t["runs_ok"], t["availability"]) == (3, 1, round(1 / 3, 6))
    with pytest.raises(ValueError, match="after the end date"):
        report(psycopg.connect(exchange_db), "exchange", dt.date(2024, 3, 2), dt.date(2024, 3, 1))
    with pytest.raises(ValueError, match="366"):
        report(psycopg.connect(exchange_db), "exchange", dt.date(2023, 1, 1), dt.date(2024, 1, 2))


def test_an_empty_exchange_and_an_unreachable_database(exchange_db, tmp_path, capsys) -> None:
    with psycopg.connect(exchange_db) as conn:
        st = status(conn, "exchange", 30)
    assert st["backlog"] == {} and st["lag_seconds"] == 0 and st["alert"] is False and st["reasons"] == []
    assert st["last_success"] == {"incremental": None, "downloads": None, "history": None}
    assert st["failures"] == {"last_24h": 0, "last_24h_by_kind": {"incremental": 0, "downloads": 0, "history": 0},
                              "total": 0, "pending": 0, "pending_messages": []}  # fmt: skip
    # The readers need no relay: a config whose relay files exist is enough; a closed port is unreachable.
    pem = tmp_path / "x.pem"
    pem.write_text("unused\n")
    relay = {"url": "https://127.0.0.1:9", "ca": str(pem), "cert": str(pem), "key": str(pem)}
    down = tmp_path / "down.json"
    closed = "host=127.0.0.1 port=9 dbname=x user=x connect_timeout=2"
    down.write_text(json.dumps({"sender_code": "44000001", "relay": relay, "database": {"conninfo": closed}}))
    textfile = tmp_path / "x.prom"
    code, _, err = _main(capsys, "metrics", "--config", str(down), "--textfile", str(textfile))
    assert code == 4 and "cannot connect" in err
    assert parse_prometheus(textfile.read_text()) == {("hipgate_exchange_up", ()): 0}
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"sender_code": "44000001", "relay": relay, "database": {"conninfo": exchange_db},
                              "max_lag_minutes": 5}))  # fmt: skip
    code, out, _ = _main(capsys, "status", "--config", str(ok))
    assert code == 0 and json.loads(out)["max_lag_minutes"] == 5
    for bad in (["--from", "2024-3-1", "--to", "2024-03-02"], ["--from", "2024-02-30", "--to", "2024-03-02"],
                ["--from", "2024-03-02", "--to", "2024-03-01"], ["--from", "2024-03-01"]):  # fmt: skip
        code, _, err = _main(capsys, "report", "--config", str(ok), *bad)
        assert code == 2 and "错误" in err and "error" in err
    code, _, err = _main(capsys, "metrics", "--config", str(ok), "--textfile", str(tmp_path / "x.txt"))
    assert code == 2 and ".prom" in err
    code, _, err = _main(capsys, "status", "--config", str(ok), "--max-lag-minutes", "0")
    assert code == 2 and "--max-lag-minutes" in err
