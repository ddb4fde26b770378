"""The status and the report as people read them, on the control node: rich tables for the terminal,
JSON, and a self-contained HTML page (Chinese and English, inline SVG charts, no script, no external
asset; everything escaped by Jinja2's autoescape). Works on the JSON documents only (status.status,
report.report), so nothing here needs the database."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from rich.console import Group
from rich.table import Table

# Labels of the report's numbers: (中文, English).
LABELS: dict[str, tuple[str, str]] = {
    "changes": ("捕获变更", "changes captured"),
    "sent": ("已发送记录", "records sent"),
    "accepted": ("已接收", "accepted"),
    "duplicate": ("重复", "duplicate"),
    "rejected": ("拒收", "rejected"),
    "quarantined": ("隔离", "quarantined"),
    "messages": ("已确认报文", "messages acknowledged"),
    "files": ("历史文件", "history files"),
    "chunks": ("历史分片", "history chunks"),
    "downloaded": ("已下载记录", "records downloaded"),
    "acknowledged": ("已确认下载", "downloads acknowledged"),
    "anomalies": ("异常日志", "anomaly logs"),
    "failures": ("失败请求", "failed requests"),
    "lag_p50_s": ("延迟 p50", "lag p50"),
    "lag_p99_s": ("延迟 p99", "lag p99"),
    "lag_max_s": ("最大延迟", "lag max"),
    "runs": ("运行次数", "runs"),
    "availability": ("可用率", "availability"),
}
DAY_COLUMNS = ("sent", "accepted", "duplicate", "rejected", "quarantined", "files", "chunks", "downloaded",
               "anomalies", "failures")  # fmt: skip
KIND_LABELS = {"incremental": ("增量上传", "incremental"), "downloads": ("下载", "downloads"),
               "history": ("历史文件", "history")}  # fmt: skip
COLOURS = {"accepted": "#2e7d32", "duplicate": "#f9a825", "rejected": "#c62828", "quarantined": "#6a1b9a",
           "p50": "#1565c0", "p99": "#c62828", "anomalies": "#ef6c00", "failures": "#c62828"}  # fmt: skip


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def share(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _label(key: str) -> str:
    zh, en = LABELS[key]
    return f"{zh} / {en}"


# ---------------------------------------------------------------- terminal


def report_table(doc: Mapping[str, Any]) -> Table:
    table = Table(title=f"数据交换报告 / exchange report {doc['from']} – {doc['to']} (CST)")
    table.add_column("日期 / day")
    for key in (*DAY_COLUMNS, "lag_p50_s", "lag_p99_s", "availability"):
        table.add_column("\n".join(LABELS[key]), justify="right")
    for row in doc["days"]:
        table.add_row(*_cells(row["day"], row))
    table.add_row(*_cells("合计 / total", doc["totals"]), style="bold")
    return table


def _cells(day: str, row: Mapping[str, Any]) -> list[str]:
    numbers = [str(row[k]) for k in DAY_COLUMNS]
    return [day, *numbers, seconds(row["lag_p50_s"]), seconds(row["lag_p99_s"]), share(row["availability"])]


def status_tables(st: Mapping[str, Any]) -> Group:
    head = Table(title=f"数据交换状态 / exchange status {st['generated_at']}", show_header=False)
    head.add_column()
    head.add_column()
    head.add_row("延迟 / lag", f"{seconds(st['lag_seconds'])}（阈值 / threshold {st['max_lag_minutes']} min）")
    head.add_row("告警 / alert", "是 / YES" if st["alert"] else "否 / no")
    fails = st["failures"]
    head.add_row("失败（24 小时）/ failures (24 h)", str(fails["last_24h"]))
    head.add_row("待发报文含错误 / pending with an error", str(fails["pending"]))
    head.add_row("隔离未解决 / quarantined open", str(st["quarantined_open"]))
    head.add_row("今日异常 / anomalies today", str(st["anomalies_today"]))
    head.add_row("待确认下载页 / download pages unacknowledged", str(st["downloads_unacknowledged_pages"]))
    for kind, (zh, en) in KIND_LABELS.items():
        at = (st["last_success"].get(kind) or {}).get("at")
        head.add_row(f"最近成功 {zh} / last success {en}", at or "—（从未 / never）")
    backlog = Table(title="积压 / backlog")
    for title in ("记录类型 / record type", "积压记录 / records", "未读变更 / captured", "待发 / queued",
                  "待发报文 / messages", "延迟 / lag"):  # fmt: skip
        backlog.add_column(title, justify="left" if title.startswith("记录") else "right")
    for code, b in st["backlog"].items():
        backlog.add_row(code, str(b["records"]), str(b["captured"]), str(b["queued"]), str(b["messages"]),
                        seconds(b["lag_seconds"]))  # fmt: skip
    parts: list[Any] = [head, backlog]
    if fails["pending_messages"]:
        pending = Table(title="待发报文的错误 / pending messages with an error")
        for title in ("msgid", "infno", "记录类型 / record type", "尝试 / attempts", "错误 / last error"):
            pending.add_column(title)
        for m in fails["pending_messages"]:
            pending.add_row(m["msgid"], m["infno"], m["record_type"], str(m["attempts"]), m["last_error"])
        parts.append(pending)
    return Group(*parts)


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


# ---------------------------------------------------------------- charts (geometry only; the template draws)

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 32


def nice_step(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above value (1 for nothing): the axis has 4 such steps."""
    if value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * 10**exp >= value:
            return float(step * 10**exp)
    return float(10 ** (exp + 1))


