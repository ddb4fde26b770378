"""Conformance suite options: which inventory, hosts and policy; where results go.

Run through `hipgate verify -i INVENTORY`, which sets these options and collects the results.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from hipgate.conformance.targets import plan, ssh_config
from hipgate.inventory.load import load_inventory
from hipgate.policy.load import load_policy


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hipgate")
    group.addoption("--hipgate-inventory", help="inventory directory to verify")
    group.addoption("--hipgate-limit", default="", help="comma-separated host names")
    group.addoption("--hipgate-policy", default=None, help="policy file (default policies/gbt22239-level3.yml)")
    group.addoption("--hipgate-results", help="directory for results-*.jsonl")
    group.addoption("--hipgate-today", default=None, help="date for waiver expiry (YYYY-MM-DD), default today")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    cfg = metafunc.config
    inv_path = cfg.getoption("--hipgate-inventory")
    if not inv_path:
        metafunc.parametrize(
            "case",
            [
                pytest.param(
                    None,
                    marks=pytest.mark.skip(reason="no --hipgate-inventory: run through `hipgate verify -i INVENTORY`"),
                )
            ],
        )
        return
    inv = load_inventory(inv_path)
    limit = [h for h in cfg.getoption("--hipgate-limit").split(",") if h]
    policy = load_policy(cfg.getoption("--hipgate-policy"))
    cases = plan(policy, inv, limit)
    metafunc.parametrize("case", cases, ids=[f"{h}::{cid}::{chk}" for cid, chk, h in cases])


@pytest.fixture(scope="session")
def hipgate_run(pytestconfig: pytest.Config) -> dict:
    inv = load_inventory(pytestconfig.getoption("--hipgate-inventory"))
    results = Path(pytestconfig.getoption("--hipgate-results"))
    results.mkdir(parents=True, exist_ok=True)
    today = pytestconfig.getoption("--hipgate-today")
    return {
        "inventory": inv,
        "policy": load_policy(pytestconfig.getoption("--hipgate-policy")),
        "results": results,
        "ssh_config": ssh_config(inv, results / "ssh_config"),
        "today": datetime.date.fromisoformat(today) if today else datetime.date.today(),
    }
