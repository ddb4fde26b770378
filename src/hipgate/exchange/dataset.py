"""The exchange dataset (datasets/): record types, their data elements and the code sets they draw from.

One YAML file per record type (datasets/records/) and per small closed code set (datasets/codesets/),
validated by hipgate.exchange.dataset_schema and the cross-file checks below; every problem names the
file, the field and the fix, in Chinese and English, all in one run. The same data makes the exchange
tables (`dataset_ddl`), the JSON Schema of each record in the interface document
(`record_json_schema`), the wire form of a table row (`serialise_record`) and the check of one record
(`validate_record`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hipgate.errors import Problem, UserError
from hipgate.exchange import dataset_schema
from hipgate.exchange.violations import Violation
from hipgate.inventory.yamlio import read_yaml
from hipgate.paths import project_root
from hipgate.validation import validate_document

DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
DATE_RE = f"^{DATE}$"
DATETIME_RE = f"^{DATE} {TIME}$"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The interface's times are China Standard Time without an offset.
PLATFORM_TZ = ZoneInfo("Asia/Shanghai")
_DECIMAL = re.compile(r"decimal\(([0-9]+),([0-9]+)\)")
MAX_PRECISION = 38
SCHEMA_NAME_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# The middleware's own columns, only on the tables it writes: the download (inbox) tables. An upload
# table belongs to the provincial platform and carries nothing but its elements: the middleware's state
# about it (changes, outbox, quarantine, results) lives in the bookkeeping tables
# (hipgate.exchange.bookkeeping), because a middleware UPDATE of an upload row would fire its own
# change capture and send the record again, and would write into tables the province owns.
BOOKKEEPING = {
    "hg_received_at": "收到并保存的时间 / when the middleware stored it",
    "hg_msgid": "下发该记录的下载报文ID / msgid of the download that carried it",
    "hg_acked_at": "向国家平台确认接收的时间 / when its receipt was acknowledged to the platform",
}
# A record type exchanged both ways (cross_visit) has its upload table under its code and its inbox
# under this suffix, so downloaded records are never captured as changes and sent back.
INBOX_SUFFIX = "_inbox"


@dataclass(frozen=True)
class Element:
    code: str
    name_zh: str
    name_en: str
    type: str  # string | integer | date | datetime | decimal(p,s)
    required: bool
    length: int | None = None
    codeset: str | None = None
    pii: bool = False
    pattern: str | None = None

    @property
    def kind(self) -> str:
        return "decimal" if self.type.startswith("decimal") else self.type

    @property
    def precision_scale(self) -> tuple[int, int]:
        m = _DECIMAL.fullmatch(self.type)
        if not m:
            raise ValueError(f"{self.code} is not a decimal element")
        return int(m[1]), int(m[2])


@dataclass(frozen=True)
class RecordType:
    code: str
    name_zh: str
    name_en: str
    key: tuple[str, ...]
    elements: tuple[Element, ...]
    file: Path
    direction: str = "upload"
    cursor: str | None = None
    region: str | None = None  # partition: the division element
    year: str | None = None  # partition: the date element whose year splits files
    items: RecordType | None = None
    min_items: int = 0
    max_items: int = 0
    parent: str | None = None  # for items: the record type they belong to

    def element(self, code: str) -> Element:
        for el in self.elements:
            if el.code == code:
                return el
        raise KeyError(code)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(el.code for el in self.elements)


@dataclass(frozen=True)
class Codeset:
    code: str
    name_zh: str
    name_en: str
    source: str
    closed: bool
    file: Path
    values: tuple[tuple[str, str, str], ...] = ()  # (code, name_zh, name_en)
    pattern: str | None = None
    dictionary: str | None = None

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v[0] for v in self.values)


@dataclass(frozen=True)
class Dataset:
    root: Path
    records: dict[str, RecordType]  # the top-level record types; their items are RecordType.items
    codesets: dict[str, Codeset] = field(default_factory=dict)
    # The compiled record checks (record_check), by id of the record type; not part of the dataset's value.
    _checks: dict[int, tuple[RecordType, Callable[[Any, str], list[Violation]]]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def record_type(self, code: str) -> RecordType:
        """A record type or an items type, by code."""
        for rt in self.all_record_types():
            if rt.code == code:
                return rt
        raise KeyError(code)

    def all_record_types(self) -> list[RecordType]:
        """Every record type, each followed by its items type."""
        out: list[RecordType] = []
        for rt in self.records.values():
            out.append(rt)
            if rt.items:
                out.append(rt.items)
        return out


def default_root() -> Path:
    return project_root() / "datasets"


# ---------------------------------------------------------------- loading and checking


def _p(where: str, zh: str, en: str, fix_zh: str, fix_en: str) -> Problem:
    return Problem(where, zh, en, fix_zh, fix_en)


def _regex_problem(where: str, pattern: str) -> Problem | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return _p(
            where,
            f"正则表达式无效（{exc}）。",
            f"invalid regular expression ({exc}).",
            "改为有效的 Python 正则表达式，以 ^ 开头、$ 结尾。",
            "write a valid Python regular expression, from ^ to $.",
        )
    return None


def _codeset(file: Path, doc: dict[str, Any]) -> tuple[Codeset | None, list[Problem]]:
    problems = validate_document(file, doc, dataset_schema.CODESET)
    if problems:
        return None, problems
    where = f"{file}: "
    if doc["code"] != file.stem:
        problems.append(
            _p(
                where + "code",
                f"代码集编码 {doc['code']!r} 与文件名 {file.name} 不一致。",
                f"code set code {doc['code']!r} differs from the file name {file.name}.",
                f"把文件改名为 {doc['code']}.yml，或把 code 改为 {file.stem}。",
                f"rename the file to {doc['code']}.yml or set code to {file.stem}.",
            )
        )
    if doc["closed"]:
        if "values" not in doc:
            problems.append(
                _p(
                    where + "values",
                    "封闭代码集缺少 values。",
                    "a closed code set needs values.",
                    "列出全部代码，或设置 closed: false 并给出 pattern。",
                    "list every code, or set closed: false and give a pattern.",
                )
            )
        if "pattern" in doc or "dictionary" in doc:
            problems.append(
                _p(
                    where + ("pattern" if "pattern" in doc else "dictionary"),
                    "封闭代码集不使用 pattern 与 dictionary。",
                    "a closed code set has no pattern or dictionary.",
                    "删除该项（封闭代码集的取值就是 values）。",
                    "remove it (a closed code set's values are its list).",
                )
            )
    else:
        if "pattern" not in doc:
            problems.append(
                _p(
                    where + "pattern",
                    "开放代码集（大字典）缺少 pattern。",
                    "an open code set (a big dictionary) needs a pattern.",
                    "给出代码的格式，如 '^[1-9][0-9]{5}$'。",
                    "give the codes' format, such as '^[1-9][0-9]{5}$'.",
                )
            )
        if "values" in doc:
            problems.append(
                _p(
                    where + "values",
                    "开放代码集不列出代码。",
                    "an open code set lists no codes.",
                    "删除 values，或设置 closed: true。",
                    "remove values, or set closed: true.",
                )
            )
    if "pattern" in doc and (bad := _regex_problem(where + "pattern", doc["pattern"])):
        problems.append(bad)
    seen: set[str] = set()
    for i, value in enumerate(doc.get("values", [])):
        if value["code"] in seen:
            problems.append(
                _p(
                    f"{where}values.[{i}].code",
                    f"代码 {value['code']!r} 重复。",
                    f"code {value['code']!r} appears twice.",
                    "每个代码只列一次。",
                    "list each code once.",
                )
            )
        seen.add(value["code"])
    if problems:
        return None, problems
    values = tuple((v["code"], v["name_zh"], v["name_en"]) for v in doc.get("values", []))
    cs = Codeset(
        doc["code"], doc["name_zh"], doc["name_en"], doc["source"], doc["closed"], file, values,
        doc.get("pattern"), doc.get("dictionary"),
    )  # fmt: skip
    return cs, []


def _elements(
    file: Path, prefix: str, docs: list[dict[str, Any]], codesets: dict[str, Codeset | None]
) -> tuple[tuple[Element, ...], list[Problem]]:
    """codesets maps a broken code set file's name to None: its own problems are reported already."""
    problems: list[Problem] = []
    out: list[Element] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        where = f"{file}: {prefix}elements.[{i}]"
        code, kind = doc["code"], doc["type"]
        if code in seen:
            problems.append(
                _p(
                    f"{where}.code",
                    f"数据元 {code!r} 重复。",
                    f"element {code!r} appears twice.",
                    "每个数据元只列一次。",
                    "list each element once.",
                )
            )
        seen.add(code)
        if code.startswith(dataset_schema.RESERVED_PREFIX):
            problems.append(
                _p(
                    f"{where}.code",
                    f"数据元编码 {code!r} 以 hg_ 开头，该前缀留给中间件的簿记列。",
                    f"element code {code!r} starts with hg_, which is kept for the middleware's bookkeeping columns.",
                    "改用其他编码。",
                    "choose another code.",
                )
            )
        sized = kind in ("string", "integer")
        if sized and "length" not in doc:
            problems.append(
                _p(
                    f"{where}.length",
                    f"{kind} 类型的数据元缺少 length。",
                    f"a {kind} element needs a length.",
                    "给出最大长度，如 length: 30。",
                    "give its maximum length, such as length: 30.",
                )
            )
        if not sized and "length" in doc:
            problems.append(
                _p(
                    f"{where}.length",
                    f"{kind} 类型的长度由类型决定，不能另给 length。",
                    f"a {kind} element's length follows from its type; length is not given.",
                    "删除 length。",
                    "remove length.",
                )
            )
        if kind == "integer" and doc.get("length", 0) > 18:
            problems.append(
                _p(
                    f"{where}.length",
                    "integer 最多 18 位。",
                    "an integer has at most 18 digits.",
                    "改用 string 或 decimal(p,0)。",
                    "use string or decimal(p,0).",
                )
            )
        if m := _DECIMAL.fullmatch(kind):
            p, s = int(m[1]), int(m[2])
            if not (1 <= p <= MAX_PRECISION and s < p):
                problems.append(
                    _p(
                        f"{where}.type",
                        f"{kind}：须 1 ≤ p ≤ {MAX_PRECISION} 且 s < p。",
                        f"{kind}: needs 1 <= p <= {MAX_PRECISION} and s < p.",
                        "如 decimal(16,2)。",
                        "for example decimal(16,2).",
                    )
                )
        cs_code = doc.get("codeset")
        if cs_code is not None:
            cs = codesets.get(cs_code)
            if cs is None and cs_code in codesets:
                pass  # its file is broken and reported
            elif cs is None:
                problems.append(
                    _p(
                        f"{where}.codeset",
                        f"代码集 {cs_code!r} 不存在。",
                        f"code set {cs_code!r} does not exist.",
                        "可选：" + "、".join(sorted(codesets)) + "；或在 datasets/codesets/ 中新建。",
                        "choose one of: " + ", ".join(sorted(codesets)) + "; or add it to datasets/codesets/.",
                    )
                )
            elif kind != "string":
                problems.append(
                    _p(
                        f"{where}.codeset",
                        "只有 string 类型的数据元可以取自代码集。",
                        "only a string element can draw from a code set.",
                        "把 type 改为 string，或删除 codeset。",
                        "set type to string, or remove codeset.",
                    )
                )
            elif cs.closed and (too_long := [c for c in cs.codes if len(c) > doc.get("length", 0)]):
                problems.append(
                    _p(
                        f"{where}.length",
                        f"代码 {too_long[0]!r} 长于 length。",
                        f"code {too_long[0]!r} is longer than length.",
                        f"把 length 至少设为 {max(map(len, too_long))}。",
                        f"set length to at least {max(map(len, too_long))}.",
                    )
                )
            if "pattern" in doc:
                problems.append(
                    _p(
                        f"{where}.pattern",
                        "取自代码集的数据元不另给 pattern。",
                        "an element drawing from a code set has no pattern of its own.",
                        "删除 pattern（格式由代码集给出）。",
                        "remove pattern (the code set gives the format).",
                    )
                )
        if "pattern" in doc:
            if kind != "string":
                problems.append(
                    _p(
                        f"{where}.pattern",
                        "只有 string 类型的数据元可以给出 pattern。",
                        "only a string element can have a pattern.",
                        "删除 pattern。",
                        "remove pattern.",
                    )
                )
            elif bad := _regex_problem(f"{where}.pattern", doc["pattern"]):
                problems.append(bad)
        element = Element(
            code, doc["name_zh"], doc["name_en"], kind, doc["required"], doc.get("length"), cs_code,
            bool(doc.get("pii", False)), doc.get("pattern"),
        )  # fmt: skip
        out.append(element)
    return tuple(out), problems


