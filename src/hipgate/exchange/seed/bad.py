"""Deliberately bad records for the data-quality checks: each kind breaks one thing in a documented way,
under a stable id (the data-quality rule it violates), and a manifest lists every bad record made.

A kind is *structural* when the dataset's own record check (hipgate.exchange.dataset.validate_record, and
the interface document's Record schema) refuses it, with `rule` the Violation.rule it reports; the other
kinds are well-formed and only a data-quality rule finds them (`found` is a reference implementation of
that rule, so the data-quality issue can compare its own with it). A kind is *storable* when the
exchange tables' column types hold it with its defect intact (a missing required element cannot be a
NOT NULL column, a 51-character name cannot be varchar(50), a repeated feedetl_sn breaks the items'
primary key, and a number written as a JSON number is a numeric column like any other once stored).
Each bad record breaks exactly its kind: amounts that are made wrong on purpose are balanced elsewhere,
so that no other kind's rule finds it.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from stdnum.cn import ric

from hipgate.exchange.dataset import Dataset, RecordType, record_key, validate_record
from hipgate.exchange.seed.dictionaries import Dictionaries
from hipgate.exchange.seed.people import gend_of
from hipgate.exchange.violations import Violation

CENT = Decimal("0.01")
# Well-formed codes that are no division of GB/T 2260 (Guangdong has no prefecture 30 or 99, Guangzhou
# no county 90), no diagnosis of ICD-10 (chapters III, IV and XI end at D89, E90 and K93), no medical type.
UNKNOWN_DIVISIONS = ("443000", "449900", "440190", "445400")
UNKNOWN_DIAGNOSES = ("D96.900", "E94.900", "K97.900")
UNKNOWN_MED_TYPES = ("15", "31", "99")
ADMDVS_ELEMENTS = ("insuplc_admdvs", "mdtrtarea_admvs")
DIVISION_RE = re.compile(r"[1-9][0-9]{5}")
ICD_RE = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Za-z+*]{1,12})?")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Record = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """What a detector may use besides the record."""

    rt: RecordType
    ds: Dataset
    dicts: Dictionaries


@dataclass(frozen=True)
class BadKind:
    id: str  # the data-quality rule it violates: DQ-…
    zh: str
    en: str
    needs: frozenset[str]  # the elements a record type must have for the kind to apply ("items": its items)
    touches: str  # the top-level element it changes ("items": an item's)
    storable: bool  # the exchange tables hold it with the defect intact
    rule: str | None  # validate_record's Violation.rule for a structural kind; None: only the DQ rule finds it
    mutate: Callable[[Record, random.Random, Check], str]  # breaks the record; returns the path it broke
    # The paths where a record has this defect, given the record's violations of the dataset check.
    found: Callable[[Record, Check, list[Violation]], list[str]]

    @property
    def structural(self) -> bool:
        return self.rule is not None

    def applies_to(self, rt: RecordType) -> bool:
        """The record type has what the kind breaks, and what it changes is neither the key (the manifest
        names the record by it) nor the partition's region or year (a re-seed finds the partition by them)."""
        have = set(rt.codes) | ({"items"} if rt.items else set())
        return self.needs <= have and self.touches not in (rt.region, rt.year, *rt.key)


# ---------------------------------------------------------------- helpers


def _dec(value: Any) -> Decimal | None:
    """A wire decimal (a string) as Decimal; None for anything else (a JSON number is another kind)."""
    if not isinstance(value, str):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        return None


def _text(value: Decimal) -> str:
    return format(value, "f")


def _items(rec: Record, chk: Check) -> list[Record]:
    code = chk.rt.items.code if chk.rt.items else ""
    items = rec.get(code)
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _items_path(chk: Check, i: int, element: str = "") -> str:
    assert chk.rt.items is not None
    return f"{chk.rt.items.code}[{i}]" + (f".{element}" if element else "")


def _add(rec: Record, element: str, delta: Decimal) -> None:
    value = _dec(rec[element])
    assert value is not None
    rec[element] = _text(value + delta)


def _delta(rng: random.Random) -> Decimal:
    """A positive error of the sizes people make: a cent, a dime, a yuan, ten."""
    return rng.choice((Decimal("0.01"), Decimal("0.10"), Decimal("1.00"), Decimal("10.00")))


