"""What the lab benchmarks share: running a command, regrouping a lab's hosts, writing the results file."""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HIPGATE = str(BIN / "hipgate")


def run(cmd: list[str], check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    if check and res.returncode != 0:
        # The first failed Ansible task is often far above the output's tail (the recap); show both.
        at = res.stdout.find("fatal: [")
        first = f"{res.stdout[at : at + 3000]}\n...\n" if at >= 0 else ""
        raise SystemExit(f"{' '.join(cmd)} failed:\n{first}{res.stdout[-4000:]}{res.stderr[-2000:]}")
    return res


def lab_inventory(lab: str) -> Path:
    return Path(os.environ.get("HIPGATE_STATE", "/var/lib/hipgate")) / "labs" / lab / "inventory"


def regroup(
    source: Path, target: Path, layout: Callable[[list[str]], dict[str, list[str]]]
) -> dict[str, dict[str, str]]:
    """Copy a numbered lab's inventory and give its hosts the groups `layout` picks from their sorted names.

    Returns every host's vars (ansible_host, ...), by name.
    """
    shutil.copytree(source, target)
    path = target / "hosts.yml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    hosts = {n: v for g in doc["all"]["children"].values() for n, v in g["hosts"].items()}
    groups = layout(sorted(hosts))
    doc["all"]["children"] = {g: {"hosts": {n: hosts[n] for n in ns}} for g, ns in groups.items()}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return hosts


def update_settings(inv: Path, change: Callable[[dict], None]) -> None:
    """Edit the inventory's hipgate settings in place."""
    path = inv / "group_vars" / "all" / "hipgate.yml"
    conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(conf["hipgate"])
    path.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")


def measured_by(script: str) -> str:
    return (
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by `scripts/{script}` on "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    )


def write_results(out: Path, lines: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