def _named(file: Path, field_path: str, codes: list[str], elements: tuple[Element, ...], what: tuple[str, str]):
    """Problems for codes (key, cursor, partition) that name no element of the record type."""
    have = {el.code for el in elements}
    return [
        _p(
            f"{file}: {field_path}",
            f"{what[0]} {code!r} 不是该记录类型的数据元。",
            f"{what[1]} {code!r} is not an element of this record type.",
            "可选：" + "、".join(el.code for el in elements),
            "choose one of: " + ", ".join(el.code for el in elements),
        )
        for code in codes
        if code not in have
    ]


def _key_problems(file: Path, field_path: str, key: list[str], elements: tuple[Element, ...]) -> list[Problem]:
    problems = _named(file, field_path, key, elements, ("键", "key element"))
    for code in key:
        el = next((e for e in elements if e.code == code), None)
        if el and not el.required:
            problems.append(
                _p(
                    f"{file}: {field_path}",
                    f"键数据元 {code!r} 不是必填项。",
                    f"key element {code!r} is not required.",
                    f"把 {code} 设为 required: true。",
                    f"set required: true on {code}.",
                )
            )
        if el and el.pii:
            problems.append(
                _p(
                    f"{file}: {field_path}",
                    f"键数据元 {code!r} 是个人信息：键会出现在日志、应答与异常日志中。",
                    f"key element {code!r} is personal data: keys appear in logs, replies and anomaly logs.",
                    "用不含个人信息的编号作键（如 psn_no、setl_id）。",
                    "key by an identifier that is not personal data (psn_no, setl_id).",
                )
            )
    if len(set(key)) != len(key):
        problems.append(
            _p(
                f"{file}: {field_path}",
                "键中有重复的数据元。",
                "the key names an element twice.",
                "每个数据元只列一次。",
                "name each element once.",
            )
        )
    return problems


