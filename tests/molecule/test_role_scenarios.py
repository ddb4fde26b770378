"""Every role's molecule scenario on the lab: converge, idempotence (changed=0), check, testinfra verify."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"
SCENARIOS = sorted(p.parents[2] for p in ROLES.glob("*/molecule/default/molecule.yml"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.mark.lab
@pytest.mark.molecule
@pytest.mark.parametrize("role", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_molecule_scenario(role: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["NO_COLOR"] = "1"
    res = subprocess.run(["molecule", "test"], cwd=role, env=env, capture_output=True, text=True, check=False)
    log = ANSI.sub("", res.stdout + res.stderr)
    assert res.returncode == 0, log[-6000:]
    for step in ("converge", "idempotence", "check", "verify"):
        assert re.search(rf"{step}: Executed: Successful", log), f"{step} did not succeed\n{log[-3000:]}"
    # testinfra really ran checks on the lab hosts (a verify with nothing collected would pass too).
    passed = re.search(r"=+ (\d+) passed", log)
    assert passed and int(passed.group(1)) > 0, log[-3000:]
    assert "failed" not in (passed.group(0) if passed else "")


def _converged_roles(scenario: Path) -> set[str]:
    """Roles a scenario's converge applies, with their meta dependencies."""
    text = (scenario / "molecule" / "default" / "converge.yml").read_text()
    found = set(re.findall(r"(?:role|name): ([a-z_]+)\n", text)) & {p.name for p in ROLES.iterdir()}
    todo = list(found)
    while todo:
        meta = yaml.safe_load((ROLES / todo.pop() / "meta" / "main.yml").read_text()) or {}
        for dep in meta.get("dependencies") or []:
            name = dep["role"] if isinstance(dep, dict) else dep
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


def test_every_role_has_a_scenario_and_argument_specs() -> None:
    roles = sorted(p for p in ROLES.iterdir() if p.is_dir())
    assert roles
    for role in roles:
        assert (role / "meta" / "argument_specs.yml").is_file(), role.name
        assert (role / "defaults" / "main.yml").is_file(), role.name
        if (role / "molecule" / "default" / "molecule.yml").is_file():
            continue
        # Or it shares another role's scenario (one lab for both), which must really converge it.
        shared = role / "molecule" / "shared.yml"
        assert shared.is_file(), f"{role.name}: no molecule scenario"
        host_scenario = ROLES / yaml.safe_load(shared.read_text())["scenario"]
        assert (host_scenario / "molecule" / "default" / "molecule.yml").is_file(), role.name
        assert role.name in _converged_roles(host_scenario), f"{role.name} is not converged by {host_scenario.name}"
