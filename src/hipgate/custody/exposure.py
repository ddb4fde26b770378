"""Recovered generations, read from OpenBao's audit log: a generation is exposed once a quorum of
custodians has read their shares of it (every read is audited under the reader's identity, whoever
ran it and however), and it is rotated once shares of a newer generation of the same system were
written after that. An exposed generation not rotated within the policy's time fails `hipgate
verify` and the handover gate: the recovered password must not stay valid indefinitely.

The vault host runs FILTER over the audit log (as root, the log is 0600 openbao); it prints only the
path, operation, time and reader of successful share reads and writes, never a value."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from hipgate.custody.vault import KV_MOUNT

DEFAULT_ROTATE_WITHIN_HOURS = 24.0
SHARE_RE = re.compile(rf"{KV_MOUNT}/data/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.:-]+)/shares/([a-z0-9._-]+)\Z")

FILTER = (
    "import json, sys\n"
    "for line in open(sys.argv[1], encoding='utf-8', errors='replace'):\n"
    "    if '/shares/' not in line:\n"
    "        continue\n"
    "    try:\n"
    "        e = json.loads(line)\n"
    "    except ValueError:\n"
    "        continue\n"
    "    if e.get('type') != 'response' or e.get('error'):\n"
    "        continue\n"
    "    r = e.get('request') or {}\n"
    "    print(json.dumps({'time': e.get('time'), 'op': r.get('operation'), 'path': r.get('path'),\n"
    "        'who': ((e.get('auth') or {}).get('metadata') or {}).get('username')}))\n"
)


def events(lines: list[str]) -> list[dict[str, Any]]:
    """Successful share reads and writes: {"time", "op", "system", "generation", "custodian", "who"}."""
    out = []
    for line in lines:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if not isinstance(e, dict):
            continue
        if "request" in e:  # a raw audit entry (tests read the log directly)
            if e.get("type") != "response" or e.get("error"):
                continue
            r = e.get("request") or {}
            e = {
                "time": e.get("time"),
                "op": r.get("operation"),
                "path": r.get("path"),
                "who": ((e.get("auth") or {}).get("metadata") or {}).get("username"),
            }
        m = SHARE_RE.match(str(e.get("path") or ""))
        when = _time(e.get("time"))
        if not m or when is None or e.get("op") not in ("read", "create", "update"):
            continue
        system, generation, custodian = m.groups()
        out.append({"time": when, "op": e["op"], "system": system, "generation": generation, "custodian": custodian})
    return out


def _time(text: Any) -> datetime.datetime | None:
    try:
        t = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=datetime.UTC)


def unrotated(
    evs: list[dict[str, Any]], threshold: int, within_hours: float, now: datetime.datetime | None = None
) -> list[dict[str, Any]]:
    """Generations a quorum recovered and no newer generation replaced since, older than the limit:
    [{"system", "generation", "recovered_at", "hours"}]. `threshold` is the quorum."""
    now = now or datetime.datetime.now(datetime.UTC)
    readers: dict[tuple[str, str], dict[str, datetime.datetime]] = {}
    for e in sorted(evs, key=lambda e: e["time"]):
        if e["op"] == "read":
            readers.setdefault((e["system"], e["generation"]), {}).setdefault(e["custodian"], e["time"])
    late = []
    for (system, generation), who in readers.items():
        if len(who) < threshold:
            continue
        recovered_at = sorted(who.values())[threshold - 1]
        replaced = any(
            e["system"] == system and e["generation"] != generation and e["op"] == "create" and e["time"] > recovered_at
            for e in evs
        )
        hours = (now - recovered_at).total_seconds() / 3600
        if not replaced and hours > within_hours:
            late.append(
                {
                    "system": system,
                    "generation": generation,
                    "recovered_at": recovered_at.isoformat(timespec="seconds"),
                    "hours": round(hours, 1),
                }
            )
    return late