def _ric_body(value: Any) -> str | None:
    """The 17 leading digits of an 18-character 身份证号, or None."""
    if isinstance(value, str) and len(value) == 18 and value[:17].isdigit():
        return value[:17]
    return None


def _structural(rule: str, element: str) -> Callable[[Record, Check, list[Violation]], list[str]]:
    """Reference detection of a structural kind: the dataset's own check, at that rule and element
    (element "": an item itself, as for a repeated item key)."""
    tail = f".{element}"

    def found(rec: Record, chk: Check, violations: list[Violation]) -> list[str]:
        return [
            v.path
            for v in violations
            if v.rule == rule and (v.path == element or v.path.endswith(tail) or (element == "" and "[" in v.path))
        ]

    return found


def _semantic(check: Callable[[Record, Check], list[str]]) -> Callable[[Record, Check, list[Violation]], list[str]]:
    return lambda rec, chk, violations: check(rec, chk)


# ---------------------------------------------------------------- the kinds


def _checkdigit(rec: Record, rng: random.Random, chk: Check) -> str:
    right = rec["certno"][-1]
    rec["certno"] = rec["certno"][:-1] + rng.choice([c for c in "0123456789X" if c != right])
    return "certno"


def _checkdigit_found(rec: Record, chk: Check) -> list[str]:
    body = _ric_body(rec.get("certno"))
    if rec.get("psn_cert_type") != "01" or body is None:
        return []
    return ["certno"] if rec["certno"][-1].upper() != ric.calc_check_digit(rec["certno"]) else []


def _birthdate(rec: Record, rng: random.Random, chk: Check) -> str:
    # Earlier by 1-400 days: still born before the visit, only no longer the date the 身份证号 states.
    day = dt.date.fromisoformat(rec["brdy"]) - dt.timedelta(days=rng.randint(1, 400))
    rec["brdy"] = day.isoformat()
    return "brdy"


def _birthdate_found(rec: Record, chk: Check) -> list[str]:
    body, brdy = _ric_body(rec.get("certno")), rec.get("brdy")
    if body is None or not isinstance(brdy, str) or not DATE_RE.fullmatch(brdy):
        return []
    return ["brdy"] if body[6:14] != brdy.replace("-", "") else []


def _gend(rec: Record, rng: random.Random, chk: Check) -> str:
    rec["gend"] = "2" if rec["gend"] == "1" else "1"
    return "gend"


def _gend_found(rec: Record, chk: Check) -> list[str]:
    body, gend = _ric_body(rec.get("certno")), rec.get("gend")
    if body is None or gend not in ("1", "2"):
        return []
    return ["gend"] if gend != gend_of(body + "0") else []


def _admdvs(rec: Record, rng: random.Random, chk: Check) -> str:
    rec["insuplc_admdvs"] = rng.choice(UNKNOWN_DIVISIONS)
    return "insuplc_admdvs"


def _admdvs_found(rec: Record, chk: Check) -> list[str]:
    return [
        e
        for e in ADMDVS_ELEMENTS
        if isinstance(rec.get(e), str) and DIVISION_RE.fullmatch(rec[e]) and rec[e] not in chk.dicts.divisions
    ]


def _icd(rec: Record, rng: random.Random, chk: Check) -> str:
    rec["dise_codg"] = rng.choice(UNKNOWN_DIAGNOSES)
    return "dise_codg"


def _icd_found(rec: Record, chk: Check) -> list[str]:
    code = rec.get("dise_codg")
    known = {d.code for d in chk.dicts.diagnoses}
    return ["dise_codg"] if isinstance(code, str) and ICD_RE.fullmatch(code) and code not in known else []


def _item_total(rec: Record, rng: random.Random, chk: Check) -> str:
    items = _items(rec, chk)
    i = rng.randrange(len(items))
    delta = _delta(rng)
    _add(items[i], "det_item_fee_sumamt", delta)
    _add(rec, "medfee_sumamt", delta)  # the sum of the items and the payments still agree
    _add(rec, "psn_cash_pay", delta)
    return _items_path(chk, i, "det_item_fee_sumamt")


