"""Cerberus schemas of the exchange dataset's files (datasets/records/*.yml, datasets/codesets/*.yml).

Every field carries a bilingual `meta`, which hipgate.validation turns into the fix of its error, as
for the inventory. What one file cannot say about itself (a key naming no element, a code set that does
not exist, an element typed differently in two record types) is checked in hipgate.exchange.dataset.
"""

from __future__ import annotations

from typing import Any

# Patterns are applied with re.fullmatch (hipgate.validation); \Z, never $.
RECORD_CODE_RE = r"^[a-z][a-z0-9_]{0,31}\Z"
ELEMENT_CODE_RE = r"^[a-z][a-z0-9_]{0,49}\Z"
CODE_VALUE_RE = r"^[0-9A-Za-z_]{1,32}\Z"
TYPE_RE = r"^(?:string|integer|date|datetime|decimal\([1-9][0-9]?,[0-9][0-9]?\))\Z"
# Columns hipgate's middleware keeps beside the elements (hipgate.exchange.dataset.BOOKKEEPING).
RESERVED_PREFIX = "hg_"
MAX_LENGTH = 4000


def _text(zh: str, en: str) -> dict[str, Any]:
    return {"type": "string", "required": True, "empty": False, "check_with": "text", "meta": {"zh": zh, "en": en}}


def _code(regex: str, zh: str, en: str) -> dict[str, Any]:
    return {"type": "string", "required": True, "regex": regex, "meta": {"zh": zh, "en": en}}


def _element_codes(zh: str, en: str, required: bool = True) -> dict[str, Any]:
    return {
        "type": "list",
        "required": required,
        "minlength": 1,
        "schema": {"type": "string", "regex": ELEMENT_CODE_RE},
        "meta": {"zh": zh, "en": en},
    }


ELEMENT: dict[str, Any] = {
    "code": _code(
        ELEMENT_CODE_RE, "小写字母开头的数据元编码，如 psn_name", "a lower-case element code such as psn_name"
    ),
    "name_zh": _text("数据元中文名称", "the element's Chinese name"),
    "name_en": _text("数据元英文名称", "the element's English name"),
    "type": {
        "type": "string",
        "required": True,
        "regex": TYPE_RE,
        "meta": {
            "zh": "string、integer、decimal(p,s)、date 或 datetime 之一",
            "en": "one of string, integer, decimal(p,s), date, datetime",
        },
    },
    "length": {
        "type": "integer",
        "min": 1,
        "max": MAX_LENGTH,
        "meta": {
            "zh": f"最大长度（string 与 integer 必填，1–{MAX_LENGTH}；其他类型不填）",
            "en": f"the maximum length (for string and integer, 1-{MAX_LENGTH}; not given for other types)",
        },
    },
    "required": {"type": "boolean", "required": True, "meta": {"zh": "true 或 false", "en": "true or false"}},
    "codeset": {
        "type": "string",
        "regex": RECORD_CODE_RE,
        "meta": {"zh": "datasets/codesets/ 中某代码集的 code", "en": "the code of a code set in datasets/codesets/"},
    },
    "pii": {
        "type": "boolean",
        "meta": {
            "zh": "个人信息（日志与报告中脱敏）时为 true",
            "en": "true for personal data (masked in logs and reports)",
        },
    },
    "pattern": {
        "type": "string",
        "empty": False,
        "maxlength": 200,
        "meta": {
            "zh": "值须整体匹配的正则表达式（^…$）",
            "en": "a regular expression the whole value must match (^...$)",
        },
    },
}

_ELEMENTS: dict[str, Any] = {
    "type": "list",
    "required": True,
    "minlength": 1,
    "schema": {"type": "dict", "schema": ELEMENT},
    "meta": {"zh": "数据元列表", "en": "the list of data elements"},
}

