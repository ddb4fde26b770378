"""One reference lab for every lab test module: booted, deployed by site.yml and its database
password put in split custody once per session, removed at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from hipgate.inventory.load import load_inventory
from lab_reference import INV, LAB, LAB_DIR, hipgate, replace_first_passwords


@pytest.fixture(scope="session")
def lab() -> Iterator[dict]:
    # HIPGATE_KEEP_LAB=1 (developers): reuse a deployed reference lab and leave it up afterwards.
    keep = os.environ.get("HIPGATE_KEEP_LAB") == "1"
    if not keep:
        hipgate("lab", "down", "--name", LAB, check=False)  # leftovers of an interrupted run
    hipgate("lab", "up", "--name", LAB)
    deployed = hipgate("deploy", "-i", str(INV))
    # What an operator does after the first deployment: the superuser password into custody.
    status = hipgate("custody", "status", "database", "-i", str(INV), *TOKEN, check=False)
    custody = status if status.returncode == 0 else hipgate("custody", "init", "database", "-i", str(INV), *TOKEN)
    inv = load_inventory(INV)
    replace_first_passwords(f"https://{inv.address(inv.group_hosts('vault')[0])}:8200")
    yield {
        "inv": inv,
        "deploy": deployed.stdout,
        "custody_init": custody.stdout + custody.stderr,
        "addr": {h: inv.address(h) for h in inv.hosts},
    }
    if not keep:
        hipgate("lab", "down", "--name", LAB, check=False)


TOKEN = ("--token-file", str(LAB_DIR / "custody" / "operator.token"))
