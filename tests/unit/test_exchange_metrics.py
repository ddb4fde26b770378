"""The Prometheus textfile: the exposition format read back line by line, label values that cannot
break it, the atomic write, and the ALERT journal line."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from hipgate.exchange import metrics

SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*)\})? (\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every line must be HELP, TYPE (for a family before its samples) or a sample."""
    assert text.endswith("\n")
    typed: set[str] = set()
    out = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("gauge", "counter") and name not in typed
            typed.add(name)
            continue
        m = SAMPLE.fullmatch(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) in typed
        labels = tuple((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                       for k, v in LABEL.findall(m.group(2) or ""))  # fmt: skip
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def _status(**over: Any) -> dict[str, Any]:
    return {
        "backlog": {"setl": {"records": 3, "messages": 1}, "cross_visit": {"records": 0, "messages": 0}},
        "lag_seconds": 125.5, "max_lag_minutes": 30, "alert": False,
        "last_success": {"incremental": {"at": "x", "timestamp": 1709251200.25}, "downloads": None, "history": None},
        "failures": {"total": 7, "last_24h": 2, "pending": 1},
        "quarantined_open": 4, "anomalies_today": 5, "generated_timestamp": 1709251300.0,
    } | over  # fmt: skip


def test_the_exposition_reads_back() -> None:
    m = parse(metrics.exposition(_status()))
    assert m == {
        ("hipgate_exchange_up", ()): 1,
        ("hipgate_exchange_backlog", (("record_type", "setl"),)): 3,
        ("hipgate_exchange_backlog", (("record_type", "cross_visit"),)): 0,
        ("hipgate_exchange_pending_messages", (("record_type", "setl"),)): 1,
        ("hipgate_exchange_pending_messages", (("record_type", "cross_visit"),)): 0,
        ("hipgate_exchange_lag_seconds", ()): 125.5,
        ("hipgate_exchange_max_lag_seconds", ()): 1800,
        ("hipgate_exchange_alert", ()): 0,
        ("hipgate_exchange_last_success_timestamp_seconds", (("kind", "incremental"),)): 1709251200.25,
        ("hipgate_exchange_last_success_timestamp_seconds", (("kind", "downloads"),)): 0,
        ("hipgate_exchange_last_success_timestamp_seconds", (("kind", "history"),)): 0,
        ("hipgate_exchange_failures_total", ()): 7,
        ("hipgate_exchange_failures_last_24h", ()): 2,
        ("hipgate_exchange_failing_pending_messages", ()): 1,
        ("hipgate_exchange_quarantined", ()): 4,
        ("hipgate_exchange_anomalies_today", ()): 5,
        ("hipgate_exchange_status_timestamp_seconds", ()): 1709251300,
    }
    assert "# TYPE hipgate_exchange_failures_total counter" in metrics.exposition(_status())
    assert parse(metrics.exposition(None)) == {("hipgate_exchange_up", ()): 0}


@pytest.mark.parametrize("bad", ['set"l', "setl\n# TYPE x gauge", "setl}", "a\\b", "SETL", "", "x" * 40, 'x"} 1\ny{'])
def test_a_label_value_cannot_break_the_format(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    text = metrics.exposition(
        _status(backlog={bad: {"records": 9, "messages": 9}, "setl": {"records": 1, "messages": 0}})
    )
    m = parse(text)  # still well-formed: the value is left out, logged
    assert ("hipgate_exchange_backlog", (("record_type", "setl"),)) in m
    assert not any(labels and labels[0][1] == bad for _name, labels in m)
    assert "not a valid label value" in caplog.text


def test_escaping_follows_the_format() -> None:
    assert metrics.escape_label('a"b\nc\\d') == 'a\\"b\\nc\\\\d'
    line = metrics.family("x_test", "gauge", "help\nwith a newline", [({"v": 'a"b\nc\\d'}, 1)])
    assert line == ["# HELP x_test help\\nwith a newline", "# TYPE x_test gauge", 'x_test{v="a\\"b\\nc\\\\d"} 1']
    assert parse("\n".join(line) + "\n") == {("x_test", (("v", 'a"b\nc\\d'),)): 1}
    with pytest.raises(ValueError):
        metrics.family("bad name", "gauge", "h", [])


def test_the_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "hipgate-exchange.prom"
    path.write_text("old\n")
    inode = path.stat().st_ino
    metrics.write_textfile(path, "new 1\n")
    assert path.read_text() == "new 1\n" and path.stat().st_ino != inode  # a new file renamed over the old
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hipgate-exchange.prom"]
    os.chmod(tmp_path, 0o500)  # the directory refuses new files: the old file stays whole
    try:
        if os.geteuid() != 0:  # root ignores the mode
            with pytest.raises(PermissionError):
                metrics.write_textfile(path, "newer 2\n")
            assert path.read_text() == "new 1\n"
    finally:
        os.chmod(tmp_path, 0o700)


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.prom"

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        metrics.write_textfile(path, "a 1\n")
    assert list(tmp_path.iterdir()) == []


def test_the_alert_line() -> None:
    assert metrics.alert_line(_status()) is None
    line = metrics.alert_line(_status(alert=True, lag_seconds=4000.4))
    assert line is not None and line.startswith("ALERT ") and "\n" not in line
    assert "lag 4000 s" in line and "threshold 30 min" in line and "上传延迟 4000 秒" in line and "阈值 30 分钟" in line
