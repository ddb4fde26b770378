"""The status as Prometheus text (exposition format 0.0.4) for Debian's prometheus-node-exporter textfile
collector (it reads `*.prom` in its `--collector.textfile.directory`, /var/lib/prometheus/node-exporter),
written atomically: a temporary file in the same directory, then rename, so the collector never reads
half a file. Label values are checked (record types are lower-case identifiers, kinds a fixed set) and
escaped as the format says, so no value can break a line.

An alert is one journal line starting with `ALERT` (stderr, which systemd writes to the journal).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("hipgate.exchange.metrics")
PREFIX = "hipgate_exchange_"
RECORD_TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
KINDS = ("incremental", "downloads", "history")
METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

Sample = tuple[Mapping[str, str], float]


def escape_label(value: str) -> str:
    """A label value as the text format writes it: backslash, double quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))


def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    """HELP, TYPE and the samples of one metric family."""
    if not METRIC_NAME_RE.fullmatch(name) or kind not in ("gauge", "counter"):
        raise ValueError(f"bad metric {name!r} ({kind})")
    help_line = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines = [f"# HELP {name} {help_line}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")
    return lines


def _record_types(names: Iterable[str]) -> list[str]:
    """Record types fit for a label; anything else is left out and logged (it cannot come from the dataset)."""
    good = []
    for name in names:
        if isinstance(name, str) and RECORD_TYPE_RE.fullmatch(name):
            good.append(name)
        else:
            log.warning("record type %r is not a valid label value; left out / 记录类型不是有效的标签值，已略去", name)
    return good


def exposition(st: Mapping[str, Any] | None) -> str:
    """The text file for a status (status.status); None: the database could not be read (`up` 0 only)."""
    if st is None:
        return "\n".join(family(PREFIX + "up", "gauge", "1 if the exchange database could be read", [({}, 0)])) + "\n"
    backlog = st["backlog"]
    types = _record_types(backlog)
    success = st["last_success"]
    fail = st["failures"]
    g = "gauge"
    parts = [
        family(PREFIX + "up", g, "1 if the exchange database could be read", [({}, 1)]),
        family(PREFIX + "backlog", g, "records captured or queued and not yet acknowledged, per record type",
               [({"record_type": t}, backlog[t]["records"]) for t in types]),
        family(PREFIX + "pending_messages", g, "outbox messages not yet acknowledged, per record type",
               [({"record_type": t}, backlog[t]["messages"]) for t in types]),
        family(PREFIX + "lag_seconds", g, "age of the oldest change not yet acknowledged (0 if none)",
               [({}, st["lag_seconds"])]),
        family(PREFIX + "max_lag_seconds", g, "the alert threshold (max_lag_minutes) in seconds",
               [({}, st["max_lag_minutes"] * 60)]),
        family(PREFIX + "alert", g, "1 if the lag exceeds the threshold", [({}, 1 if st["alert"] else 0)]),
        family(PREFIX + "last_success_timestamp_seconds", g,
               "Unix time of the last acknowledged message per kind (0: never)",
               [({"kind": k}, (success.get(k) or {}).get("timestamp", 0)) for k in KINDS]),
        family(PREFIX + "failures_total", "counter", "failed requests since the bookkeeping was created",
               [({}, fail["total"])]),
        family(PREFIX + "failures_last_24h", g, "failed requests in the last 24 hours", [({}, fail["last_24h"])]),
        family(PREFIX + "failing_pending_messages", g, "pending messages whose last attempt failed",
               [({}, fail["pending"])]),
        family(PREFIX + "quarantined", g, "quarantined records not yet resolved", [({}, st["quarantined_open"])]),
        family(PREFIX + "anomalies_today", g, "anomaly logs received today (China Standard Time)",
               [({}, st["anomalies_today"])]),
        family(PREFIX + "status_timestamp_seconds", g, "Unix time the status was read",
               [({}, st["generated_timestamp"])]),
    ]  # fmt: skip
    return "\n".join(line for part in parts for line in part) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Replace `path` atomically (temporary file in the same directory, fsync, rename), mode 0644."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def alert_line(st: Mapping[str, Any]) -> str | None:
    """The journal line of an alert (starts with ALERT, lag and threshold in zh and en), or None."""
    if not st.get("alert"):
        return None
    lag, limit = st["lag_seconds"], st["max_lag_minutes"]
    return (
        f"ALERT hipgate-exchange lag {lag:.0f} s > threshold {limit} min (max_lag_minutes) / "
        f"上传延迟 {lag:.0f} 秒，超过阈值 {limit} 分钟"
    )
