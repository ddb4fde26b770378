"""Strict reading of the exchange's JSON config files (relay and middleware): every field checked for its
type and form, unknown keys refused, and each problem named with the file, the field and the fix in
Chinese and English (a UserError, as `hipgate inventory check` reports)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hipgate.errors import Problem, UserError
from hipgate.exchange.interface import parse_json

MAX_CONFIG_BYTES = 1 << 20


class Fields:
    """One JSON object of a config file, read field by field; problems are collected, then raised at once."""

    def __init__(self, file: Path, doc: Any, where: str = "", problems: list[Problem] | None = None) -> None:
        self.file, self.where = file, where
        self.problems = problems if problems is not None else []
        self.doc: Mapping[str, Any] = doc if isinstance(doc, Mapping) else {}
        self.seen: set[str] = set()
        if not isinstance(doc, Mapping):
            self.bad("", "应为 JSON 对象。", "must be a JSON object.", "写成 {...}。", "write it as {...}.")

    def path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def bad(self, name: str, zh: str, en: str, fix_zh: str, fix_en: str) -> None:
        self.problems.append(Problem(f"{self.file}: {self.path(name) or '(top)'}", zh, en, fix_zh, fix_en))

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ..., example: str = "") -> Any:
        self.seen.add(name)
        if name not in self.doc:
            if default is ...:
                self.bad(name, "缺少必填项。", "is required.", f"加上该项{example and '，如 ' + example}。",
                         f"add it{example and ', such as ' + example}.")  # fmt: skip
            return None if default is ... else default
        value = self.doc[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " 或 ".join(k.__name__ for k in kinds)
            self.bad(name, f"类型应为 {names}，实为 {type(value).__name__}。",
                     f"must be {' or '.join(k.__name__ for k in kinds)}, not {type(value).__name__}.",
                     f"改为正确的类型{example and '，如 ' + example}。",
                     f"give the right type{example and ', such as ' + example}.")  # fmt: skip
            return None
        return value

    def text(self, name: str, pattern: str, what: tuple[str, str], default: Any = ..., example: str = "") -> Any:
        value = self.get(name, str, default, example)
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            self.bad(name, f"不是有效的{what[0]}。", f"is not a valid {what[1]}.", f"改为如 {example}。",
                     f"use a value such as {example}.")  # fmt: skip
            return None
        return value

    def number(self, name: str, low: float, high: float, default: Any = ..., integer: bool = True) -> Any:
        value = self.get(name, int if integer else (int, float), default)
        if value is not None and not low <= value <= high:
            self.bad(name, f"应在 {low}–{high} 之间。", f"must be between {low} and {high}.",
                     f"改为 {low}–{high} 之间的数。", f"give a number from {low} to {high}.")  # fmt: skip
            return None
        return value

    def file_path(self, name: str, default: Any = ..., must_exist: bool = True) -> Path | None:
        value = self.get(name, str, default, example='"/etc/hipgate/exchange/x.pem"')
        if not isinstance(value, str):
            return None
        p = Path(value)
        p = p if p.is_absolute() else self.file.parent / p
        if must_exist and not p.is_file():
            self.bad(name, f"文件 {p} 不存在或不是普通文件。", f"file {p} does not exist or is not a regular file.",
                     "给出存在的文件路径（相对路径相对于配置文件）。",
                     "give the path of an existing file (a relative path is relative to the config file).")  # fmt: skip
            return None
        return p

    def section(self, name: str, default: Any = ...) -> Fields:
        value = self.get(name, dict, default)
        return Fields(self.file, value if value is not None else {}, self.path(name), self.problems)

    def done(self) -> None:
        """Unknown keys are refused (a misspelt key would otherwise be silently ignored)."""
        for name in self.doc:
            if name not in self.seen:
                known = ", ".join(sorted(self.seen))
                self.bad(name, "未知配置项（拼写错误？）。", "unknown key (misspelt?).", f"删除或改为：{known}。",
                         f"remove it or use one of: {known}.")  # fmt: skip


def read_json(file: Path) -> tuple[Any, list[Problem]]:
    """The parsed file, or the problem that stopped it (missing, too large, not JSON, duplicate key)."""
    fix = ("改正配置文件（JSON，UTF-8）。", "fix the config file (JSON, UTF-8).")
    try:
        if not file.is_file():
            raise OSError("not a regular file")
        if file.stat().st_size > MAX_CONFIG_BYTES:
            return None, [Problem(str(file), "配置文件超过 1 MiB。", "the config file is larger than 1 MiB.", *fix)]
        return parse_json(file.read_bytes()), []
    except OSError as exc:
        return None, [Problem(str(file), f"无法读取配置文件：{exc}", f"cannot read the config file: {exc}", *fix)]
    except (ValueError, UnicodeDecodeError) as exc:
        return None, [Problem(str(file), f"不是有效的 JSON：{exc}", f"not valid JSON: {exc}", *fix)]


def raise_problems(problems: list[Problem]) -> None:
    if problems:
        raise UserError(problems)


def dump(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2)
