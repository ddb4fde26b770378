"""The exchange checks as they were before issue 17 item 4 made them fast, kept verbatim as the reference:
the equivalence tests compare the compiled checks with these record by record, and scripts/bench-exchange-cpu
measures them as the anchor of its ratios. Not used by hipgate itself."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from hipgate.exchange.dataset import (
    DATE_RE,
    DATETIME_FORMAT,
    DATETIME_RE,
    Dataset,
    Element,
    RecordType,
    decimal_pattern,
)
from hipgate.exchange.interface import build_envelope, validate_request
from hipgate.exchange.ledger import merge_violations
from hipgate.exchange.violations import Violation

_CHECK_SIGNER = {"signtype": "SM2", "cainfo": "00", "sign": "AAAAAAAAAAAA"}


def _fails(path: str, rule: str, zh: str, en: str) -> list[Violation]:
    return [Violation(path, rule, zh, en)]


def _shown(el: Element, value: Any, lang: str = "en") -> str:
    if el.pii:
        return "（个人信息，不显示）" if lang == "zh" else "(personal data, not shown)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _element_violations(el: Element, value: Any, path: str, ds: Dataset) -> list[Violation]:
    if value is None:
        if el.required:
            return _fails(path, "required", "必填数据元为空。", "a required element is null.")
        return []
    if el.kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return _fails(path, "type", "应为整数。", f"must be an integer, not {type(value).__name__}.")
        top = 10 ** (el.length or 1) - 1
        if not 0 <= value <= top:
            return _fails(path, "range", f"超出范围 0–{top}。", f"out of range 0-{top}.")
        return []
    if not isinstance(value, str):
        return _fails(path, "type", "应为字符串。", f"must be a string, not {type(value).__name__}.")
    if el.kind == "decimal":
        p, s = el.precision_scale
        if not re.fullmatch(decimal_pattern(p, s).strip("^$"), value):
            return _fails(
                path,
                "pattern",
                f"不是 decimal({p},{s}) 的十进制数字符串：{_shown(el, value, 'zh')}。",
                f"not a decimal({p},{s}) number written as a string: {_shown(el, value)}.",
            )
        return []
    if el.kind in ("date", "datetime"):
        fmt, form = ("%Y-%m-%d", "yyyy-MM-dd") if el.kind == "date" else (DATETIME_FORMAT, "yyyy-MM-dd HH:mm:ss")
        regex = DATE_RE if el.kind == "date" else DATETIME_RE
        try:
            if not re.fullmatch(regex.strip("^$"), value):
                raise ValueError(value)
            dt.datetime.strptime(value, fmt)
        except ValueError:
            return _fails(
                path,
                "pattern",
                f"不是 {form} 格式的有效{'日期' if el.kind == 'date' else '时间'}：{_shown(el, value, 'zh')}。",
                f"not a valid {'date' if el.kind == 'date' else 'time'} in the form {form}: {_shown(el, value)}.",
            )
        return []
    if value == "":
        return _fails(
            path, "min_length", "不能为空字符串（无值时省略或用 null）。", "must not be empty (omit it or use null)."
        )
    if len(value) > (el.length or 0):
        return _fails(
            path,
            "max_length",
            f"过长：{len(value)} 个字符，最多 {el.length} 个。",
            f"too long: {len(value)} characters, at most {el.length}.",
        )
    cs = ds.codesets.get(el.codeset or "")
    if cs is not None and cs.closed and value not in cs.codes:
        return _fails(
            path,
            "enum",
            f"{_shown(el, value, 'zh')} 不在代码集 {cs.code}（{cs.name_zh}）中。",
            f"{_shown(el, value)} is not in code set {cs.code} ({cs.name_en}).",
        )
    pattern = el.pattern or (cs.pattern if cs is not None and not cs.closed else None)
    if pattern and not re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value):
        where = f"代码集 {cs.code} 的格式" if cs is not None else "规定的格式"
        where_en = f"the format of code set {cs.code}" if cs is not None else "its format"
        zh, en = _shown(el, value, "zh"), _shown(el, value)
        return _fails(path, "pattern", f"不符合{where}：{zh}。", f"does not match {where_en}: {en}.")
    return []


def _object_violations(
    rt: RecordType, record: Any, path: str, ds: Dataset, allowed_extra: tuple[str, ...] = ()
) -> list[Violation]:
    if not isinstance(record, Mapping):
        return _fails(path or "(record)", "type", "记录应为对象。", "a record must be an object.")
    out: list[Violation] = []
    prefix = f"{path}." if path else ""
    known = set(rt.codes) | set(allowed_extra)
    for name in record:
        if name not in known:
            out += _fails(
                f"{prefix}{name}",
                "unknown",
                f"{rt.code} 没有数据元 {name!r}。",
                f"{rt.code} has no element {name!r}.",
            )
    for el in rt.elements:
        if el.code not in record:
            if el.required:
                out += _fails(f"{prefix}{el.code}", "required", "缺少必填数据元。", "required element is missing.")
            continue
        out += _element_violations(el, record[el.code], f"{prefix}{el.code}", ds)
    return out


def validate_record(rt: RecordType | str, record: Any, ds: Dataset, path: str = "") -> list[Violation]:
    """hipgate.exchange.dataset.validate_record before it was compiled: element definitions interpreted
    for every record."""
    rt = ds.record_type(rt) if isinstance(rt, str) else rt
    extra = (rt.items.code,) if rt.items else ()
    out = _object_violations(rt, record, path, ds, extra)
    if rt.items is None or not isinstance(record, Mapping):
        return out
    prefix = f"{path}." if path else ""
    where = f"{prefix}{rt.items.code}"
    children = record.get(rt.items.code)
    if children is None:
        return [*out, *_fails(where, "required", "缺少明细。", "the items are missing.")]
    if not isinstance(children, list):
        return [*out, *_fails(where, "type", "明细应为列表。", "the items must be a list.")]
    if not rt.min_items <= len(children) <= rt.max_items:
        out += _fails(
            where,
            "count",
            f"明细 {len(children)} 条，应为 {rt.min_items}–{rt.max_items} 条。",
            f"{len(children)} items, {rt.min_items}-{rt.max_items} expected.",
        )
    seen: dict[tuple[Any, ...], int] = {}
    for i, child in enumerate(children):
        out += _object_violations(rt.items, child, f"{where}[{i}]", ds)
        if isinstance(child, Mapping):
            key = tuple(child.get(code) for code in rt.items.key)
            if key in seen:
                out += _fails(
                    f"{where}[{i}]",
                    "duplicate_key",
                    f"明细键 {', '.join(rt.items.key)} 与第 {seen[key]} 条重复。",
                    f"item key {', '.join(rt.items.key)} repeats item {seen[key]}.",
                )
            seen.setdefault(key, i)
    return out


def record_violations(ex: Any, rt: RecordType, infno: str, record: Mapping[str, Any]) -> list[Violation]:
    """hipgate.exchange.incremental.record_violations before batches: the legacy dataset check, and the record
    alone as a one-record request against the whole document (`ex` needs ds, iface and sender_code)."""
    found = validate_record(rt, record, ex.ds)
    envelope = {
        **build_envelope(infno, {"record_type": rt.code, "records": [record]}, sender_code=ex.sender_code,
                         cainfo="00", msgid=f"{ex.sender_code}20240101000000000000"),
        **_CHECK_SIGNER,
    }  # fmt: skip
    prefix = "input.records[0]."
    doc = [
        Violation(v.path.removeprefix(prefix), v.rule, v.zh, v.en)
        for v in validate_request(ex.iface, infno, envelope)
        if v.path.startswith(prefix) or v.path == "input.records[0]"
    ]
    return merge_violations(found, doc)
