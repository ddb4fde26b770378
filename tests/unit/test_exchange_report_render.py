"""The exchange report as people read it: the self-contained HTML page (both languages, the three inline
SVG charts, no script and no external address, hostile strings escaped), the terminal tables and the
chart geometry."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hipgate.exchange import report_render
from hipgate.exchange.report import _empty

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


def _doc(n: int = 7, record_type: str = "setl") -> dict[str, Any]:
    days = []
    for i in range(n):
        day = {"day": (dt.date(2024, 3, 1) + dt.timedelta(days=i)).isoformat(), **_empty()}
        day.update(sent=10 * i, accepted=8 * i, duplicate=i, rejected=i, quarantined=i % 2, anomalies=i % 3,
                   failures=i % 2, runs=4, runs_ok=3, runs_failed=1, availability=0.75,
                   lag_p50_s=None if i == 2 else 2.0 * i, lag_p99_s=None if i == 2 else 9.0 * i)  # fmt: skip
        days.append(day)
    totals = _empty() | {"sent": 210, "accepted": 168, "lag_p50_s": 6.0, "lag_p99_s": 54.0, "availability": 0.75}
    return {
        "from": days[0]["day"], "to": days[-1]["day"], "generated_at": "2024-03-08T09:00:00+08:00", "days": days,
        "totals": totals, "by_record_type": {record_type: dict.fromkeys(_empty(), 0) | {"accepted": 168}},
        "runs_by_kind": {"incremental": {"runs": 28, "runs_ok": 21, "runs_failed": 7, "runs_running": 0,
                                         "availability": 0.75}},
    }  # fmt: skip


def test_the_html_page_has_both_languages_and_three_inline_charts() -> None:
    page = report_render.report_html(_doc(), {"中间件 / middleware": "mw01"})
    assert page.count("<svg ") == 3 and page.count("</svg>") == 3
    for zh, en in [("每日记录数", "Records per day"), ("每日上传延迟", "Upload lag per day"),
                   ("每日异常与失败", "Anomalies and failures per day"), ("可用率", "availability"),
                   ("口径", "Definitions")]:  # fmt: skip
        assert zh in page and en in page
    assert page.count("<rect ") >= 7 and "<polyline " in page and "<circle " in page
    assert 'lang="zh-CN"' in page and 'lang="en"' in page
    # A day without acknowledged records breaks the lag line: two segments per series.
    assert page.count("<polyline ") == 4
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_the_page_is_self_contained() -> None:
    page = report_render.report_html(_doc(), {"host": "mw01"})
    assert not re.search(r"(https?:|ftp:|//[a-z0-9])", page.replace("http-equiv", "")), "an external address"
    assert "<script" not in page and "<link" not in page and "src=" not in page and "href=" not in page
    assert "url(" not in page and "@import" not in page and " on" + "load=" not in page


def test_hostile_strings_are_escaped_everywhere() -> None:
    page = report_render.report_html(_doc(record_type=HOSTILE), {HOSTILE: HOSTILE})
    assert "<script" not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and "&amp;amp;" in page


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium not installed / 未安装 chromium")
def test_a_browser_draws_the_charts_and_runs_nothing(tmp_path: Path) -> None:
    from helpers import browser_render

    page = tmp_path / "report.html"
    page.write_text(report_render.report_html(_doc(31), {"host": HOSTILE}), encoding="utf-8")
    dom = browser_render(page, tmp_path / "report.png", width=1000, height=1600)
    assert dom.count("<svg") == 3 and "<script" not in dom and "<img" not in dom
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_the_terminal_tables() -> None:
    console = Console(record=True, width=250)
    console.print(report_render.report_table(_doc()))
    text = console.export_text()
    assert "2024-03-07" in text and "合计 / total" in text and "75.0 %" in text and "54.0 s" in text and "—" in text
    status = {
        "generated_at": "2024-03-08T09:00:00+08:00", "lag_seconds": 4000.0, "max_lag_minutes": 30, "alert": True,
        "failures": {"last_24h": 2, "pending": 1, "pending_messages": [
            {"msgid": "m1", "infno": "4101", "record_type": "setl", "attempts": 3, "last_error": "HTTP 503"}]},
        "quarantined_open": 1, "anomalies_today": 5, "downloads_unacknowledged_pages": 0,
        "last_success": {"incremental": {"at": "2024-03-08T08:00:00+08:00", "timestamp": 1}, "downloads": None,
                         "history": None},
        "backlog": {"setl": {"records": 2, "captured": 0, "queued": 2, "messages": 1, "lag_seconds": 4000.0}},
    }  # fmt: skip
    console = Console(record=True, width=250)
    console.print(report_render.status_tables(status))
    text = console.export_text()
    assert "是 / YES" in text and "4000.0 s" in text and "从未 / never" in text and "HTTP 503" in text


def test_chart_scales() -> None:
    assert [report_render.nice_step(v) for v in (0, 0.3, 1, 3, 12.5, 70, 101)] == [1, 0.5, 1, 5, 20, 100, 200]
    chart = report_render.lag_chart([{"day": "2024-03-01", "lag_p50_s": 600.0, "lag_p99_s": 3 * 3600.0}])
    assert chart["unit"] == "h" and chart["max"] == 4
    bars = report_render.bar_chart(_doc()["days"], ("accepted", "duplicate"), stacked=True, unit="x")["bars"]
    assert all(b["y"] >= report_render.TOP and b["y"] + b["h"] <= bars[0]["y"] + bars[0]["h"] + 1e-6 for b in bars)
