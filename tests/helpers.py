"""Helpers shared by the unit tests: the project root and editing scratch copies of inventories."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventories" / "example-province"


def copy_example(dest: Path) -> Path:
    target = dest / "province"
    shutil.copytree(EXAMPLE, target)
    return target


def edit_yaml(path: Path, change: Callable[[Any], object]) -> None:
    """Load a YAML file, let `change` mutate it in place (its return value is ignored), write it back."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