def _item_total_found(rec: Record, chk: Check) -> list[str]:
    out = []
    for i, item in enumerate(_items(rec, chk)):
        total, cnt, pric = _dec(item.get("det_item_fee_sumamt")), _dec(item.get("cnt")), _dec(item.get("pric"))
        if total is None or cnt is None or pric is None:
            continue
        if total != (cnt * pric).quantize(CENT, ROUND_HALF_UP):
            out.append(_items_path(chk, i, "det_item_fee_sumamt"))
    return out


def _items_sum(rec: Record, rng: random.Random, chk: Check) -> str:
    delta = _delta(rng)
    _add(rec, "medfee_sumamt", delta)
    _add(rec, "psn_cash_pay", delta)  # the payments add up to the (wrong) total
    return "medfee_sumamt"


def _items_sum_found(rec: Record, chk: Check) -> list[str]:
    total = _dec(rec.get("medfee_sumamt"))
    parts = [_dec(i.get("det_item_fee_sumamt")) for i in _items(rec, chk)]
    if total is None or not parts or any(p is None for p in parts):
        return []
    return ["medfee_sumamt"] if total != sum(p for p in parts if p is not None) else []


def _pay_sum(rec: Record, rng: random.Random, chk: Check) -> str:
    _add(rec, "psn_cash_pay", _delta(rng))
    return "psn_cash_pay"


def _pay_sum_found(rec: Record, chk: Check) -> list[str]:
    values = [_dec(rec.get(e)) for e in ("medfee_sumamt", "fund_pay_sumamt", "psn_cash_pay", "acct_pay")]
    if any(v is None for v in values):
        return []
    total, fund, cash, acct = values
    assert total is not None and fund is not None and cash is not None and acct is not None
    return ["psn_cash_pay"] if fund + cash + acct != total else []


def _date_order(rec: Record, rng: random.Random, chk: Check) -> str:
    rec["enddate"] = (dt.date.fromisoformat(rec["begndate"]) - dt.timedelta(days=rng.randint(1, 30))).isoformat()
    return "enddate"


def _date_order_found(rec: Record, chk: Check) -> list[str]:
    begin, end = rec.get("begndate"), rec.get("enddate")
    if not (isinstance(begin, str) and isinstance(end, str) and DATE_RE.fullmatch(begin) and DATE_RE.fullmatch(end)):
        return []
    return ["enddate"] if end < begin else []


def _updt(rec: Record, rng: random.Random, chk: Check) -> str:
    at = dt.datetime.fromisoformat(rec["setl_time"]) - dt.timedelta(seconds=rng.randint(60, 30 * 86400))
    rec["updt_time"] = at.isoformat(sep=" ")
    return "updt_time"


def _updt_found(rec: Record, chk: Check) -> list[str]:
    setl, updt = rec.get("setl_time"), rec.get("updt_time")
    if not (isinstance(setl, str) and isinstance(updt, str) and len(setl) == len(updt) == 19):
        return []
    return ["updt_time"] if updt < setl else []


def _med_type(rec: Record, rng: random.Random, chk: Check) -> str:
    rec["med_type"] = rng.choice(UNKNOWN_MED_TYPES)
    return "med_type"


def _med_list(rec: Record, rng: random.Random, chk: Check) -> str:
    items = _items(rec, chk)
    i = rng.randrange(len(items))
    code = items[i]["med_list_codg"]
    items[i]["med_list_codg"] = f"{code[:4]} {code[4:]}"  # a space pasted into the code
    return _items_path(chk, i, "med_list_codg")


def _required(rec: Record, rng: random.Random, chk: Check) -> str:
    element = "dise_codg" if "dise_codg" in rec else "psn_name"
    del rec[element]
    return element


def _required_found(rec: Record, chk: Check, violations: list[Violation]) -> list[str]:
    return [v.path for v in violations if v.rule == "required" and "[" not in v.path]


def _long_name(rec: Record, rng: random.Random, chk: Check) -> str:
    # The clerk pasted the agent's note into the name field.
    name = rec["psn_name"] + f"（家属代办，住址：广东省广州市天河区天河路{rng.randint(1, 999)}号{rng.randint(1, 30)}栋"
    while len(name) <= 50:
        name += f"{rng.randint(101, 3299)}房，联系电话：138{rng.randint(0, 10**8 - 1):08d}"
    rec["psn_name"] = name + "）"
    return "psn_name"


