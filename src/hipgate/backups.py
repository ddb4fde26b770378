"""The deployed backup repositories, reached the way Ansible reaches them (the inventory's ssh
settings): each repository host's `hipgate-backup` (roles/backup/files) reports status, verifies its
repository and runs restore tests. Nothing here holds a secret: repository keys stay on the hosts."""

from __future__ import annotations

import json
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


def run(inv: Any, repo: Repo, command: str, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    argv = ssh(inv, repo.host, f"sudo -n -u {repo.user} {SCRIPT} {command}")
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


def status(inv: Any, repo: Repo) -> dict[str, Any]:
    """hipgate-backup status, or {"error": ...} when the host or its repository does not answer."""
    res = run(inv, repo, "status", timeout=120)
    doc = _json(res)
    if res.returncode != 0 or not doc:
        return {"error": (res.stderr or res.stdout).strip()[-1000:] or f"exit {res.returncode}"}
    return doc


def verify(inv: Any, repo: Repo) -> dict[str, Any]:
    res = run(inv, repo, "verify")
    doc = _json(res) or {"output": (res.stderr or res.stdout).strip()[-2000:]}
    return {**doc, "ok": res.returncode == 0 and bool(doc.get("ok"))}


def restore_test(inv: Any, repo: Repo) -> dict[str, Any]:
    res = run(inv, repo, "restore-test")
    doc = _json(res) or {"error": (res.stderr or res.stdout).strip()[-2000:]}
    return {**doc, "ok": res.returncode == 0 and bool(doc.get("ok"))}


def newest_full(st: dict[str, Any]) -> dict[str, Any] | None:
    fulls = [b for b in (st.get("info") or {}).get("backup", []) if b.get("type") == "full"]
    return fulls[-1] if fulls else None
