"""Bilingual user-facing errors: every message names where, what, and the fix."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with user input, in Chinese and English, with the fix."""

    where: str  # file and field path, e.g. "inventories/x/hosts.yml: all.children.database"
    zh: str
    en: str
    fix_zh: str
    fix_en: str

    def render(self) -> str:
        return f"{self.where}\n  错误: {self.zh}\n  Error: {self.en}\n  修复: {self.fix_zh}\n  Fix: {self.fix_en}"


@dataclass
class UserError(Exception):
    """Raised for bad input or an unmet precondition; the CLI prints it and exits with `exit_code`."""

    problems: list[Problem] = field(default_factory=list)
    exit_code: int = 2

    def __str__(self) -> str:
        return "\n\n".join(p.render() for p in self.problems)


def fail(where: str, zh: str, en: str, fix_zh: str, fix_en: str, exit_code: int = 2) -> UserError:
    """Build a single-problem UserError (callers `raise fail(...)`)."""
    return UserError([Problem(where, zh, en, fix_zh, fix_en)], exit_code)
