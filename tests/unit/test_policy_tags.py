"""Every control is referenced from the tasks of the roles said to enforce it, by its tag: so
`--tags <tag>` really runs the control, and the policy cannot name a role that does nothing for it."""

from __future__ import annotations

import pytest

from hipgate.paths import project_root
from hipgate.policy.load import load_policy

ROLES = project_root() / "roles"


def role_text(role: str) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted((ROLES / role / "tasks").glob("*.yml")))


@pytest.mark.parametrize("control", [c for c in load_policy().controls if c.check_only is None], ids=lambda c: c.id)
def test_enforcing_roles_carry_the_controls_tag(control: object) -> None:
    for role in (control.role, *control.also):  # type: ignore[attr-defined]
        assert control.tag in role_text(role), f"{control.id}: tag {control.tag} not in roles/{role}/tasks"  # type: ignore[attr-defined]


def test_tagged_tasks_name_a_declared_control() -> None:
    tags = {c.tag for c in load_policy().controls}
    used = {
        word.strip("[],'\" ")
        for p in ROLES.glob("*/tasks/*.yml")
        for line in p.read_text(encoding="utf-8").splitlines()
        if "tags:" in line
        for word in line.split("tags:", 1)[1].split(",")
    }
    unknown = sorted(t for t in used if t.startswith(("gbt22239_", "hipgate_")) and t not in tags)
    assert not unknown, f"tags without a control in policies/: {unknown}"