ITEMS: dict[str, Any] = {
    "code": _code(RECORD_CODE_RE, "明细的记录类型编码，如 setl_item", "the items' record type code, such as setl_item"),
    "name_zh": _text("明细中文名称", "the items' Chinese name"),
    "name_en": _text("明细英文名称", "the items' English name"),
    "key": _element_codes("明细在所属记录内的键数据元", "the elements that key an item within its record"),
    "min_items": {
        "type": "integer",
        "required": True,
        "min": 0,
        "max": 100000,
        "meta": {"zh": "最少条数", "en": "the least number of items"},
    },
    "max_items": {
        "type": "integer",
        "required": True,
        "min": 1,
        "max": 100000,
        "meta": {"zh": "最多条数", "en": "the most items"},
    },
    "elements": _ELEMENTS,
}

RECORD: dict[str, Any] = {
    "code": _code(
        RECORD_CODE_RE, "与文件名相同的记录类型编码，如 setl", "the record type code, the same as the file name (setl)"
    ),
    "name_zh": _text("记录类型中文名称", "the record type's Chinese name"),
    "name_en": _text("记录类型英文名称", "the record type's English name"),
    "direction": {
        "type": "string",
        "required": True,
        "allowed": ["upload", "download", "both"],
        "meta": {
            "zh": "upload（省→国家）、download（国家→省）或 both",
            "en": "upload (to the platform), download or both",
        },
    },
    "key": _element_codes("记录的键（幂等键）数据元", "the elements that key a record (its idempotency key)"),
    "cursor": {
        "type": "string",
        "required": True,
        "regex": ELEMENT_CODE_RE,
        "meta": {
            "zh": "游标数据元（datetime，必填），通常为 updt_time",
            "en": "the cursor element (a required datetime), normally updt_time",
        },
    },
    "partition": {
        "type": "dict",
        "required": True,
        "schema": {
            "region": _code(ELEMENT_CODE_RE, "分区的医保区划数据元", "the element holding the partition's division"),
            "year": _code(
                ELEMENT_CODE_RE,
                "分区年度取自的日期或时间数据元",
                "the date or datetime element giving the partition's year",
            ),
        },
        "meta": {
            "zh": "{region: 区划数据元, year: 日期数据元}",
            "en": "{region: division element, year: date element}",
        },
    },
    "elements": _ELEMENTS,
    "items": {"type": "dict", "schema": ITEMS, "meta": {"zh": "明细（可选）", "en": "the record's items (optional)"}},
}

_VALUE: dict[str, Any] = {
    "code": _code(CODE_VALUE_RE, "代码值（字母、数字、下划线）", "the code (letters, digits, underscore)"),
    "name_zh": _text("代码中文含义", "the code's Chinese meaning"),
    "name_en": _text("代码英文含义", "the code's English meaning"),
}

CODESET: dict[str, Any] = {
    "code": _code(
        RECORD_CODE_RE, "与文件名相同的代码集编码，如 gend", "the code set's code, the same as the file name (gend)"
    ),
    "name_zh": _text("代码集中文名称", "the code set's Chinese name"),
    "name_en": _text("代码集英文名称", "the code set's English name"),
    "source": _text("来源标准或字典", "the standard or dictionary it comes from"),
    "closed": {
        "type": "boolean",
        "required": True,
        "meta": {
            "zh": "true：列出全部代码；false：大字典，只给格式（pattern）",
            "en": "true: every code listed; false: a big dictionary, its format (pattern) only",
        },
    },
    "values": {
        "type": "list",
        "minlength": 1,
        "schema": {"type": "dict", "schema": _VALUE},
        "meta": {"zh": "代码列表（closed: true 时必填）", "en": "the codes (required when closed is true)"},
    },
    "pattern": {
        "type": "string",
        "empty": False,
        "maxlength": 200,
        "meta": {"zh": "代码的格式（closed: false 时必填）", "en": "the codes' format (required when closed is false)"},
    },
    "dictionary": {
        "type": "string",
        "empty": False,
        "check_with": "text",
        "meta": {"zh": "提供完整代码的大字典名称", "en": "the name of the big dictionary with the full list"},
    },
}
