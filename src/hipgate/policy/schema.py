"""Cerberus schema of a policy file (policies/*.yml); `meta` gives each field's bilingual fix hint."""

from __future__ import annotations

from typing import Any

CONTROL_ID_RE = r"^(GBT22239-8\.[0-9.]+(-[a-z]+)?|[A-Z][A-Z0-9]*(-[A-Za-z0-9.]+)+)$"
TAG_RE = r"^(gbt22239_[0-9.]+(-[a-z]+)?|hipgate_[a-z0-9_]+)$"
SEVERITIES = ["high", "medium", "low"]
SOURCES = ["standard", "practice", "law"]


def _m(zh: str, en: str) -> dict[str, str]:
    return {"zh": zh, "en": en}


def _text(zh: str, en: str) -> dict[str, Any]:
    return {"type": "string", "required": True, "empty": False, "meta": _m(zh, en)}


PARAMETER: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "value": {"required": True, "nullable": False, "meta": _m("参数取值", "the parameter's value")},
        "source": {
            "type": "string",
            "required": True,
            "allowed": SOURCES,
            "meta": _m(
                "来源：standard（标准原文）、practice（行业/测评实践）或 law（法律法规）",
                "source: standard (the text of GB/T 22239), practice (sector/assessor practice) or law (a statute)",
            ),
        },
        "note": _text("说明（中英文）", "note, in Chinese and English"),
    },
    "meta": _m("参数：value、source、note", "a parameter: value, source, note"),
}

WAIVER: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "hosts": {
            "type": "list",
            "required": True,
            "minlength": 1,
            "schema": {"type": "string", "empty": False},
            "meta": _m("豁免的主机名列表", "list of waived host names"),
        },
        "scope": {
            "type": "string",
            "empty": False,
            "meta": _m("仅适用的清单目录名（可选），如 lab", "inventory directory it applies to (optional), e.g. lab"),
        },
        "justification_zh": _text("中文豁免理由", "justification in Chinese"),
        "justification_en": _text("英文豁免理由", "justification in English"),
        "approver": _text("批准人", "approver"),
        "expires": {
            "type": "string",
            "required": True,
            "check_with": "isodate",
            "meta": _m("到期日 YYYY-MM-DD（加引号）", "expiry date YYYY-MM-DD (quoted)"),
        },
    },
    "meta": _m("一条豁免", "one waiver"),
}

CONTROL: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "id": {
            "type": "string",
            "required": True,
            "regex": CONTROL_ID_RE,
            "meta": _m("控制项编号，如 GBT22239-8.1.4.1-a", "control id, e.g. GBT22239-8.1.4.1-a"),
        },
        "section": {
            "type": "string",
            "required": True,
            "regex": r"^[0-9.]+$",
            "meta": _m("条款号，如 8.1.4.1", "clause number, e.g. 8.1.4.1"),
        },
        "section_zh": _text("中文章节名", "section name in Chinese"),
        "section_en": _text("英文章节名", "section name in English"),
        "title_zh": _text("中文标题", "title in Chinese"),
        "title_en": _text("英文标题", "title in English"),
        "requirement_zh": _text("标准要求（中文）", "the requirement in Chinese"),
        "requirement_en": _text("标准要求（英文）", "the requirement in English"),
        "severity": {
            "type": "string",
            "required": True,
            "allowed": SEVERITIES,
            "meta": _m("严重程度 high/medium/low", "severity high/medium/low"),
        },
        "enforced_by": {
            "type": "dict",
            "required": True,
            "schema": {
                "role": {"type": "string", "empty": False, "meta": _m("落实该项的角色", "the role that enforces it")},
                "tag": {
                    "type": "string",
                    "regex": TAG_RE,
                    "meta": _m("任务标签，如 gbt22239_8.1.4.1-a", "task tag, e.g. gbt22239_8.1.4.1-a"),
                },
                "also": {
                    "type": "list",
                    "schema": {"type": "string", "empty": False},
                    "meta": _m(
                        "其他同样落实该项（同一标签）的角色，如 [postgresql]",
                        "other roles enforcing it under the same tag, e.g. [postgresql]",
                    ),
                },
                "check_only": {
                    "type": "dict",
                    "schema": {
                        "reason_zh": _text("仅检查的原因（中文）", "reason (Chinese)"),
                        "reason_en": _text("仅检查的原因（英文）", "reason (English)"),
                    },
                    "meta": _m("仅检查不落实时的原因", "why it is checked but not enforced"),
                },
            },
            "meta": _m(
                "落实方式：role 与 tag，或 check_only 及原因",
                "enforcement: role and tag, or check_only with its reason",
            ),
        },
        "checks": {
            "type": "list",
            "required": True,
            "minlength": 1,
            "schema": {"type": "string", "empty": False},
            "meta": _m("检查函数名列表（至少一个）", "names of the checks (at least one)"),
        },
        "parameters": {
            "type": "dict",
            "required": True,
            "keysrules": {"type": "string", "regex": r"^[a-z][a-z0-9_]*$"},
            "valuesrules": PARAMETER,
            "meta": _m("参数表（可为空 {}）", "parameters (may be {})"),
        },
        "waivers": {
            "type": "list",
            "required": True,
            "schema": WAIVER,
            "meta": _m("豁免列表（可为空 []）", "waivers (may be [])"),
        },
    },
    "meta": _m("一个控制项", "one control"),
}

POLICY_FILE: dict[str, Any] = {
    "policy": {
        "type": "dict",
        "required": True,
        "schema": {
            "id": _text("策略编号", "policy id"),
            "version": _text("策略版本（加引号）", "policy version (quoted)"),
            "standard": _text("依据的标准", "the standard it implements"),
        },
        "meta": _m("策略信息：id、version、standard", "policy header: id, version, standard"),
    },
    "controls": {
        "type": "list",
        "required": True,
        "minlength": 1,
        "schema": CONTROL,
        "meta": _m("控制项列表", "list of controls"),
    },
}
