"""One thing wrong with a record or a message, naming the field: it becomes a quarantine reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    """`path` names the field (`input.records[0].psn_name`, `X-HSA-Msgid`); `rule` is the kind of
    failure (required, max_length, pattern, enum, ...); zh/en say what is wrong without the value of
    a personal-data element."""

    path: str
    rule: str
    zh: str
    en: str

    def reason(self) -> str:
        """One line for a quarantine record or a log: `field: 中文 / English`."""
        return f"{self.path}: {self.zh} / {self.en}"


def dotted(parts: list[str | int] | tuple[str | int, ...]) -> str:
    """['input', 'records', 0, 'certno'] -> 'input.records[0].certno'."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(body)"