def _record(
    file: Path, doc: dict[str, Any], codesets: dict[str, Codeset | None]
) -> tuple[RecordType | None, list[Problem]]:
    problems = validate_document(file, doc, dataset_schema.RECORD)
    if problems:
        return None, problems
    if doc["code"] != file.stem:
        problems.append(
            _p(
                f"{file}: code",
                f"记录类型编码 {doc['code']!r} 与文件名 {file.name} 不一致。",
                f"record type code {doc['code']!r} differs from the file name {file.name}.",
                f"把文件改名为 {doc['code']}.yml，或把 code 改为 {file.stem}。",
                f"rename the file to {doc['code']}.yml or set code to {file.stem}.",
            )
        )
    elements, more = _elements(file, "", doc["elements"], codesets)
    problems += more
    problems += _key_problems(file, "key", doc["key"], elements)
    by_code = {el.code: el for el in elements}
    cursor, region, year = doc["cursor"], doc["partition"]["region"], doc["partition"]["year"]
    # (field, element it names, what that element must be, problem zh/en, fix zh/en)
    roles: list[tuple[str, str, Callable[[Element], bool], str, str, str, str]] = [
        ("cursor", cursor, lambda el: el.kind == "datetime",
         "游标数据元 {!r} 须为必填的 datetime。", "cursor element {!r} must be a required datetime.",
         "用 updt_time（数据更新时间，datetime，必填）。", "use updt_time (last update time, a required datetime)."),
        ("partition.region", region, lambda el: el.codeset == "admdvs",
         "分区区划 {!r} 须为必填且取自代码集 admdvs。",
         "partition division {!r} must be required and draw from code set admdvs.",
         "选用医保区划数据元，如 mdtrtarea_admvs。", "choose a division element such as mdtrtarea_admvs."),
        ("partition.year", year, lambda el: el.kind in ("date", "datetime"),
         "分区年度 {!r} 须为必填的 date 或 datetime。", "partition year {!r} must be a required date or datetime.",
         "选用如 setl_time 的时间数据元。", "choose a time element such as setl_time."),
    ]  # fmt: skip
    for field_path, code, fits, zh, en, fix_zh, fix_en in roles:
        problems += _named(file, field_path, [code], elements, ("该项", field_path))
        el = by_code.get(code)
        if el is not None and not (el.required and fits(el)):
            problems.append(_p(f"{file}: {field_path}", zh.format(code), en.format(code), fix_zh, fix_en))
    items = None
    if "items" in doc:
        it = doc["items"]
        item_elements, more = _elements(file, "items.", it["elements"], codesets)
        problems += more
        problems += _key_problems(file, "items.key", it["key"], item_elements)
        for code in sorted({e.code for e in item_elements} & set(doc["key"])):
            problems.append(
                _p(
                    f"{file}: items.elements",
                    f"明细数据元 {code!r} 与所属记录的键同名：表中会自动加上所属记录的键。",
                    f"item element {code!r} has the name of its record's key, which the items table adds itself.",
                    "从明细中删除该数据元。",
                    "remove it from the items.",
                )
            )
        if it["code"] in by_code or it["code"] == doc["code"]:
            problems.append(
                _p(
                    f"{file}: items.code",
                    f"明细编码 {it['code']!r} 与记录类型或其数据元同名。",
                    f"items code {it['code']!r} is the name of the record type or one of its elements.",
                    "改用如 <记录类型>_item 的编码。",
                    "use a code such as <record type>_item.",
                )
            )
        if it["min_items"] > it["max_items"]:
            problems.append(
                _p(
                    f"{file}: items.min_items",
                    "min_items 大于 max_items。",
                    "min_items is greater than max_items.",
                    "使 min_items ≤ max_items。",
                    "make min_items <= max_items.",
                )
            )
        items = RecordType(
            it["code"], it["name_zh"], it["name_en"], tuple(it["key"]), item_elements, file,
            direction=doc["direction"], parent=doc["code"],
        )  # fmt: skip
    if problems:
        return None, problems
    rt = RecordType(
        doc["code"], doc["name_zh"], doc["name_en"], tuple(doc["key"]), elements, file, doc["direction"], cursor,
        region, year, items, doc.get("items", {}).get("min_items", 0), doc.get("items", {}).get("max_items", 0),
    )  # fmt: skip
    return rt, []


