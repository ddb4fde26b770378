"""docs/threat-model.md: every property names at least one test, and every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "threat-model.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def _rows() -> dict[str, str]:
    """Property id -> the table row that declares it."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*(TM-[A-Z]+-\d+)\s*\|", line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} declared twice"
            rows[m.group(1)] = line
    return rows


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_property_names_a_test_that_exists() -> None:
    rows = _rows()
    assert len(rows) >= 10, "the threat model lists its properties in one table"
    missing = []
    for pid, row in rows.items():
        refs = TEST_REF.findall(row)
        if not refs:
            missing.append(f"{pid}: names no test")
        for file, name in refs:
            path = ROOT / file
            if not path.is_file() or name not in _test_names(path):
                missing.append(f"{pid}: {file}::{name} does not exist")
    assert not missing, "\n".join(missing)


def test_every_adversary_in_a_property_is_declared() -> None:
    text = DOC.read_text(encoding="utf-8")
    declared = set(re.findall(r"^\|\s*(ADV-[A-Z]+)\s*\|", text, re.MULTILINE))
    used = {a for row in _rows().values() for a in re.findall(r"ADV-[A-Z]+", row)}
    assert used <= declared, used - declared
    assert declared <= used, f"adversaries with no property: {declared - used}"
