"""Load policies/*.yml: validate with cerberus, then cross-check ids, checks, roles and tags."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipgate.errors import Problem, UserError
from hipgate.inventory.yamlio import read_yaml
from hipgate.paths import project_root
from hipgate.policy import schema
from hipgate.validation import validate_document


@dataclass(frozen=True)
class Waiver:
    hosts: tuple[str, ...]
    scope: str | None
    justification_zh: str
    justification_en: str
    approver: str
    expires: datetime.date

    def applies(self, host: str, inventory_name: str) -> bool:
        return host in self.hosts and (self.scope is None or self.scope == inventory_name)

    def expired(self, today: datetime.date) -> bool:
        return today > self.expires


@dataclass(frozen=True)
class Control:
    id: str
    section: str
    section_zh: str
    section_en: str
    title_zh: str
    title_en: str
    requirement_zh: str
    requirement_en: str
    severity: str
    role: str | None
    tag: str | None
    check_only: dict[str, str] | None
    checks: tuple[str, ...]
    parameters: dict[str, dict[str, Any]]
    waivers: tuple[Waiver, ...]
    also: tuple[str, ...] = ()  # further roles enforcing it under the same tag

    @property
    def roles(self) -> str:
        return ", ".join(r for r in (self.role, *self.also) if r)

    def params(self) -> dict[str, Any]:
        return {k: v["value"] for k, v in self.parameters.items()}


@dataclass
class Policy:
    path: Path
    id: str
    version: str
    standard: str
    controls: list[Control] = field(default_factory=list)

    def control(self, control_id: str) -> Control:
        return next(c for c in self.controls if c.id == control_id)


def default_policy_path() -> Path:
    return project_root() / "policies" / "gbt22239-level3.yml"


def _name_controls(problems: list[Problem], doc: Any) -> list[Problem]:
    """controls.[3].checks reads better as controls[GBT22239-8.1.4.2-b].checks."""
    controls = doc.get("controls") if isinstance(doc, dict) else None

    def rename(match: re.Match[str]) -> str:
        i = int(match.group(1))
        if isinstance(controls, list) and i < len(controls) and isinstance(controls[i], dict):
            cid = controls[i].get("id")
            if isinstance(cid, str) and cid:
                return f"controls[{cid}]"
        return match.group(0)

    return [Problem(re.sub(r"controls\.\[(\d+)\]", rename, p.where), p.zh, p.en, p.fix_zh, p.fix_en) for p in problems]


def _cross_checks(path: Path, controls: list[Control]) -> list[Problem]:
    from hipgate.conformance.checks import CHECKS

    problems: list[Problem] = []
    seen: set[str] = set()
    roles_dir = project_root() / "roles"
    for c in controls:
        where = f"{path}: controls[{c.id}]"
        if c.id in seen:
            problems.append(
                Problem(
                    f"{where}.id",
                    f"控制项 {c.id} 重复声明。",
                    f"control {c.id} is declared twice.",
                    "每个控制项只声明一次。",
                    "declare each control once.",
                )
            )
        seen.add(c.id)
        for name in c.checks:
            if name not in CHECKS:
                problems.append(
                    Problem(
                        f"{where}.checks",
                        f"未知的检查 {name!r}。",
                        f"unknown check {name!r}.",
                        "使用 src/hipgate/conformance/checks.py 中定义的检查名。",
                        "use a check defined in src/hipgate/conformance/checks.py.",
                    )
                )
        if c.check_only is None:
            if not c.role or not c.tag:
                problems.append(
                    Problem(
                        f"{where}.enforced_by",
                        "缺少 role 与 tag。",
                        "role and tag are missing.",
                        "填写落实该项的 role 和 tag，或改为 check_only 并说明原因。",
                        "name the role and tag that enforce it, or use check_only with a reason.",
                    )
                )
            else:
                for extra in c.also:
                    if not (roles_dir / extra).is_dir():
                        problems.append(
                            Problem(
                                f"{where}.enforced_by.also",
                                f"角色 {extra} 不存在。",
                                f"role {extra} does not exist.",
                                "使用 roles/ 下已有的角色。",
                                "use a role under roles/.",
                            )
                        )
                if not (roles_dir / c.role).is_dir():
                    problems.append(
                        Problem(
                            f"{where}.enforced_by.role",
                            f"角色 {c.role} 不存在。",
                            f"role {c.role} does not exist.",
                            "使用 roles/ 下已有的角色。",
                            "use a role under roles/.",
                        )
                    )
                want = "gbt22239_" + c.id.removeprefix("GBT22239-")
                if c.id.startswith("GBT22239-") and c.tag != want:
                    problems.append(
                        Problem(
                            f"{where}.enforced_by.tag",
                            f"标签 {c.tag} 与编号不符。",
                            f"tag {c.tag} does not match the id.",
                            f"改为 {want}。",
                            f"use {want}.",
                        )
                    )
    return problems


def load_policy(path: Path | str | None = None) -> Policy:
    """Read and validate a policy file; raise UserError naming the control and field of every problem."""
    path = Path(path) if path else default_policy_path()
    doc = read_yaml(path)
    problems = _name_controls(validate_document(path, doc, schema.POLICY_FILE), doc)
    if problems:
        raise UserError(problems)
    controls = []
    for c in doc["controls"]:
        enf = c["enforced_by"]
        waivers = tuple(
            Waiver(
                tuple(w["hosts"]),
                w.get("scope"),
                w["justification_zh"],
                w["justification_en"],
                w["approver"],
                datetime.date.fromisoformat(w["expires"]),
            )
            for w in c["waivers"]
        )
        controls.append(
            Control(
                c["id"],
                c["section"],
                c["section_zh"],
                c["section_en"],
                c["title_zh"],
                c["title_en"],
                c["requirement_zh"],
                c["requirement_en"],
                c["severity"],
                enf.get("role"),
                enf.get("tag"),
                enf.get("check_only"),
                tuple(c["checks"]),
                c["parameters"],
                waivers,
                tuple(enf.get("also") or ()),
            )
        )
    cross = _cross_checks(path, controls)
    if cross:
        raise UserError(cross)
    head = doc["policy"]
    return Policy(path, head["id"], head["version"], head["standard"], controls)
