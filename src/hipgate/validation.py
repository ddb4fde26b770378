"""Cerberus validation whose every error becomes a bilingual Problem naming file, field and fix.

Schemas give each field a `meta` with a short bilingual description; the fix hint reuses it, so
adding a field documents its error too. Shared by the inventory and the policy loaders.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cerberus import Validator, errors

from hipgate.errors import Problem


class _Validator(Validator):  # type: ignore[misc]
    def _check_with_ipv4(self, fld: str, value: Any) -> None:
        try:
            ipaddress.IPv4Address(value)
        except (ipaddress.AddressValueError, ValueError):
            self._error(fld, "ipv4")

    def _check_with_isodate(self, fld: str, value: Any) -> None:
        try:
            datetime.date.fromisoformat(str(value))
        except ValueError:
            self._error(fld, "isodate")

    def _check_with_cidr(self, fld: str, value: Any) -> None:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
            self._error(fld, "cidr")


def _leaves(errs: list[errors.ValidationError]) -> Iterator[errors.ValidationError]:
    for err in errs:
        if err.is_group_error:
            yield from _leaves(list(err.child_errors))
        else:
            yield err


def _meta(rules: dict[str, Any] | None, path: tuple[Any, ...]) -> dict[str, str]:
    """Follow a document path through a schema to the field's bilingual `meta`."""
    node: dict[str, Any] | None = {"schema": rules, "type": "dict"}
    for key in path:
        if node is None:
            break
        if node.get("type") == "list":
            node = node.get("schema")
        elif isinstance(node.get("schema"), dict) and key in node["schema"]:
            node = node["schema"][key]
        elif "valuesrules" in node:
            node = node["valuesrules"]
        else:
            node = None
    return (node or {}).get("meta", {"zh": "参见模板中的说明", "en": "see the comments in the template"})


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path) or "(top level)"


def _problem(file: Path, rules: dict[str, Any], err: errors.ValidationError) -> Problem:
    path = tuple(err.document_path)
    where = f"{file}: {_dotted(path)}"
    meta = _meta(rules, path)
    want_zh, want_en = f"设置为{meta['zh']}。", f"set it to {meta['en']}."
    code, value, constraint = err.code, err.value, err.constraint
    if code == errors.REQUIRED_FIELD.code:
        return Problem(
            where, "缺少必填项。", "required field is missing.", f"添加该项：{meta['zh']}。", f"add it: {meta['en']}."
        )
    if code == errors.UNKNOWN_FIELD.code:
        return Problem(
            where,
            f"未知的键 {path[-1]!r}。",
            f"unknown key {path[-1]!r}.",
            "检查拼写或删除该键（允许的键见模板）。",
            "check its spelling or remove it (allowed keys are in the template).",
        )
    if code == errors.UNALLOWED_VALUE.code and err.rule == "allowed":
        allowed = ", ".join(map(str, constraint))
        return Problem(
            where,
            f"不允许的名称 {value!r}。",
            f"name {value!r} is not allowed.",
            f"使用以下之一：{allowed}。",
            f"use one of: {allowed}.",
        )
    if code == errors.BAD_TYPE.code:
        return Problem(
            where,
            f"类型错误：应为 {constraint}，实为 {type(value).__name__}。",
            f"wrong type: expected {constraint}, got {type(value).__name__}.",
            want_zh,
            want_en,
        )
    if code in (errors.EMPTY_NOT_ALLOWED.code, errors.NOT_NULLABLE.code):
        return Problem(where, "不能为空。", "must not be empty.", want_zh, want_en)
    if code == errors.MIN_LENGTH.code:
        return Problem(
            where,
            f"至少需要 {constraint} 项，当前 {len(value)} 项。",
            f"needs at least {constraint} entries, found {len(value)}.",
            want_zh,
            want_en,
        )
    if code in (errors.MIN_VALUE.code, errors.MAX_VALUE.code):
        bound_zh, bound_en = ("最小", "at least") if code == errors.MIN_VALUE.code else ("最大", "at most")
        return Problem(
            where,
            f"值 {value} 超出范围（{bound_zh} {constraint}）。",
            f"value {value} is out of range ({bound_en} {constraint}).",
            want_zh,
            want_en,
        )
    if code == errors.REGEX_MISMATCH.code:
        return Problem(where, f"格式不正确：{value!r}。", f"malformed value: {value!r}.", want_zh, want_en)
    # Our check_with helpers report through _error(field, tag): cerberus files them as CUSTOM.
    custom = err.info[0] if code == errors.CUSTOM.code and err.info else None
    if custom == "cidr":
        return Problem(
            where,
            f"{value!r} 不是合法的 IPv4 网段（CIDR，主机位须为 0）。",
            f"{value!r} is not a valid IPv4 network in CIDR form (host bits must be zero).",
            want_zh,
            want_en,
        )
    if custom == "isodate":
        return Problem(
            where,
            f"{value!r} 不是 YYYY-MM-DD 格式的日期。",
            f"{value!r} is not a date in YYYY-MM-DD form.",
            want_zh,
            want_en,
        )
    if custom == "ipv4":
        return Problem(
            where, f"{value!r} 不是合法的 IPv4 地址。", f"{value!r} is not a valid IPv4 address.", want_zh, want_en
        )
    return Problem(
        where, f"不符合规则 {err.rule}={constraint!r}。", f"violates rule {err.rule}={constraint!r}.", want_zh, want_en
    )


def validate_document(file: Path, document: Any, rules: dict[str, Any]) -> list[Problem]:
    if not isinstance(document, dict):
        return [
            Problem(
                str(file),
                "文件内容应为 YAML 映射（键: 值）。",
                "the file must hold a YAML mapping (key: value).",
                "参照 inventories/example-province/ 中的模板。",
                "follow the template in inventories/example-province/.",
            )
        ]
    validator = _Validator(rules, allow_unknown=False)
    if validator.validate(document):
        return []
    return [_problem(file, rules, err) for err in _leaves(list(validator._errors))]
