"""Which hosts a verify run checks, and how to reach them over SSH (testinfra's ssh backend)."""

from __future__ import annotations

import shlex
from pathlib import Path

from hipgate.inventory.load import Inventory

# Hosts hipgate does not manage: the national platform and the unauthorised test host.
UNMANAGED_GROUPS = ("natplat", "outsider", "simulated_peers")


def managed_hosts(inv: Inventory, limit: list[str] | None = None) -> list[str]:
    skip = {h for g in UNMANAGED_GROUPS for h in inv.group_hosts(g)}
    hosts = [h for h in inv.hosts if h not in skip]
    return [h for h in hosts if h in limit] if limit else hosts


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
