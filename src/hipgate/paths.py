"""Where the project's playbooks, roles and inventories are."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding playbooks/ (HIPGATE_HOME overrides; else this package's checkout, else cwd)."""
    if os.environ.get("HIPGATE_HOME"):
        return Path(os.environ["HIPGATE_HOME"]).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "playbooks").is_dir() and (parent / "roles").is_dir():
            return parent
    return Path.cwd()


STATE_ENV = "HIPGATE_STATE_DIR"


def state_dir() -> Path:
    """Control-node state (unseal keys, custodians' files, CA and host keys, journals): HIPGATE_STATE_DIR,
    default ~/.hipgate. Kept per province under <state>/<province_id>/, so two inventories never share it."""
    configured = os.environ.get(STATE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".hipgate"


def province_state(province_id: str, kind: str) -> Path:
    """<state>/<province_id>/<kind> (kind: custody or pki). province_id is validated by the inventory
    schema (a strict slug), so it is one path component."""
    return state_dir() / province_id / kind