def _consistency(records: dict[str, RecordType], codesets: dict[str, Codeset]) -> list[Problem]:
    """The same element code means the same element everywhere; record_type lists the record types."""
    problems: list[Problem] = []
    first: dict[str, tuple[RecordType, Element]] = {}
    for rt in [t for r in records.values() for t in ([r, r.items] if r.items else [r])]:
        for el in rt.elements:
            if el.code not in first:
                first[el.code] = (rt, el)
                continue
            other_rt, other = first[el.code]
            for attr in ("type", "length", "codeset", "pii", "pattern"):
                if getattr(el, attr) != getattr(other, attr):
                    problems.append(
                        _p(
                            f"{rt.file}: {rt.code}.{el.code}.{attr}",
                            f"数据元 {el.code} 的 {attr} 为 {getattr(el, attr)!r}，而在 {other_rt.code}"
                            f"（{other_rt.file.name}）中为 {getattr(other, attr)!r}。",
                            f"element {el.code} has {attr} {getattr(el, attr)!r} here but {getattr(other, attr)!r} "
                            f"in {other_rt.code} ({other_rt.file.name}).",
                            "同一编码的数据元在各记录类型中须相同：统一两处，或改用不同的编码。",
                            "an element code means one element in every record type: "
                            "make both agree or use another code.",
                        )
                    )
    codes = sorted(t.code for r in records.values() for t in ([r, r.items] if r.items else [r]))
    listed = codesets.get("record_type")
    if listed is not None and sorted(listed.codes) != codes:
        problems.append(
            _p(
                f"{listed.file}: values",
                f"代码集 record_type 列出 {sorted(listed.codes)}，数据集的记录类型为 {codes}。",
                f"code set record_type lists {sorted(listed.codes)}, the dataset's record types are {codes}.",
                "使 record_type 的代码与 datasets/records/ 中的记录类型及明细一致。",
                "make record_type's codes the record types and items of datasets/records/.",
            )
        )
    return problems


