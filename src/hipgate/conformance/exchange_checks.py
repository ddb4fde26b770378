"""The data exchange (HIPGATE-EX-1): the relay on the front-end server and the middleware's timers run, each
under its sandbox (systemd-analyze security exposure within the policy's limit), and on the middleware host
the exchange's own status (backlog, lag, failures, anomalies) is read and shown, failing above max lag."""

from __future__ import annotations

import json
import re
from typing import Any

from hipgate.conformance.checks import Context, Probe, scoped
from hipgate.exchange import deployed

RELAY_UNIT = "hipgate-exchange-relay.service"
MIDDLEWARE_UNITS = ("hipgate-exchange@incremental.service", "hipgate-exchange@downloads.service",
                    "hipgate-exchange-metrics.service")  # fmt: skip
TIMERS = ("hipgate-exchange-incremental.timer", "hipgate-exchange-downloads.timer", "hipgate-exchange-metrics.timer")
EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9]+(?:\.[0-9]+)?)")


def _exposure(p: Probe, unit: str) -> float | None:
    _, out = p.run(f"systemd-analyze security --no-pager {unit}")
    m = EXPOSURE.search(out)
    return float(m[1]) if m else None


def _status(p: Probe) -> dict[str, Any] | None:
    """The middleware's `run status` as its account runs it; only a JSON object of the expected shape."""
    rc, out = p.run(deployed.host_command("status"))
    try:
        doc = json.loads(out.splitlines()[-1]) if rc in (0, 3) and out else None
    except (json.JSONDecodeError, IndexError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("alert"), bool) else None


@scoped("frontend", "middleware", context=True)
def exchange_running(host: Any, params: dict[str, Any], ctx: Context) -> Any:
    p = Probe(host)
    limit = float(params["max_exposure"])
    is_relay = ctx.host in ctx.inventory.group_hosts("frontend")
    units = (RELAY_UNIT,) if is_relay else MIDDLEWARE_UNITS
    active = TIMERS if not is_relay else (RELAY_UNIT,)
    down = [u for u in active if p.run(f"systemctl is-active {u}")[1] != "active"]
    levels = {u: _exposure(p, u) for u in units}
    exposed = [f"{u}={lv}" for u, lv in levels.items() if lv is None or lv > limit]
    status = None if is_relay else _status(p)
    alerting = status is not None and status["alert"]
    ok = not down and not exposed and (is_relay or (status is not None and not alerting))
    keys = ("lag_seconds", "backlog_records", "pending_messages", "quarantined_open", "anomalies_today", "last_success")
    shown = {k: status.get(k) for k in keys} if status else {}
    state_zh = (
        "" if is_relay else (f"；交换状态：{json.dumps(shown, ensure_ascii=False)}" if status else "；无法读取交换状态")
    )
    state_en = (
        "" if is_relay else (f"; exchange status: {json.dumps(shown)}" if status else "; exchange status unreadable")
    )
    alert_zh, alert_en = ("；延迟超过阈值（ALERT）", "; lag above the threshold (ALERT)") if alerting else ("", "")
    return p.outcome(
        ok,
        f"未运行：{', '.join(down) or '无'}；沙箱暴露度超过 {limit}：{', '.join(exposed) or '无'}{state_zh}{alert_zh}",
        f"not running: {', '.join(down) or 'none'}; sandbox exposure above {limit}: {', '.join(exposed) or 'none'}"
        f"{state_en}{alert_en}",
        {"exchange": {"status": status, "exposure": levels}} if status or levels else None,
    )
