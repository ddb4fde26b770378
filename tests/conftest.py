"""Shared fixtures and the rule that skips lab tests where the lab cannot run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import copy_example


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """A writable copy of the documented example inventory (valid as shipped)."""
    return copy_example(tmp_path)


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