def load_dataset(root: Path | None = None) -> Dataset:
    """Read and check every file of the dataset; all problems are raised together as one UserError."""
    root = root or default_root()
    problems: list[Problem] = []
    codesets: dict[str, Codeset | None] = {}  # None: the file is broken (its problems are listed)
    records: dict[str, RecordType] = {}
    for folder in ("codesets", "records"):
        if not (root / folder).is_dir():
            problems.append(
                _p(
                    str(root / folder),
                    "目录不存在。",
                    "the directory does not exist.",
                    "数据集须有 records/ 与 codesets/ 两个目录（见 datasets/README.md）。",
                    "a dataset has the directories records/ and codesets/ (see datasets/README.md).",
                )
            )
    if problems:
        raise UserError(problems)
    for file in sorted((root / "codesets").glob("*.yml")):
        try:
            cs, more = _codeset(file, read_yaml(file))
        except UserError as exc:
            cs, more = None, exc.problems
        problems += more
        codesets[cs.code if cs else file.stem] = cs
    for file in sorted((root / "records").glob("*.yml")):
        try:
            rt, more = _record(file, read_yaml(file), codesets)
        except UserError as exc:
            problems += exc.problems
            continue
        problems += more
        if rt:
            records[rt.code] = rt
    good = {code: cs for code, cs in codesets.items() if cs is not None}
    if not problems:
        problems += _consistency(records, good)
    if not records and not problems:
        problems.append(
            _p(
                str(root / "records"),
                "没有记录类型文件。",
                "no record type files.",
                "每个记录类型一个 .yml 文件（见 datasets/README.md）。",
                "add one .yml file per record type (see datasets/README.md).",
            )
        )
    if problems:
        raise UserError(problems)
    return Dataset(root, records, good)


# ---------------------------------------------------------------- JSON Schema (the interface document)


def decimal_pattern(precision: int, scale: int) -> str:
    """Optional sign, at most precision-scale integer digits without leading zeros, at most scale decimals."""
    ip = precision - scale
    integer = f"(0|[1-9][0-9]{{0,{ip - 1}}})" if ip > 1 else "[0-9]"
    fraction = f"(\\.[0-9]{{1,{scale}}})?" if scale else ""
    return f"^-?{integer}{fraction}$"


def element_json_schema(el: Element, ds: Dataset) -> dict[str, Any]:
    """The property schema of one element, exactly as the interface document must write it."""
    s: dict[str, Any] = {"title": f"{el.name_zh} / {el.name_en}"}
    if el.kind == "string":
        s |= {"type": "string", "minLength": 1, "maxLength": el.length}
    elif el.kind == "integer":
        s |= {"type": "integer", "minimum": 0, "maximum": 10 ** (el.length or 1) - 1}
    elif el.kind == "decimal":
        p, sc = el.precision_scale
        s |= {"type": "string", "maxLength": p + 2, "pattern": decimal_pattern(p, sc)}
    elif el.kind == "date":
        s |= {"type": "string", "format": "date", "pattern": DATE_RE}
    else:
        s |= {"type": "string", "pattern": DATETIME_RE}
    if el.codeset:
        cs = ds.codesets[el.codeset]
        if cs.closed:
            s["enum"] = list(cs.codes)
        else:
            s["pattern"] = cs.pattern
        s["x-hipgate-codeset"] = el.codeset
    if el.pattern:
        s["pattern"] = el.pattern
    if el.pii:
        s["x-hipgate-pii"] = True
    if not el.required:
        s["type"] = [s["type"], "null"]
        if "enum" in s:
            s["enum"] = [*s["enum"], None]
    return s


def schema_name(rt: RecordType) -> str:
    return f"Record_{rt.code}"


def key_schema_name(rt: RecordType) -> str:
    return f"Key_{rt.code}"


def record_json_schema(rt: RecordType, ds: Dataset, ref_prefix: str = "#/components/schemas/") -> dict[str, Any]:
    """`components/schemas/Record_<code>` of the interface document."""
    props = {el.code: element_json_schema(el, ds) for el in rt.elements}
    required = [el.code for el in rt.elements if el.required]
    if rt.items:
        props[rt.items.code] = {
            "title": f"{rt.items.name_zh} / {rt.items.name_en}",
            "type": "array",
            "minItems": rt.min_items,
            "maxItems": rt.max_items,
            "items": {"$ref": ref_prefix + schema_name(rt.items)},
        }
        required.append(rt.items.code)
    s: dict[str, Any] = {
        "title": f"{rt.name_zh} / {rt.name_en}",
        "type": "object",
        "x-hipgate-record-type": rt.code,
        "x-hipgate-key": list(rt.key),
    }
    if rt.cursor:
        s["x-hipgate-cursor"] = rt.cursor
    return s | {"additionalProperties": False, "required": required, "properties": props}


def key_json_schema(rt: RecordType, ds: Dataset) -> dict[str, Any]:
    """`components/schemas/Key_<code>`: the key elements of a record type."""
    return {
        "title": f"{rt.name_zh}的键 / key of a {rt.name_en}",
        "type": "object",
        "x-hipgate-record-type": rt.code,
        "additionalProperties": False,
        "required": list(rt.key),
        "properties": {code: element_json_schema(rt.element(code), ds) for code in rt.key},
    }


# ---------------------------------------------------------------- DDL (the exchange tables)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def column_type(el: Element) -> str:
    if el.kind == "string":
        return f"varchar({el.length})"
    if el.kind == "integer":
        return "integer" if (el.length or 0) <= 9 else "bigint"
    if el.kind == "decimal":
        p, s = el.precision_scale
        return f"numeric({p},{s})"
    if el.kind == "date":
        return "date"
    return "timestamp(0) without time zone"


def _column(el: Element, required: bool | None = None) -> str:
    null = "NOT NULL" if (el.required if required is None else required) else "NULL"
    return f"  {_ident(el.code)} {column_type(el)} {null}"


def inbox_table(rt: RecordType) -> str:
    """The table downloads of record type rt are stored in: its own for a download type, `<code>_inbox`
    for a type exchanged both ways."""
    return rt.code + INBOX_SUFFIX if rt.direction == "both" else rt.code


