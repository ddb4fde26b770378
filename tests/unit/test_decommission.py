"""Decommissioning archives and never deletes: the guard passes the real playbook and refuses one
with any task that could delete data (the playbook runs the same guard on itself first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hipgate.playbook_guard import deleting_tasks

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "decommission.yml"


def test_the_decommission_playbook_deletes_nothing_and_guards_itself() -> None:
    assert deleting_tasks(PLAYBOOK) == []
    first = yaml.safe_load(PLAYBOOK.read_text(encoding="utf-8"))[0]
    assert "hipgate.playbook_guard" in first["tasks"][0]["ansible.builtin.command"]["argv"]


@pytest.mark.parametrize(
    "task",
    [
        {"name": "wipe", "ansible.builtin.shell": "rm -rf /var/lib/postgresql/15/main"},
        {"name": "wipe", "ansible.builtin.command": {"argv": ["pg_dropcluster", "15", "main"]}},
        {"name": "wipe", "ansible.builtin.file": {"path": "/var/lib/pgbackrest", "state": "absent"}},
        {"name": "wipe", "ansible.builtin.command": {"cmd": "pgbackrest --stanza=db expire --set=x"}},
        {"name": "wipe", "ansible.builtin.shell": "find /var/lib/pgbackrest-logs -delete"},
        {"name": "wipe", "ansible.builtin.shell": {"cmd": "psql -c 'DROP DATABASE exchange'"}},
        {"name": "wipe", "ansible.builtin.apt": {"name": "postgresql-15", "state": "absent"}},
    ],
)
def test_a_playbook_with_a_deleting_task_is_refused(tmp_path: Path, task: dict) -> None:
    plays = yaml.safe_load(PLAYBOOK.read_text(encoding="utf-8"))
    # Hidden inside a block of the last play: nesting does not hide it.
    plays[-1]["tasks"].append({"name": "inner", "block": [task]})
    edited = tmp_path / "decommission.yml"
    edited.write_text(yaml.safe_dump(plays, allow_unicode=True), encoding="utf-8")
    assert deleting_tasks(edited), task
    res = subprocess.run([sys.executable, "-m", "hipgate.playbook_guard", str(edited)], capture_output=True, text=True)
    assert res.returncode == 3 and "refused" in res.stderr and "拒绝" in res.stderr