def _frame(days: Sequence[str], top: float, unit: str) -> dict[str, Any]:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    every = max(1, math.ceil(len(days) / 12))
    ticks = [{"y": round(TOP + plot_h - plot_h * i / 4, 2), "label": _tick(top * i / 4)} for i in range(5)]
    xlabels = [{"x": round(LEFT + slot * (i + 0.5), 2), "label": d[5:]} for i, d in enumerate(days) if i % every == 0]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "top": TOP,
            "bottom": TOP + plot_h, "ticks": ticks, "xlabels": xlabels, "unit": unit, "slot": slot,
            "plot_h": plot_h, "max": top}  # fmt: skip


def _tick(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:g}"


def _y(frame: Mapping[str, Any], value: float) -> float:
    return round(frame["bottom"] - frame["plot_h"] * value / frame["max"], 2)


def bar_chart(days: Sequence[Mapping[str, Any]], keys: Sequence[str], stacked: bool, unit: str) -> dict[str, Any]:
    """Bars per day for `keys` (stacked or side by side), with a title per bar for hovering."""
    names = [d["day"] for d in days]
    totals = [sum(d[k] for k in keys) if stacked else max((d[k] for k in keys), default=0) for d in days]
    frame = _frame(names, 4 * nice_step(max(totals, default=0) / 4), unit)
    bars = []
    slot = frame["slot"]
    width = slot * 0.7 / (1 if stacked else len(keys))
    for i, d in enumerate(days):
        base = 0.0
        for j, key in enumerate(keys):
            value = d[key]
            x = LEFT + slot * i + slot * 0.15 + (0 if stacked else j * width)
            y_top, y_low = _y(frame, base + value), _y(frame, base)
            if value:
                bars.append({"x": round(x, 2), "y": y_top, "w": round(width, 2), "h": round(y_low - y_top, 2),
                             "colour": COLOURS[key], "title": f"{d['day']} {_label(key)}: {value}"})  # fmt: skip
            if stacked:
                base += value
    legend = [{"colour": COLOURS[k], "label": _label(k)} for k in keys]
    return frame | {"bars": bars, "lines": [], "dots": [], "legend": legend}


def lag_chart(days: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """p50 and p99 per day as lines (a day without acknowledged records breaks the line)."""
    top_s = max((d["lag_p99_s"] or 0 for d in days), default=0)
    unit, scale = ("h", 3600.0) if top_s > 7200 else (("min", 60.0) if top_s > 120 else ("s", 1.0))
    frame = _frame([d["day"] for d in days], 4 * nice_step(top_s / scale / 4), unit)
    lines, dots = [], []
    for key, name in (("lag_p50_s", "p50"), ("lag_p99_s", "p99")):
        segment: list[str] = []
        for i, d in enumerate(days):
            value = d[key]
            if value is None:
                if segment:
                    lines.append({"points": " ".join(segment), "colour": COLOURS[name]})
                segment = []
                continue
            x, y = round(LEFT + frame["slot"] * (i + 0.5), 2), _y(frame, value / scale)
            segment.append(f"{x},{y}")
            dots.append({"x": x, "y": y, "colour": COLOURS[name], "title": f"{d['day']} {name}: {seconds(value)}"})
        if segment:
            lines.append({"points": " ".join(segment), "colour": COLOURS[name]})
    legend = [{"colour": COLOURS[n], "label": _label(k)} for k, n in (("lag_p50_s", "p50"), ("lag_p99_s", "p99"))]
    return frame | {"bars": [], "lines": lines, "dots": dots, "legend": legend}


def charts(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    days = doc["days"]
    return [
        {"id": "records", "zh": "每日记录数（平台结论）", "en": "Records per day (the platform's verdict)",
         **bar_chart(days, ("accepted", "duplicate", "rejected", "quarantined"), stacked=True, unit="条 / records")},
        {"id": "lag", "zh": "每日上传延迟 p50 / p99", "en": "Upload lag per day, p50 and p99", **lag_chart(days)},
        {"id": "problems", "zh": "每日异常与失败", "en": "Anomalies and failures per day",
         **bar_chart(days, ("anomalies", "failures"), stacked=False, unit="次 / count")},
    ]  # fmt: skip


# ---------------------------------------------------------------- HTML


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("hipgate.exchange", "templates"),
        autoescape=True,  # host names, record types and error texts come from elsewhere: escape all of it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def report_html(doc: Mapping[str, Any], source: Mapping[str, str] | None = None) -> str:
    """The report as one self-contained HTML page; `source` names where it came from (host, inventory)."""
    template = _environment().get_template("exchange_report.html.j2")
    return template.render(doc=doc, source=dict(source or {}), charts=charts(doc), LABELS=LABELS,
                           DAY_COLUMNS=DAY_COLUMNS, seconds=seconds, share=share)  # fmt: skip
