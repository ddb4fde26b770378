"""Shared fixtures: the project root and a scratch copy of the example inventory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventories" / "example-province"


def copy_example(dest: Path) -> Path:
    target = dest / "province"
    shutil.copytree(EXAMPLE, target)
    return target


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """A writable copy of the documented example inventory (valid as shipped)."""
    return copy_example(tmp_path)


def edit_yaml(path: Path, change: Callable[[Any], object]) -> None:
    """Load a YAML file, let `change` mutate it in place (its return value is ignored), write it back."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/lab/ and those marked `lab` boot real hosts: root, systemd-nspawn, debootstrap."""
    reason = None
    if os.geteuid() != 0:
        reason = "lab tests need root / 实验环境测试需要 root"
    elif not shutil.which("systemd-nspawn") or not shutil.which("debootstrap"):
        reason = "systemd-nspawn/debootstrap missing: run scripts/setup / 请先运行 scripts/setup"
    for item in items:
        if "/tests/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)
        if reason and item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.skip(reason=reason))
