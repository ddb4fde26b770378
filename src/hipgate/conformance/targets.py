"""Which hosts a verify run checks, and how to reach them over SSH (testinfra's ssh backend)."""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path
from typing import Any

from hipgate.conformance.checks import applies
from hipgate.errors import fail
from hipgate.flows import UNMANAGED_GROUPS
from hipgate.inventory.load import Inventory

# ssh_config is line based: a value holding a newline would start a new option (ProxyCommand).
# load_inventory already refuses such values; this writer refuses them again on its own.
_SSH_VALUE = {
    "name": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"),
    "ansible_host": re.compile(r"[0-9.]{7,15}"),
    "ansible_user": re.compile(r"[a-z_][a-z0-9_-]{0,31}"),
    "ansible_port": re.compile(r"[0-9]{1,5}"),
    "ansible_ssh_private_key_file": re.compile(r"[A-Za-z0-9_./~+@-]{1,4096}"),
}


def _ssh_value(host: str, key: str, value: Any) -> str:
    text = str(value)
    ok = _SSH_VALUE[key].fullmatch(text) is not None
    if ok and key == "ansible_host":
        try:
            ipaddress.IPv4Address(text)
        except ValueError:
            ok = False
    if not ok:
        raise fail(
            f"{host}: {key}",
            f"值 {text!r} 不能写入 ssh_config（含空白、换行或特殊字符）。",
            f"value {text!r} cannot go into an ssh_config (whitespace, newline or special character).",
            "改正清单中的该值，并运行 hipgate inventory check。",
            "correct the value in the inventory and run hipgate inventory check.",
        )
    return text


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
        lines = [
            f"Host {_ssh_value(name, 'name', name)}",
            f"  HostName {_ssh_value(name, 'ansible_host', merged['ansible_host'])}",
        ]
        for key, option in (
            ("ansible_user", "User"),
            ("ansible_port", "Port"),
            ("ansible_ssh_private_key_file", "IdentityFile"),
        ):
            if merged.get(key):
                lines.append(f"  {option} {_ssh_value(name, key, merged[key])}")
        blocks.append("\n".join(lines))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        "\n\n".join(blocks) + "\n\nHost *\n  BatchMode yes\n  ControlMaster auto\n"
        f"  ControlPath {dest.parent}/cm-%C\n  ControlPersist 60s\n"
    )
    dest.chmod(0o600)
    return dest