def table_ddl(rt: RecordType, ds: Dataset, schema: str = "exchange", inbox: bool | None = None) -> str:
    """CREATE TABLE (and its indexes and comments) for one record type or items type: the upload table
    (elements only), or with `inbox` (default: a download type) the inbox table with the middleware's
    hg_* columns."""
    if not SCHEMA_NAME_RE.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} is not a plain lower-case identifier")
    inbox = rt.direction == "download" if inbox is None else inbox
    name = inbox_table(rt) if inbox else rt.code
    table = f"{_ident(schema)}.{_ident(name)}"
    lines: list[str] = []
    parent = ds.records[rt.parent] if rt.parent else None
    if parent:
        lines += [_column(parent.element(code), True) for code in parent.key]
    lines += [_column(el) for el in rt.elements]
    key = [*(parent.key if parent else ()), *rt.key]
    if inbox and not parent:
        lines += [
            '  "hg_received_at" timestamptz NOT NULL DEFAULT now()',
            '  "hg_msgid" varchar(64) NULL',
            '  "hg_acked_at" timestamptz NULL',
        ]
    lines.append(f"  PRIMARY KEY ({', '.join(map(_ident, key))})")
    if parent:
        cols = ", ".join(map(_ident, parent.key))
        lines.append(
            f"  FOREIGN KEY ({cols}) REFERENCES {_ident(schema)}.{_ident(parent.code)} ({cols}) ON DELETE CASCADE"
        )
    out = [f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + "\n);"]
    if not parent:
        out.append(f"CREATE INDEX IF NOT EXISTS {_ident(name + '_cursor')} ON {table} ({_ident(rt.cursor or '')});")
        partition = f"{_ident(rt.region or '')}, {_ident(rt.year or '')}"
        out.append(f"CREATE INDEX IF NOT EXISTS {_ident(name + '_partition')} ON {table} ({partition});")
    what = " (收件表 / inbox)" if inbox and rt.direction == "both" else ""
    out.append(f"COMMENT ON TABLE {table} IS {_literal(rt.name_zh + ' / ' + rt.name_en + what)};")
    for el in rt.elements:
        out.append(f"COMMENT ON COLUMN {table}.{_ident(el.code)} IS {_literal(el.name_zh + ' / ' + el.name_en)};")
    if inbox and not parent:
        for code, text in BOOKKEEPING.items():
            out.append(f"COMMENT ON COLUMN {table}.{_ident(code)} IS {_literal(text)};")
    return "\n".join(out) + "\n"


def dataset_ddl(ds: Dataset, schema: str = "exchange") -> str:
    """The whole exchange schema: CREATE SCHEMA, then every table (a record type before its items, the
    inboxes of two-way types last). The bookkeeping tables and triggers: hipgate.exchange.bookkeeping."""
    if not SCHEMA_NAME_RE.fullmatch(schema):
        raise ValueError(f"schema name {schema!r} is not a plain lower-case identifier")
    parts = [f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)};\n"]
    parts += [table_ddl(rt, ds, schema) for rt in ds.all_record_types()]
    # A type exchanged both ways also gets its inbox (items never travel down: only settlements have them).
    parts += [table_ddl(rt, ds, schema, inbox=True) for rt in ds.records.values() if rt.direction == "both"]
    return "\n".join(parts)


# ---------------------------------------------------------------- records: wire form and checks


def _wire_value(el: Element, value: Any) -> Any:
    if value is None:
        return None
    if el.kind == "decimal":
        if isinstance(value, (bool, float)):
            raise TypeError(f"{el.code}: a decimal element takes Decimal, int or str, not {type(value).__name__}")
        return format(value, "f") if isinstance(value, Decimal) else str(value)
    if el.kind == "datetime" and isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(PLATFORM_TZ)
        return value.strftime(DATETIME_FORMAT)
    if el.kind == "date" and isinstance(value, dt.datetime):
        raise TypeError(f"{el.code}: a date element takes a date, not a datetime")
    if el.kind == "date" and isinstance(value, dt.date):
        return value.isoformat()
    return value


