"""The custody journal: who did which ceremony step, when - never a secret. JSON lines, mode 0600."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any


def record(path: Path, step: str, system: str, who: str, **facts: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "system": system,
        "step": step,
        "who": who,
        **facts,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")


def entries(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
