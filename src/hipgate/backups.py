"""The deployed backup repositories, reached the way Ansible reaches them (the inventory's ssh
settings): each repository host's `hipgate-backup` (roles/backup/files) reports status, verifies its
repository and runs restore tests. Nothing here holds a secret: repository keys stay on the hosts."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any

from hipgate.custody.remote import ssh

SITE_USER = "pgbackrest"  # roles/backup/defaults/main.yml backup_site_user
SCRIPT = "/usr/local/bin/hipgate-backup"


@dataclass(frozen=True)
class Repo:
    host: str
    index: int
    user: str  # the account that owns the repository and runs hipgate-backup
    offsite: bool


def repositories(inv: Any, system: str) -> list[Repo]:
    """repo1 on the database host, repo2.. on the backup sites in inventory order (as the role)."""
    inv.database_host(system)
    sites = inv.group_hosts("backup_sites")
    return [Repo(system, 1, "postgres", False)] + [Repo(h, i + 2, SITE_USER, True) for i, h in enumerate(sites)]


def run(
    inv: Any, repo: Repo, command: str, timeout: int = 1800, as_root: bool = False
) -> subprocess.CompletedProcess[str]:
    who = "" if as_root else f"-u {repo.user} "
    argv = ssh(inv, repo.host, f"sudo -n {who}{SCRIPT} {command}")
    # A site that is down must show up as an error within seconds, not after TCP's own timeouts; and
    # no shared master connection, which would outlive a dead site and hold this call's output open.
    options = ("ConnectTimeout=10", "ServerAliveInterval=15", "ServerAliveCountMax=2", "ControlMaster=no")
    argv[1:1] = [word for o in options for word in ("-o", o)] + ["-S", "none"]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout} s / 超时")


def _json(res: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        doc = json.loads(res.stdout.strip().splitlines()[-1]) if res.stdout.strip() else {}
    except json.JSONDecodeError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
LABEL = re.compile(r"^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finished_at(record: dict[str, Any]) -> datetime.datetime | None:
    """A restore-test record's `finished` (UTC, as hipgate-backup writes it), or None if malformed."""
    value = record.get("finished")
    if not isinstance(value, str) or not TIMESTAMP.match(value):
        return None
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def _record_ok(last: Any) -> bool:
    return (
        isinstance(last, dict)
        and finished_at(last) is not None
        and isinstance(last.get("ok"), bool)
        and isinstance(last.get("tables", {}), dict)
        and isinstance(last.get("steps", []), list)
    )


def parse_status(doc: dict[str, Any], host: str) -> dict[str, Any]:
    """A host's `hipgate-backup status`, with every field the gate and the checks read in the form
    hipgate-backup writes it. What is not is dropped (so nothing trusts it) and named in `malformed`:
    a forged or damaged file on a host is an explained failure, never a crash or a pass."""
    bad: list[dict[str, str]] = []

    def drop(kind: str, field: str, value: Any) -> None:
        bad.append(
            {
                "kind": kind,
                "file": f"{host}: status.{field}",
                "error": f"格式错误 / malformed: {str(value)[:80]!r}",
            }
        )

    out = dict(doc)
    listed = doc.get("malformed") or []
    for m in listed if isinstance(listed, list) else [listed]:
        if isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("kind", "file", "error")):
            bad.append({"kind": m["kind"], "file": f"{host}:{m['file']}", "error": m["error"]})
        else:
            drop("status", "malformed", m)
    if not isinstance(doc.get("repo"), int) or isinstance(doc.get("repo"), bool):
        drop("status", "repo", doc.get("repo"))
        out["repo"] = None
    for field in ("newest_full_age_hours", "full_max_age_hours"):
        if doc.get(field) is not None and not _num(doc.get(field)):
            drop("status", field, doc.get(field))
            out[field] = None
    info = doc.get("info")
    if not isinstance(info, dict):
        info = {}
    backups_ = (
        [b for b in info.get("backup") or [] if isinstance(b, dict)] if isinstance(info.get("backup"), list) else []
    )
    good = [
        b
        for b in backups_
        if isinstance(b.get("label"), str) and LABEL.match(b["label"]) and isinstance(b.get("type"), str)
    ]
    if len(good) != len(backups_) or (info and not isinstance(info.get("backup", []), list)):
        drop("status", "info.backup", "entries without a valid label/type")
    out["info"] = {**info, "backup": good}
    logs = doc.get("logs") if isinstance(doc.get("logs"), list) else []
    if not isinstance(doc.get("logs", []), list):
        drop("backup-log", "logs", doc.get("logs"))
    out["logs"] = []
    for lg in logs:
        if (
            isinstance(lg, dict)
            and isinstance(lg.get("name"), str)
            and isinstance(lg.get("sha256"), str)
            and SHA256.match(lg["sha256"])
        ):
            out["logs"].append(lg)
        else:
            drop("backup-log", "logs[]", lg)
    last = doc.get("last_restore_test")
    if last is not None and not _record_ok(last):
        drop("restore-test", "last_restore_test", last)
        out["last_restore_test"] = None
    out["malformed"] = bad
    return out


def malformed_lines(states: dict[str, dict[str, Any]], kinds: tuple[str, ...] | None = None) -> list[str]:
    """One bilingual line per malformed file or field, as shown to the operator."""
    return [
        f"{m['file']}: {m['error']}"
        for st in states.values()
        for m in st.get("malformed") or []
        if kinds is None or m["kind"] in kinds
    ]


def status(inv: Any, repo: Repo) -> dict[str, Any]:
    """hipgate-backup status, or {"error": ...} when the host or its repository does not answer."""
    res = run(inv, repo, "status", timeout=120)
    doc = _json(res)
    if res.returncode != 0 or not doc:
        return {"error": (res.stderr or res.stdout).strip()[-1000:] or f"exit {res.returncode}"}
    return parse_status(doc, repo.host)


def verify(inv: Any, repo: Repo) -> dict[str, Any]:
    res = run(inv, repo, "verify")
    doc = _json(res) or {"output": (res.stderr or res.stdout).strip()[-2000:]}
    return {**doc, "ok": res.returncode == 0 and bool(doc.get("ok"))}


def restore_test(inv: Any, repo: Repo) -> dict[str, Any]:
    # As root: it restores as the repository account and root alone writes the record.
    res = run(inv, repo, "restore-test", as_root=True)
    doc = _json(res) or {"error": (res.stderr or res.stdout).strip()[-2000:]}
    return {**doc, "ok": res.returncode == 0 and bool(doc.get("ok"))}


def newest_full(st: dict[str, Any]) -> dict[str, Any] | None:
    info = st.get("info") if isinstance(st.get("info"), dict) else {}
    fulls = [b for b in info.get("backup") or [] if isinstance(b, dict) and b.get("type") == "full"]
    return fulls[-1] if fulls else None
