"""Every role's molecule scenario on the lab: converge, idempotence (changed=0), check, testinfra verify."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_every_role_has_a_scenario_and_argument_specs() -> None:
    roles = sorted(p for p in ROLES.iterdir() if p.is_dir())
    assert roles
    for role in roles:
        assert (role / "meta" / "argument_specs.yml").is_file(), role.name
        assert (role / "molecule" / "default" / "molecule.yml").is_file(), role.name
        assert (role / "defaults" / "main.yml").is_file(), role.name