def serialise_record(
    rt: RecordType, row: Mapping[str, Any], items: list[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """A table row (database types: Decimal, date, datetime) in the interface's form: decimals and times
    as strings, elements in dataset order, bookkeeping (hg_*) and an item's parent key left out; a key
    that is no element passes through, so `validate_record` reports it."""
    skip = set(rt.codes) | {rt.items.code if rt.items else ""}
    out = {el.code: _wire_value(el, row[el.code]) for el in rt.elements if el.code in row}
    for name, value in row.items():
        if name not in skip and not name.startswith(dataset_schema.RESERVED_PREFIX):
            out[name] = value
    if rt.items is not None and (items is not None or rt.items.code in row):
        children = items if items is not None else row[rt.items.code]
        out[rt.items.code] = [serialise_item(rt, child) for child in children]
    return out


def serialise_item(rt: RecordType, row: Mapping[str, Any]) -> dict[str, Any]:
    """An items row of record type rt (its parent key columns dropped) in the interface's form."""
    assert rt.items is not None
    item = rt.items
    out = {el.code: _wire_value(el, row[el.code]) for el in item.elements if el.code in row}
    for name, value in row.items():
        if name in out or name in rt.key or name.startswith(dataset_schema.RESERVED_PREFIX):
            continue
        out[name] = value
    return out


def _fails(path: str, rule: str, zh: str, en: str) -> list[Violation]:
    return [Violation(path, rule, zh, en)]


def _shown(el: Element, value: Any, lang: str = "en") -> str:
    """How a bad value may appear in a reason: never a personal-data element's value."""
    if el.pii:
        return "（个人信息，不显示）" if lang == "zh" else "(personal data, not shown)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# A record check runs once per record of a region-year (millions of them). Each record type's element
# definitions are compiled, once per dataset (record_check), into one closure per element holding its regex,
# bounds, code set (a frozenset) and messages. A good value passes the closure's quick test inline; only a
# value that fails it is looked at again to say what is wrong (finding), so a good record costs a loop of
# (code, check) calls that format nothing and look nothing up.

# What is wrong with one element's value: (rule, zh, en), or None.
Finding = tuple[str, str, str] | None
# An element check takes the element's value, None when it is absent or null.
ElementCheck = Callable[[Any], Finding]
RecordCheck = Callable[[Any, str], list[Violation]]
# An element check's answer for a required element that is absent or null: the object check, which has the
# record, tells which of the two it is.
_REQUIRED = ("required", "", "")


def _not_a_string(value: Any) -> Finding:
    return ("type", "应为字符串。", f"must be a string, not {type(value).__name__}.")


def _integer_check(el: Element, absent: Finding) -> ElementCheck:
    top = 10 ** (el.length or 1) - 1
    out_of_range = ("range", f"超出范围 0–{top}。", f"out of range 0-{top}.")

    def finding(value: Any) -> Finding:
        if not isinstance(value, int) or isinstance(value, bool):
            return ("type", "应为整数。", f"must be an integer, not {type(value).__name__}.")
        return None if 0 <= value <= top else out_of_range

    def check(value: Any) -> Finding:
        # `__class__ is` rather than isinstance: one comparison; a subclass (or bool) takes finding()'s full test.
        if value.__class__ is int and 0 <= value <= top:
            return None
        return absent if value is None else finding(value)

    return check


def _decimal_check(el: Element, absent: Finding) -> ElementCheck:
    p, s = el.precision_scale
    match = re.compile(decimal_pattern(p, s).strip("^$")).fullmatch

    def finding(value: Any) -> Finding:
        if not isinstance(value, str):
            return _not_a_string(value)
        if match(value) is None:
            return (
                "pattern",
                f"不是 decimal({p},{s}) 的十进制数字符串：{_shown(el, value, 'zh')}。",
                f"not a decimal({p},{s}) number written as a string: {_shown(el, value)}.",
            )
        return None

    def check(value: Any) -> Finding:
        if value.__class__ is str and match(value) is not None:
            return None
        return absent if value is None else finding(value)

    return check


def _calendar_check(el: Element, absent: Finding) -> ElementCheck:
    is_date = el.kind == "date"
    match = re.compile((DATE_RE if is_date else DATETIME_RE).strip("^$")).fullmatch
    form = "yyyy-MM-dd" if is_date else "yyyy-MM-dd HH:mm:ss"
    what_zh, what_en = ("日期", "date") if is_date else ("时间", "time")

    def finding(value: Any) -> Finding:
        if not isinstance(value, str):
            return _not_a_string(value)
        if match(value) is not None:
            # The pattern bounds every field but the day of the month (2024-02-30) and the year 0000: what
            # strptime refused beyond it, and exactly what date() refuses.
            try:
                dt.date(int(value[:4]), int(value[5:7]), int(value[8:10]))
                return None
            except ValueError:
                pass
        return (
            "pattern",
            f"不是 {form} 格式的有效{what_zh}：{_shown(el, value, 'zh')}。",
            f"not a valid {what_en} in the form {form}: {_shown(el, value)}.",
        )

    def check(value: Any) -> Finding:
        # Days up to 28 exist in every month of every year but 0000; the rest goes through date().
        if value.__class__ is str and match(value) is not None and value[8:10] <= "28" and value[:4] != "0000":
            return None
        return absent if value is None else finding(value)

    return check


def _string_check(el: Element, ds: Dataset, absent: Finding) -> ElementCheck:
    longest = el.length or 0
    cs = ds.codesets.get(el.codeset or "")
    codes = frozenset(cs.codes) if cs is not None and cs.closed else None
    pattern = el.pattern or (cs.pattern if cs is not None and not cs.closed else None)
    match = re.compile(pattern.removeprefix("^").removesuffix("$")).fullmatch if pattern else None
    where = f"代码集 {cs.code} 的格式" if cs is not None else "规定的格式"
    where_en = f"the format of code set {cs.code}" if cs is not None else "its format"

    def finding(value: Any) -> Finding:
        if not isinstance(value, str):
            return _not_a_string(value)
        if value == "":
            return ("min_length", "不能为空字符串（无值时省略或用 null）。", "must not be empty (omit it or use null).")
        if len(value) > longest:
            return (
                "max_length",
                f"过长：{len(value)} 个字符，最多 {el.length} 个。",
                f"too long: {len(value)} characters, at most {el.length}.",
            )
        if codes is not None and value not in codes:
            assert cs is not None
            return (
                "enum",
                f"{_shown(el, value, 'zh')} 不在代码集 {cs.code}（{cs.name_zh}）中。",
                f"{_shown(el, value)} is not in code set {cs.code} ({cs.name_en}).",
            )
        if match is not None and match(value) is None:
            zh, en = _shown(el, value, "zh"), _shown(el, value)
            return ("pattern", f"不符合{where}：{zh}。", f"does not match {where_en}: {en}.")
        return None

    # One quick test per kind of string element (closed code set, pattern, free text).
    if codes is not None:
        closed = codes

        def check(value: Any) -> Finding:
            if value.__class__ is str and value in closed and 0 < len(value) <= longest:
                return None
            return absent if value is None else finding(value)

    elif match is not None:
        fullmatch = match

        def check(value: Any) -> Finding:
            if value.__class__ is str and 0 < len(value) <= longest and fullmatch(value) is not None:
                return None
            return absent if value is None else finding(value)

    else:

        def check(value: Any) -> Finding:
            if value.__class__ is str and 0 < len(value) <= longest:
                return None
            return absent if value is None else finding(value)

    return check


def element_check(el: Element, ds: Dataset) -> ElementCheck:
    """The compiled check of one element: its value (None when absent or null) to what is wrong with it."""
    absent = _REQUIRED if el.required else None
    if el.kind == "integer":
        return _integer_check(el, absent)
    if el.kind == "decimal":
        return _decimal_check(el, absent)
    if el.kind in ("date", "datetime"):
        return _calendar_check(el, absent)
    return _string_check(el, ds, absent)


def _object_check(rt: RecordType, ds: Dataset, allowed_extra: tuple[str, ...] = ()) -> RecordCheck:
    """The check of one object of record type rt (its items aside): unknown names, then each element."""
    known = frozenset(rt.codes) | frozenset(allowed_extra)
    checks = tuple((el.code, element_check(el, ds)) for el in rt.elements)
    code = rt.code

    def check(record: Any, path: str) -> list[Violation]:
        if record.__class__ is not dict and not isinstance(record, Mapping):  # the ABC check is slow: dicts skip it
            return _fails(path or "(record)", "type", "记录应为对象。", "a record must be an object.")
        out: list[Violation] = []
        prefix = f"{path}." if path else ""
        if not known.issuperset(record):
            for name in record:
                if name not in known:
                    out.append(
                        Violation(
                            f"{prefix}{name}",
                            "unknown",
                            f"{code} 没有数据元 {name!r}。",
                            f"{code} has no element {name!r}.",
                        )
                    )
        get = record.get
        for el_code, el_check in checks:
            found = el_check(get(el_code))
            if found is None:
                continue
            if found is _REQUIRED:
                found = (
                    ("required", "必填数据元为空。", "a required element is null.")
                    if el_code in record
                    else ("required", "缺少必填数据元。", "required element is missing.")
                )
            out.append(Violation(f"{prefix}{el_code}", *found))
        return out

    return check


def _compile_record(rt: RecordType, ds: Dataset) -> RecordCheck:
    items = rt.items
    top = _object_check(rt, ds, (items.code,) if items else ())
    if items is None:
        return top
    item_check = _object_check(items, ds)
    items_code, key_codes, low, high = items.code, items.key, rt.min_items, rt.max_items
    key_names = ", ".join(key_codes)

    def check(record: Any, path: str) -> list[Violation]:
        out = top(record, path)
        if record.__class__ is not dict and not isinstance(record, Mapping):
            return out
        where = f"{path}.{items_code}" if path else items_code
        children = record.get(items_code)
        if children is None:
            return [*out, *_fails(where, "required", "缺少明细。", "the items are missing.")]
        if not isinstance(children, list):
            return [*out, *_fails(where, "type", "明细应为列表。", "the items must be a list.")]
        if not low <= len(children) <= high:
            out += _fails(
                where,
                "count",
                f"明细 {len(children)} 条，应为 {low}–{high} 条。",
                f"{len(children)} items, {low}-{high} expected.",
            )
        seen: dict[tuple[Any, ...], int] = {}
        for i, child in enumerate(children):
            out += item_check(child, f"{where}[{i}]")
            if child.__class__ is dict or isinstance(child, Mapping):
                key = tuple(map(child.get, key_codes))
                if key in seen:
                    out += _fails(
                        f"{where}[{i}]",
                        "duplicate_key",
                        f"明细键 {key_names} 与第 {seen[key]} 条重复。",
                        f"item key {key_names} repeats item {seen[key]}.",
                    )
                seen.setdefault(key, i)
        return out

    return check


def record_check(rt: RecordType, ds: Dataset) -> RecordCheck:
    """validate_record for one record type, compiled on first use and kept with the dataset:
    `check(record, path)`. A caller checking many records may hold on to it."""
    held = ds._checks.get(id(rt))
    if held is None or held[0] is not rt:  # keyed by identity: an equal record type built elsewhere compiles anew
        held = (rt, _compile_record(rt, ds))
        ds._checks[id(rt)] = held
    return held[1]


def validate_record(rt: RecordType | str, record: Any, ds: Dataset, path: str = "") -> list[Violation]:
    """Everything wrong with one record in its wire form, each naming the element: [] when it may be sent.
    A settlement's items are checked too (`setl_item[3].cnt`), and their keys must be unique."""
    rt = ds.record_type(rt) if isinstance(rt, str) else rt
    return record_check(rt, ds)(record, path)


def record_key(rt: RecordType, record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's idempotency key: {element: value} of its key elements."""
    return {code: record.get(code) for code in rt.key}


def mask_record(rt: RecordType, record: Mapping[str, Any]) -> dict[str, Any]:
    """The record with its personal-data elements masked, for logs and reports."""
    pii = {el.code for el in rt.elements if el.pii}
    out = {k: ("***" if k in pii and v is not None else v) for k, v in record.items()}
    if rt.items and isinstance(record.get(rt.items.code), list):
        out[rt.items.code] = [mask_record(rt.items, c) if isinstance(c, Mapping) else c for c in record[rt.items.code]]
    return out
