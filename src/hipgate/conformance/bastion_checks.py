"""Bastion checks: administrator sessions are recorded (GB/T 22239 8.1.4.3-a on the only entry point)."""

from __future__ import annotations

import json
from typing import Any

from hipgate.conformance.checks import Outcome, Probe, _quote, scoped

TLOG_SHELL = "/usr/bin/tlog-rec-session"


@scoped("bastion")
def bastion_session_recording(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    groups = params["recorded_groups"]
    _, members = p.run(
        f"getent group {' '.join(map(_quote, groups))} | cut -d: -f4 | tr ',' '\\n' | sort -u | grep -v '^$'"
    )
    people = members.split()
    # Member names come from the host's group database: each one quoted.
    _, shells = p.run(f"getent passwd {' '.join(map(_quote, people))} | cut -d: -f1,7" if people else "true")
    unrecorded = [ln for ln in shells.splitlines() if not ln.endswith(":" + TLOG_SHELL)]
    _, conf = p.run("cat /etc/tlog/tlog-rec-session.conf")
    try:
        writer = json.loads(conf).get("writer", "")
    except json.JSONDecodeError:
        writer = ""
    _, sudo_io = p.run("cat /etc/sudoers /etc/sudoers.d/* 2>/dev/null | grep -E '^Defaults.*log_output' | head -1")
    _, sudo_in = p.run("cat /etc/sudoers /etc/sudoers.d/* 2>/dev/null | grep -E '^Defaults.*log_input' | head -1")
    # Run as its own user, the recorder cannot be stopped or fed by the person it records.
    _, owner = p.run(f"stat -c '%U %a' {TLOG_SHELL}")
    setuid = owner.strip() == "_tlog 4755"
    ok = writer in ("journal", "syslog", "file") and setuid and not unrecorded and bool(sudo_io) and bool(sudo_in)
    recorder = f"{owner.strip()}（应为 _tlog 4755）"
    return p.outcome(
        ok,
        f"tlog 写入={writer or '未配置'}，录像程序 {recorder}；管理员 {len(people)} 人，"
        f"未录像：{'; '.join(unrecorded) or '无'}；sudo 输入输出记录={'是' if sudo_io and sudo_in else '否'}",
        f"tlog writer={writer or 'not configured'}, recorder {owner.strip()} (need _tlog 4755); "
        f"{len(people)} administrators, not recorded: {'; '.join(unrecorded) or 'none'}; "
        f"sudo input/output logged={'yes' if sudo_io and sudo_in else 'no'}",
    )
