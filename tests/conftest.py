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
    # The long units first, so that under two workers neither waits for the other at the end.
    items.sort(key=lambda item: {"lab": 0, "molecule": 1}.get(_group(item.nodeid), 2))


def _group(nodeid: str) -> str:
    """Which unit of work a test belongs to under `pytest -n 2 --dist loadgroup` (scripts/test): every lab test
    in one (they share one deployed reference lab, a session fixture per worker), every molecule scenario in
    another (each boots its own small lab), every other module whole (its module fixtures start servers once)."""
    path = nodeid.split("::")[0]
    if path.startswith("tests/lab/"):
        return "lab"
    if path.startswith("tests/molecule/"):
        return "molecule"
    return path


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """`--dist loadgroup` with the units of `_group`. xdist 3.8's own loadgroup groups nothing under pytest 9.2
    (it rewrites `item._nodeid`, which pytest no longer reads), so two workers each booted the lab and tore
    down the other's; this scheduler splits node ids itself and does not depend on that."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return UnitScheduling(config, log)  # type: ignore[arg-type]
