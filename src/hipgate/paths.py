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