def _json_number(rec: Record, rng: random.Random, chk: Check) -> str:
    rec["medfee_sumamt"] = float(rec["medfee_sumamt"])  # written as a JSON number, not a string
    return "medfee_sumamt"


def _duplicate_sn(rec: Record, rng: random.Random, chk: Check) -> str:
    items = _items(rec, chk)
    if len(items) < 2:  # a second line for the same charge, under the same serial number
        items.append(dict(items[0]))
        assert chk.rt.items is not None
        rec[chk.rt.items.code] = items
        extra = _dec(items[0]["det_item_fee_sumamt"])
        assert extra is not None
        _add(rec, "medfee_sumamt", extra)
        _add(rec, "psn_cash_pay", extra)
        return _items_path(chk, 1)
    j = rng.randrange(1, len(items))
    items[j]["feedetl_sn"] = items[rng.randrange(j)]["feedetl_sn"]
    return _items_path(chk, j)


_CERT, _ITEMS = frozenset({"certno", "psn_cert_type"}), frozenset({"items", "medfee_sumamt", "psn_cash_pay"})
_PAY = frozenset({"medfee_sumamt", "fund_pay_sumamt", "psn_cash_pay", "acct_pay"})
KINDS: tuple[BadKind, ...] = (
    BadKind(
        "DQ-CERTNO-CHECKDIGIT", "身份证号校验码错误（GB 11643）", "身份证号 with a wrong check digit (GB 11643)",
        _CERT, "certno", True, None, _checkdigit, _semantic(_checkdigit_found),
    ),
    BadKind(
        "DQ-CERTNO-BRDY", "出生日期与身份证号不符", "date of birth differs from the one in the 身份证号",
        frozenset({"certno", "brdy"}), "brdy", True, None, _birthdate, _semantic(_birthdate_found),
    ),
    BadKind(
        "DQ-CERTNO-GEND", "性别与身份证号顺序码的奇偶不符", "gender differs from the parity of the 身份证号's sequence",
        frozenset({"certno", "gend"}), "gend", True, None, _gend, _semantic(_gend_found),
    ),
    BadKind(
        "DQ-ADMDVS-UNKNOWN", "医保区划不是 GB/T 2260 的区划代码", "division code that is no GB/T 2260 division",
        frozenset({"insuplc_admdvs"}), "insuplc_admdvs", True, None, _admdvs, _semantic(_admdvs_found),
    ),
    BadKind(
        "DQ-ICD10-UNKNOWN", "诊断编码不在医保版 ICD-10 中", "diagnosis code not in the 医保版 ICD-10",
        frozenset({"dise_codg"}), "dise_codg", True, None, _icd, _semantic(_icd_found),
    ),
    BadKind(
        "DQ-AMOUNT-ITEM", "明细金额不等于数量×单价（四舍五入到分）", "item total is not cnt × pric rounded to the cent",
        _ITEMS, "items", True, None, _item_total, _semantic(_item_total_found),
    ),
    BadKind(
        "DQ-AMOUNT-ITEMS-SUM", "医疗费总额不等于明细金额之和", "total medical fees are not the sum of the items",
        _ITEMS, "medfee_sumamt", True, None, _items_sum, _semantic(_items_sum_found),
    ),
    BadKind(
        "DQ-AMOUNT-PAY-SUM", "基金、现金与个人账户支付之和不等于医疗费总额",
        "funds, cash and personal account do not add up to the total medical fees",
        _PAY, "psn_cash_pay", True, None, _pay_sum, _semantic(_pay_sum_found),
    ),
    BadKind(
        "DQ-DATE-ORDER", "结束日期早于开始日期", "end date before start date",
        frozenset({"begndate", "enddate"}), "enddate", True, None, _date_order, _semantic(_date_order_found),
    ),
    BadKind(
        "DQ-TIME-UPDT", "数据更新时间早于结算时间", "last update time before settlement time",
        frozenset({"setl_time", "updt_time"}), "updt_time", True, None, _updt, _semantic(_updt_found),
    ),
    BadKind(
        "DQ-CODESET-MED-TYPE", "医疗类别不在代码集中", "medical type not in its code set",
        frozenset({"med_type"}), "med_type", True, "enum", _med_type, _structural("enum", "med_type"),
    ),
    BadKind(
        "DQ-FORMAT-MED-LIST", "医疗目录编码格式错误（含空格）", "national catalogue code malformed (a space in it)",
        frozenset({"items"}), "items", True, "pattern", _med_list, _structural("pattern", "med_list_codg"),
    ),
    BadKind(
        "DQ-REQUIRED-MISSING", "缺少必填数据元", "required data element missing",
        frozenset({"psn_name"}), "dise_codg|psn_name", False, "required", _required, _required_found,
    ),
    BadKind(
        "DQ-LENGTH-NAME", "人员姓名超长（超过 50 个字符）", "person's name too long (over 50 characters)",
        frozenset({"psn_name"}), "psn_name", False, "max_length", _long_name, _structural("max_length", "psn_name"),
    ),
    BadKind(
        "DQ-FORMAT-DECIMAL-NUMBER", "金额写成 JSON 数值而非字符串", "amount written as a JSON number, not a string",
        frozenset({"medfee_sumamt"}), "medfee_sumamt", False, "type", _json_number,
        _structural("type", "medfee_sumamt"),
    ),
    BadKind(
        "DQ-ITEMS-DUPLICATE-SN", "费用明细流水号重复", "fee detail serial number repeated",
        frozenset({"items"}), "items", False, "duplicate_key", _duplicate_sn, _structural("duplicate_key", ""),
    ),
)  # fmt: skip
KIND_BY_ID = {k.id: k for k in KINDS}


