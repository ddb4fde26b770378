"""Which hosts a verify run checks, and how to reach them over SSH (testinfra's ssh backend)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from hipgate.conformance.checks import applies
from hipgate.flows import UNMANAGED_GROUPS
from hipgate.inventory.load import Inventory


def managed_hosts(inv: Inventory, limit: list[str] | None = None) -> list[str]:
    skip = {h for g in UNMANAGED_GROUPS for h in inv.group_hosts(g)}
    hosts = [h for h in inv.hosts if h not in skip]
    return [h for h in hosts if h in limit] if limit else hosts


def probe_hosts(inv: Inventory, limit: list[str] | None = None) -> list[str]:
    """Managed hosts, then the lab's unauthorised host(s): checks that prove refusals run there too."""
    hosts = managed_hosts(inv, limit) + [h for h in inv.group_hosts("outsider") if h not in inv.group_hosts("natplat")]
    return [h for h in dict.fromkeys(hosts) if not limit or h in limit]


def plan(policy: Any, inv: Inventory, limit: list[str] | None = None) -> list[tuple[str, str, str]]:
    """Every (control, check, host) a verify run executes: each check only where it applies."""
    managed = managed_hosts(inv)
    return [
        (c.id, check, host)
        for c in policy.controls
        for check in c.checks
        for host in probe_hosts(inv, limit)
        if applies(check, host, inv, managed)
    ]


def ssh_config(inv: Inventory, dest: Path) -> Path:
    """An ssh_config for testinfra: the inventory's own -F file where it names one (the lab),
    else one written from the inventory's connection variables."""
    common = str(inv.vars.get("ansible_ssh_common_args", ""))
    words = shlex.split(common)
    if "-F" in words and words.index("-F") + 1 < len(words):
        return Path(words[words.index("-F") + 1])
    blocks = []
    for name, hv in inv.hosts.items():
        merged = {**inv.vars, **hv}
        lines = [f"Host {name}", f"  HostName {merged['ansible_host']}"]
        if merged.get("ansible_user"):
            lines.append(f"  User {merged['ansible_user']}")
        if merged.get("ansible_port"):
            lines.append(f"  Port {merged['ansible_port']}")
        if merged.get("ansible_ssh_private_key_file"):
            lines.append(f"  IdentityFile {merged['ansible_ssh_private_key_file']}")
        blocks.append("\n".join(lines))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        "\n\n".join(blocks) + "\n\nHost *\n  BatchMode yes\n  ControlMaster auto\n"
        f"  ControlPath {dest.parent}/cm-%C\n  ControlPersist 60s\n"
    )
    dest.chmod(0o600)
    return dest
