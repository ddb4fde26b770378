"""Cerberus schema of the results.json that `hipgate verify` writes: the report's only input."""

from __future__ import annotations

from typing import Any


def _s(zh: str, en: str, **rules: Any) -> dict[str, Any]:
    return {"type": "string", "required": True, "meta": {"zh": zh, "en": en}, **rules}


_WAIVER_FIELDS = {
    "justification_zh": _s("中文豁免理由", "the justification in Chinese"),
    "justification_en": _s("英文豁免理由", "the justification in English"),
    "approver": _s("批准人", "who approved it"),
    "expires": _s("到期日 YYYY-MM-DD", "the expiry date YYYY-MM-DD", check_with="isodate"),
}

_EVIDENCE = {
    "type": "dict",
    "schema": {
        "command": _s("执行的命令", "the command run"),
        "rc": {"type": "integer", "required": True, "meta": {"zh": "退出码", "en": "the exit code"}},
        "output": _s("命令输出", "what the command printed", empty=True),
    },
}

_CONTROL = {
    "type": "dict",
    "schema": {
        "id": _s("控制项编号", "the control id"),
        "section": _s("条款号", "the clause number"),
        "section_zh": _s("中文章节名", "the section name in Chinese"),
        "section_en": _s("英文章节名", "the section name in English"),
        "title_zh": _s("中文标题", "the title in Chinese"),
        "title_en": _s("英文标题", "the title in English"),
        "requirement_zh": _s("中文要求", "the requirement in Chinese"),
        "requirement_en": _s("英文要求", "the requirement in English"),
        "severity": _s("严重程度", "the severity", allowed=["high", "medium", "low"]),
        "role": {"type": "string", "nullable": True, "required": True},
        "tag": {"type": "string", "nullable": True, "required": True},
        "check_only": {"type": "dict", "nullable": True, "required": True},
        "checks": {"type": "list", "required": True, "schema": {"type": "string"}},
        "applies": {"type": "dict", "valuesrules": {"type": "list", "schema": {"type": "string"}}},
        "parameters": {"type": "dict", "required": True},
        "waivers": {
            "type": "list",
            "required": True,
            "schema": {
                "type": "dict",
                "schema": {
                    "hosts": {"type": "list", "required": True, "schema": {"type": "string"}},
                    "scope": {"type": "string", "nullable": True, "required": True},
                    **_WAIVER_FIELDS,
                },
            },
        },
    },
}

_RESULT = {
    "type": "dict",
    "schema": {
        "control": _s("控制项编号", "the control id"),
        "check": _s("检查名", "the check name"),
        "host": _s("主机名", "the host name"),
        "status": _s("pass、fail 或 waived", "pass, fail or waived", allowed=["pass", "fail", "waived"]),
        "summary_zh": _s("中文结论", "the finding in Chinese", empty=True),
        "summary_en": _s("英文结论", "the finding in English", empty=True),
        "evidence": {"type": "list", "required": True, "schema": _EVIDENCE},
        "waiver": {
            "type": "dict",
            "nullable": True,
            "required": True,
            "schema": {"expired": {"type": "boolean", "required": True}, **_WAIVER_FIELDS},
        },
        "checked_at": _s("检查时间", "when it was checked"),
        "data": {"type": "dict"},
    },
}

RESULTS_SCHEMA: dict[str, Any] = {
    "hipgate_version": _s("hipgate 版本", "the hipgate version"),
    "policy": {
        "type": "dict",
        "required": True,
        "schema": {
            "id": _s("策略编号", "the policy id"),
            "version": _s("策略版本", "the policy version"),
            "standard": _s("标准", "the standard"),
            "file": _s("策略文件", "the policy file"),
        },
    },
    "inventory": _s("清单路径", "the inventory path"),
    "province": _s("省份", "the province", empty=True),
    "acknowledged": {
        "type": "list",
        "schema": {
            "type": "dict",
            "schema": {"risk": _s("接受的风险", "the accepted risk"), "reason": _s("理由", "the reason")},
        },
    },
    "hosts": {"type": "list", "required": True, "minlength": 1, "schema": {"type": "string"}},
    "waivers_evaluated_on": _s("豁免判定日期", "the date waivers were judged on", check_with="isodate"),
    "started_at": _s("开始时间", "the start time"),
    "finished_at": _s("结束时间", "the end time"),
    "counts": {"type": "dict", "required": True, "valuesrules": {"type": "integer"}},
    "controls": {"type": "list", "required": True, "minlength": 1, "schema": _CONTROL},
    "results": {"type": "list", "required": True, "schema": _RESULT},
    "flows": {"type": "list", "schema": {"type": "dict"}},
}
