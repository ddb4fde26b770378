"""Run the project's playbooks with ansible-playbook against a validated inventory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hipgate.errors import fail
from hipgate.paths import project_root


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ANSIBLE_CONFIG"] = str(project_root() / "ansible.cfg")
    # Use the ansible-playbook next to this interpreter (the project's venv) first.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_playbook(
    playbook: str, inventory: Path, limit: str | None = None, tags: str | None = None, extra: list[str] | None = None
) -> int:
    path = project_root() / "playbooks" / playbook
    if not path.is_file():
        raise fail(
            str(path),
            "找不到剧本。",
            "playbook not found.",
            "确认在 hipgate 项目目录中运行。",
            "run hipgate from its project checkout.",
        )
    cmd = ["ansible-playbook", "-i", str(inventory), str(path)]
    if limit:
        cmd += ["--limit", limit]
    if tags:
        cmd += ["--tags", tags]
    cmd += extra or []
    return subprocess.run(cmd, env=ansible_env(), cwd=project_root(), check=False).returncode