def kinds_for(rt: RecordType, storable_only: bool = False, ids: tuple[str, ...] | None = None) -> tuple[BadKind, ...]:
    """The kinds that apply to a record type (only those the tables hold with `storable_only`)."""
    return tuple(
        k for k in KINDS if k.applies_to(rt) and (k.storable or not storable_only) and (ids is None or k.id in ids)
    )


def defects(rec: Record, chk: Check) -> dict[str, list[str]]:
    """Every kind's reference detection on one record: {kind id: paths}, only the kinds found."""
    violations = validate_record(chk.rt, rec, chk.ds)
    return {k.id: paths for k in KINDS if k.applies_to(chk.rt) and (paths := k.found(rec, chk, violations))}


# ---------------------------------------------------------------- the manifest


@dataclass
class Manifest:
    """The bad records made, as they are made. Entries are kept in memory unless `sink` takes each one
    (a 1 % share of 2 million records is 20 000 entries); `counts` always has the totals."""

    sink: Callable[[dict[str, Any]], None] | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (record type, kind) -> n
    records: Counter[str] = field(default_factory=Counter)  # record type -> records made

    def add(self, entry: dict[str, Any]) -> None:
        self.counts[(entry["record_type"], entry["kind"])] += 1
        if self.sink is not None:
            self.sink(entry)
        else:
            self.entries.append(entry)

    def summary(self) -> dict[str, Any]:
        """Counts by record type and kind, and what each kind is."""
        kinds = sorted({kind for _, kind in self.counts})
        return {
            "records": dict(self.records),
            "bad": {f"{rt}/{kind}": n for (rt, kind), n in sorted(self.counts.items())},
            "kinds": {
                k: {
                    "zh": KIND_BY_ID[k].zh,
                    "en": KIND_BY_ID[k].en,
                    "structural": KIND_BY_ID[k].structural,
                    "rule": KIND_BY_ID[k].rule,
                    "storable": KIND_BY_ID[k].storable,
                }
                for k in kinds
            },
        }


def entry(
    rt: RecordType, region: str, year: int, index: int, rec: Mapping[str, Any], kind: BadKind, path: str
) -> dict[str, Any]:
    return {
        "record_type": rt.code,
        "region": region,
        "year": year,
        "index": index,
        "key": record_key(rt, rec),
        "kind": kind.id,
        "path": path,
        "structural": kind.structural,
        "storable": kind.storable,
    }
