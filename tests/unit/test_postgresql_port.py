"""hipgate.database.port is the port PostgreSQL listens on, and every task of the role that talks
to the server uses it (else the firewall and the checks guard one port while the server listens
on another, or the role cannot reach its own server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from helpers import ROOT

ROLE = ROOT / "roles" / "postgresql"


def tasks() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted((ROLE / "tasks").glob("*.yml")):
        for task in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            found.append((path, task))
    return found


def test_port_defaults_to_the_inventory() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert "hipgate.database.port" in str(defaults["postgresql_port"])


def test_every_task_talking_to_the_server_uses_the_port() -> None:
    talking = 0
    for path, task in tasks():
        module = next((k for k in task if k.startswith("community.postgresql.")), None)
        if module:
            talking += 1
            assert "postgresql_port" in str(task[module].get("port", "")), (path.name, task["name"])
        cmd = task.get("ansible.builtin.command") or {}
        argv = cmd.get("argv") if isinstance(cmd, dict) else None
        if argv and argv[0] == "psql":
            talking += 1
            assert "-p" in argv and "postgresql_port" in str(argv[argv.index("-p") + 1]), (path.name, task["name"])
    assert talking >= 3
