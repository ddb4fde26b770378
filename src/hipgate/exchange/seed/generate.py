"""Synthetic exchange records, one partition (record type, division, year) at a time.

Each partition draws from its own `random.Random`, seeded from a hash of (seed, record type, division,
year) alone, so any one region-year can be regenerated and compared without the others; records stream
out one at a time (`Iterator[dict]`) in the interface's wire form (decimals and times as strings). A
settlement is built as a hospital would bill it: a medical type, a diagnosis that fits the person's sex
and age, items from the national catalogue sample priced by the institution, item total = cnt × pric
rounded to the cent, medfee_sumamt = Σ items, the funds, the personal account and cash adding up to it.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import random
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any

from hipgate.errors import fail
from hipgate.exchange.dataset import Dataset, RecordType, load_dataset
from hipgate.exchange.seed import bad
from hipgate.exchange.seed.bad import Manifest
from hipgate.exchange.seed.dictionaries import CatalogueItem, Diagnosis, Dictionaries, load_dictionaries
from hipgate.exchange.seed.people import Person, person

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# How many insured persons a division has in the synthetic population, and how they come to the
# counter: person i with probability ∝ the square law below (a few come often, most rarely).
POPULATION = 1_000_000
# 医疗类别 of settlements, by share (%).
MED_TYPES = {"11": 52, "12": 3, "13": 6, "14": 12, "21": 10, "22": 1, "23": 0.5, "24": 1.5, "41": 12, "51": 1, "52": 1}
INPATIENT = frozenset({"21", "22", "23", "24", "52"})
# Which diagnoses each medical type draws from: (use, share of draws).
DIAGNOSIS_USE = {
    "11": (("outpatient", 0.8), ("chronic", 0.2)),
    "12": (("outpatient", 1.0),),
    "13": (("outpatient", 0.85), ("chronic", 0.15)),
    "14": (("chronic", 1.0),),
    "21": (("inpatient", 1.0),),
    "22": (("trauma", 1.0),),
    "23": (("inpatient", 1.0),),
    "24": (("inpatient", 1.0),),
    "41": (("chronic", 0.6), ("outpatient", 0.4)),
    "51": (("maternity_outpatient", 1.0),),
    "52": (("maternity_inpatient", 1.0),),
}
# Share of a setl's insured who are insured in another prefecture of the province (省内异地).
OTHER_PREFECTURE = 0.12
# The elements each builder produces (a dataset element outside these is left out when optional and
# refused when required).
VISIT_ORDER = (
    "setl_id", "mdtrt_id", "psn_no", "psn_cert_type", "certno", "psn_name", "gend", "brdy", "insutype",
    "insuplc_admdvs", "mdtrtarea_admvs", "fixmedins_code", "fixmedins_name", "med_type", "begndate", "enddate",
    "dise_codg", "dise_name", "medfee_sumamt", "fund_pay_sumamt", "psn_cash_pay", "acct_pay", "setl_time",
    "updt_time",
)  # fmt: skip
VISIT_FIELDS = frozenset(VISIT_ORDER)
ITEM_FIELDS = frozenset({
    "feedetl_sn", "med_list_codg", "medins_list_codg", "med_chrgitm_type", "chrgitm_lv", "det_item_fee_sumamt",
    "cnt", "pric", "fee_ocur_time",
})  # fmt: skip
PERSON_FIELDS = frozenset({
    "psn_no", "psn_cert_type", "certno", "psn_name", "gend", "brdy", "insutype", "insuplc_admdvs", "tel",
    "begndate", "updt_time",
})  # fmt: skip
GENERATED = {"setl": VISIT_FIELDS, "cross_visit": VISIT_FIELDS, "test_psn": PERSON_FIELDS}
ID_MARKER = {"setl": "S", "cross_visit": "Y"}


@dataclass(frozen=True)
class Partition:
    """One region-year of one record type: the unit of generation and of determinism."""

    record_type: str
    region: str
    year: int


def partition_random(seed: int, part: Partition, stream: str = "records") -> random.Random:
    """The partition's own random stream, from a hash of (seed, record type, region, year) alone."""
    key = f"hipgate-seed/v1|{seed}|{part.record_type}|{part.region}|{part.year}|{stream}"
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest(), "big"))


def _cumulative(weights: Mapping[str, float]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    keys, cum, total = [], [], 0.0
    for key, weight in weights.items():
        total += weight
        keys.append(key)
        cum.append(total)
    return tuple(keys), tuple(c / total for c in cum)


MED_TYPE_KEYS, MED_TYPE_CUM = _cumulative(MED_TYPES)


@dataclass(frozen=True)
class Institution:
    code: str
    name: str
    kind: str  # hospital | community | maternity | pharmacy


@dataclass(frozen=True, eq=False)
class Context:
    """What a partition's records draw from, made once per partition."""

    ds: Dataset
    dicts: Dictionaries
    rt: RecordType
    part: Partition
    seed: int
    codes: tuple[str, ...]  # the record type's elements the builder fills
    item_codes: tuple[str, ...]
    hospitals: tuple[Institution, ...]
    community: tuple[Institution, ...]
    maternity: tuple[Institution, ...]
    pharmacies: tuple[Institution, ...]
    insured_in: tuple[str, ...]  # divisions the insured of this partition come from (after the region)
    by_use: dict[str, tuple[Diagnosis, ...]]
    by_role: dict[str, tuple[CatalogueItem, ...]]
    first_day: dt.date
    days: int
    infusion: tuple[CatalogueItem, ...]
    prices: dict[tuple[str, str], tuple[Decimal, str, str]] = field(default_factory=dict)
    days_text: dict[int, str] = field(default_factory=dict)  # the partition's days (and a few around it)

    @property
    def first_ordinal(self) -> int:
        return self.first_day.toordinal()

    def stamp(self, ordinal: int, seconds: int) -> str:
        """`yyyy-MM-dd HH:mm:ss` of `seconds` after midnight of the day `ordinal` (may run into later days)."""
        extra, seconds = divmod(seconds, 86400)
        day = self.day_text(ordinal + extra)
        minutes, sec = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        return f"{day} {hours:02d}:{minute:02d}:{sec:02d}"

    def day_text(self, ordinal: int) -> str:
        text = self.days_text.get(ordinal)
        if text is None:
            text = self.days_text[ordinal] = dt.date.fromordinal(ordinal).isoformat()
        return text


def institutions(dicts: Dictionaries, region: str) -> dict[str, tuple[Institution, ...]]:
    """The synthetic designated institutions of a prefecture: H/P + the county's division + 5 digits."""
    pref = dicts.divisions[region]
    counties = dicts.counties(region)
    out: dict[str, list[Institution]] = {"hospital": [], "community": [], "maternity": [], "pharmacy": []}
    out["hospital"] += [
        Institution(f"H{region}00001", f"{pref.name}第一人民医院", "hospital"),
        Institution(f"H{region}00002", f"{pref.name}中医院", "hospital"),
    ]
    out["maternity"].append(Institution(f"H{region}00003", f"{pref.name}妇幼保健院", "maternity"))
    places = [(c.code, f"{pref.name}{c.name}") for c in counties] or [(region, pref.name)]
    for code, name in places:
        out["hospital"].append(Institution(f"H{code}00010", f"{name}人民医院", "hospital"))
        for k in range(1, 4):
            out["community"].append(Institution(f"H{code}001{k:02d}", f"{name}第{k}社区卫生服务中心", "community"))
            out["pharmacy"].append(Institution(f"P{code}002{k:02d}", f"{name}康民大药房第{k}分店", "pharmacy"))
    return {k: tuple(v) for k, v in out.items()}


@lru_cache(maxsize=8)
def _by_use(dicts: Dictionaries) -> dict[str, tuple[Diagnosis, ...]]:
    out: dict[str, list[Diagnosis]] = {}
    for d in dicts.diagnoses:
        out.setdefault(d.use, []).append(d)
    out["trauma"] = [d for d in dicts.diagnoses if d.code.startswith("S")]
    return {k: tuple(v) for k, v in out.items()}


@lru_cache(maxsize=8)
def _by_role(dicts: Dictionaries) -> dict[str, tuple[CatalogueItem, ...]]:
    out: dict[str, list[CatalogueItem]] = {}
    for item in dicts.catalogue.values():
        for role in item.roles:
            out.setdefault(role, []).append(item)
    return {k: tuple(v) for k, v in out.items()}


def context(part: Partition, seed: int, ds: Dataset | None = None, dicts: Dictionaries | None = None) -> Context:
    """Everything a partition needs, checked: a record type the generator builds, a prefecture of the
    dictionary as region, a year after the synthetic population's births."""
    ds = ds or load_dataset()
    dicts = dicts or load_dictionaries()
    if part.record_type not in GENERATED:
        raise fail(
            f"record type {part.record_type}",
            f"不生成记录类型 {part.record_type}（只生成上传的 {', '.join(GENERATED)}）。",
            f"record type {part.record_type} is not generated (only the uploaded {', '.join(GENERATED)}).",
            f"选用：{', '.join(GENERATED)}。",
            f"choose from: {', '.join(GENERATED)}.",
        )
    rt = ds.record_type(part.record_type)
    produced = GENERATED[part.record_type]
    missing = [el.code for el in rt.elements if el.required and el.code not in produced]
    if rt.items:
        items = rt.items
        missing += [f"{items.code}.{el.code}" for el in items.elements if el.required and el.code not in ITEM_FIELDS]
    if missing:
        raise fail(
            f"{rt.file}",
            f"样例数据生成器无法填写必填数据元：{', '.join(missing)}。",
            f"the seed generator cannot fill the required elements {', '.join(missing)}.",
            "在 hipgate.exchange.seed.generate 中为其加上取值，或把它设为非必填。",
            "add a value for them to hipgate.exchange.seed.generate, or make them optional.",
        )
    div = dicts.divisions.get(part.region)
    if div is None or div.level != "prefecture":
        choices = ", ".join(d.code for d in dicts.prefectures(dicts.province))
        raise fail(
            f"region {part.region}",
            f"{part.region} 不是词典中的地市级医保区划。",
            f"{part.region} is not a prefecture-level division of the dictionary.",
            f"选用 {dicts.province} 的地市：{choices}。",
            f"choose a prefecture of {dicts.province}: {choices}.",
        )
    if not 2000 <= part.year <= 2099:
        raise fail(
            f"year {part.year}",
            f"年度 {part.year} 超出 2000–2099。",
            f"year {part.year} is outside 2000-2099.",
            "选用 2000–2099 之间的年度。",
            "choose a year from 2000 to 2099.",
        )
    province = dicts.province_of(part.region)
    if part.record_type == "cross_visit":  # the out-of-province insured treated here
        insured = tuple(d.code for p in dicts.provinces() if p.code != province for d in dicts.prefectures(p.code))
    else:
        insured = tuple(d.code for d in dicts.prefectures(province) if d.code != part.region)
    inst = institutions(dicts, part.region)
    first = dt.date(part.year, 1, 1)
    return Context(
        ds, dicts, rt, part, seed,
        tuple(el.code for el in rt.elements if el.code in produced),
        tuple(el.code for el in rt.items.elements if el.code in ITEM_FIELDS) if rt.items else (),
        inst["hospital"], inst["community"], inst["maternity"], inst["pharmacy"], insured,
        _by_use(dicts), _by_role(dicts), first, (dt.date(part.year + 1, 1, 1) - first).days,
        tuple(i for r in ("infusion", "infusion_fluid", "infusion_set") for i in _by_role(dicts).get(r, ())),
    )  # fmt: skip


# ---------------------------------------------------------------- one settlement


def _amount(value: Decimal) -> str:
    return format(value, "f")


def _below(rng: random.Random, n: int) -> int:
    """A uniform integer in [0, n) (random.randrange's speed matters here, its exactness does not)."""
    return int(rng.random() * n)


def _pick_person(ctx: Context, rng: random.Random, day: dt.date) -> Person:
    """An insured person born before `day`: of the region mostly, else of insured_in."""
    local = ctx.part.record_type != "cross_visit" and rng.random() >= OTHER_PREFECTURE
    while True:
        insuplc = ctx.part.region if local else ctx.insured_in[_below(rng, len(ctx.insured_in))]
        p = person(ctx.dicts, ctx.seed, insuplc, int(POPULATION * rng.random() ** 2))
        if p.brdy < day:
            return p


def _choose_diagnosis(ctx: Context, rng: random.Random, med_type: str, gend: str, age: int) -> Diagnosis | None:
    """A diagnosis of the medical type's uses that fits the person's sex and age, or None."""
    uses = DIAGNOSIS_USE[med_type]
    r, acc, use = rng.random(), 0.0, uses[-1][0]
    for name, share in uses:
        acc += share
        if r < acc:
            use = name
            break
    pool = [d for d in ctx.by_use[use] if (d.sex is None or d.sex == gend) and d.ages[0] <= age <= d.ages[1]]
    return pool[_below(rng, len(pool))] if pool else None


def _price(ctx: Context, item: CatalogueItem, fixmedins: str) -> tuple[Decimal, str, str]:
    """(price, price as text, the institution's own item code): services at the regional price, drugs
    and consumables within ±5 % of it, fixed per institution (cached per partition)."""
    key = (fixmedins, item.code)
    hit = ctx.prices.get(key)
    if hit is None:
        mix = zlib.crc32(f"{fixmedins}|{item.code}".encode())
        pric = item.pric
        if item.kind != "medical_service":
            pric = (pric * (95 + mix % 11) / 100).quantize(item.pric, ROUND_HALF_UP)
        prefix = "ZL" if item.kind == "medical_service" else ("HC" if item.kind == "consumable" else "YP")
        hit = ctx.prices[key] = (pric, _amount(pric), f"{prefix}{mix // 11 % 10**8:08d}")
    return hit


def _lines(
    ctx: Context, rng: random.Random, med_type: str, diag: Diagnosis, days: int
) -> list[tuple[CatalogueItem, Decimal]]:
    """The catalogue items billed, with their quantities."""
    role = ctx.by_role
    chosen: list[CatalogueItem] = []

    def some(name: str, least: int, most: int) -> None:
        pool = role.get(name, ())
        for _ in range(least + _below(rng, most - least + 1)):
            chosen.append(pool[_below(rng, len(pool))])

    if med_type in INPATIENT:
        chosen.extend(role.get("ward_daily", ()))
        if rng.random() < 0.85:
            chosen.extend(ctx.infusion)
        some("ward_lab", 1, 1)
        some("ward_exam", 1, 2)
        some("ward_drug", 1, 3)
        some("drug", 0, 2)
    elif med_type == "41":
        some("chronic_drug" if diag.use == "chronic" else "drug", 1, 3)
    else:
        chosen.extend(role.get("emergency_consult" if med_type == "13" else "outpatient_consult", ()))
        if med_type in ("11", "13"):
            if rng.random() < 0.35:
                some("exam", 1, 1)
            if rng.random() < 0.25:
                some("lab", 1, 1)
            some("drug", 1, 3)
        elif med_type == "14":
            some("chronic_drug", 0, 1)
    if med_type != "12":
        catalogue = ctx.dicts.catalogue
        chosen.extend(catalogue[c] for c in diag.items if med_type != "41" or catalogue[c].kind.endswith("drug"))
    out: list[tuple[CatalogueItem, Decimal]] = []
    seen: set[str] = set()
    for item in chosen:
        if item.code in seen:  # one line per item: a second draw of it adds nothing
            continue
        seen.add(item.code)
        least, most = item.cnt
        n = least + _below(rng, most - least + 1)
        if item.per_day:
            n *= max(days, 1)
        if n <= 0:
            continue
        if item.unit == "小时":  # oxygen by the half hour
            out.append((item, Decimal(n * 2 - _below(rng, 2)) / 2))
        else:
            out.append((item, Decimal(n)))
    return out


def _payments(
    total: Decimal, employee: bool, med_type: str, use: str, rng: random.Random
) -> tuple[Decimal, Decimal, Decimal]:
    """(fund, cash, account) adding up to total: the funds pay a share above the deductible, an
    employee's personal account pays what it can of the rest, cash the remainder."""
    inpatient = med_type in INPATIENT
    if med_type == "41":
        ratio = Decimal(0)
    elif med_type in ("51", "52"):
        ratio = Decimal("1.00") if employee else Decimal("0.70")
    elif inpatient:
        ratio = Decimal("0.85") if employee else Decimal("0.65")
    elif use == "chronic":
        ratio = Decimal("0.75") if employee else Decimal("0.60")
    else:
        ratio = Decimal("0.60") if employee else Decimal("0.50")
    deductible = (Decimal(300) if employee else Decimal(500)) if inpatient and med_type != "52" else ZERO
    fund = max(ZERO, ((total - deductible) * ratio).quantize(CENT, ROUND_DOWN))
    rest = total - fund
    account = min(rest, Decimal(_below(rng, 300_000)) / 100) if employee else ZERO
    return fund, rest - account, account


def _visit(ctx: Context, rng: random.Random, index: int) -> dict[str, Any]:
    """One settled visit: every field of VISIT_FIELDS and, when the record type has items, its items."""
    part = ctx.part
    day_no = ctx.first_ordinal + _below(rng, ctx.days)
    day = dt.date.fromordinal(day_no)
    p = _pick_person(ctx, rng, day)
    med_type = MED_TYPE_KEYS[bisect.bisect(MED_TYPE_CUM, rng.random())]
    diag = _choose_diagnosis(ctx, rng, med_type, p.gend, p.age_on(day))
    if diag is None:  # nothing of that medical type fits the person (maternity for a man): outpatient
        med_type = "11"
        diag = _choose_diagnosis(ctx, rng, med_type, p.gend, p.age_on(day))
        assert diag is not None  # J06.900 and the like fit everyone
    inpatient = med_type in INPATIENT
    if med_type == "52":
        days = 2 + _below(rng, 5)
    elif inpatient:
        days = 1 + min(59, int(rng.expovariate(1 / 6)))
    else:
        days = 0
    days = min(days, day_no - p.brdy.toordinal())  # a newborn's stay began at birth at the earliest
    if med_type == "41":
        inst = ctx.pharmacies[_below(rng, len(ctx.pharmacies))]
    elif med_type in ("51", "52") and rng.random() < 0.7:
        inst = ctx.maternity[0]
    elif inpatient or rng.random() < 0.5:
        inst = ctx.hospitals[_below(rng, len(ctx.hospitals))]
    else:
        inst = ctx.community[_below(rng, len(ctx.community))]
    # Times as seconds from midnight of begndate: settled during opening hours of the last day.
    opens, closes = (9 * 3600, 17 * 3600) if inpatient else (8 * 3600, 21 * 3600)
    setl_at = days * 86400 + opens + _below(rng, closes - opens)
    updt_at = setl_at if rng.random() < 0.6 else setl_at + 60 + _below(rng, 72 * 3600 - 60)
    begin_no = day_no - days
    stamp = ctx.stamp
    marker = ID_MARKER[part.record_type]
    mdtrt_id = f"{part.region}{part.year}M{marker}{index:09d}"
    total = ZERO
    items: list[dict[str, Any]] = []
    with_items = ctx.rt.items is not None
    first_fee = 8 * 3600 if inpatient else days * 86400
    for k, (item, cnt) in enumerate(_lines(ctx, rng, med_type, diag, days)):
        pric, pric_text, own = _price(ctx, item, inst.code)
        fee = (cnt * pric).quantize(CENT, ROUND_HALF_UP)
        total += fee
        if not with_items:
            continue
        if inpatient:
            at = first_fee + _below(rng, setl_at - first_fee + 1)
        else:
            at = max(setl_at - _below(rng, 3600), first_fee)
        items.append(
            {
                "feedetl_sn": f"{mdtrt_id}-{k + 1:04d}",
                "med_list_codg": item.code,
                "medins_list_codg": own,
                "med_chrgitm_type": item.type,
                "chrgitm_lv": item.lv,
                "det_item_fee_sumamt": _amount(fee),
                "cnt": _amount(cnt),
                "pric": pric_text,
                "fee_ocur_time": stamp(begin_no, at),
            }
        )
    fund, cash, account = _payments(total, p.employee, med_type, diag.use, rng)
    maternity = med_type in ("51", "52")
    full = {
        "setl_id": f"{part.region}{part.year}{marker}{index:09d}",
        "mdtrt_id": mdtrt_id,
        "psn_no": p.psn_no,
        "psn_cert_type": "01",
        "certno": p.certno,
        "psn_name": p.psn_name,
        "gend": p.gend,
        "brdy": p.brdy.isoformat(),
        "insutype": ("510" if maternity else "310") if p.employee else "390",
        "insuplc_admdvs": p.insuplc_admdvs,
        "mdtrtarea_admvs": part.region,
        "fixmedins_code": inst.code,
        "fixmedins_name": inst.name,
        "med_type": med_type,
        "begndate": ctx.day_text(begin_no),
        "enddate": ctx.day_text(day_no),
        "dise_codg": diag.code,
        "dise_name": diag.name,
        "medfee_sumamt": _amount(total),
        "fund_pay_sumamt": _amount(fund),
        "psn_cash_pay": _amount(cash),
        "acct_pay": _amount(account),
        "setl_time": stamp(begin_no, setl_at),
        "updt_time": stamp(begin_no, updt_at),
    }
    record = full if ctx.codes == VISIT_ORDER else {code: full[code] for code in ctx.codes}
    if with_items:
        assert ctx.rt.items is not None
        codes = ctx.item_codes
        record[ctx.rt.items.code] = items if len(codes) == len(ITEM_FIELDS) else [
            {c: it[c] for c in codes} for it in items
        ]  # fmt: skip
    return record


def _test_person(ctx: Context, rng: random.Random, index: int) -> dict[str, Any]:
    """A test person registered for the go-live drill (9201) in the partition's year."""
    part = ctx.part
    begndate = ctx.first_day + dt.timedelta(days=int(rng.random() * ctx.days))
    n = POPULATION + index  # test persons are outside the insured population
    while (p := person(ctx.dicts, ctx.seed, part.region, n)).brdy > begndate:
        n += 1 << 32
    updt = dt.datetime.combine(begndate, dt.time()) + dt.timedelta(seconds=rng.randrange(8 * 3600, 20 * 3600))
    full = {
        "psn_no": f"{part.region}T{index:013d}",
        "psn_cert_type": "01",
        "certno": p.certno,
        "psn_name": p.psn_name,
        "gend": p.gend,
        "brdy": p.brdy.isoformat(),
        "insutype": "310" if p.employee else "390",
        "insuplc_admdvs": part.region,
        "tel": p.tel if rng.random() < 0.8 else None,
        "begndate": begndate.isoformat(),
        "updt_time": updt.isoformat(sep=" "),
    }
    return {code: full[code] for code in ctx.codes if full[code] is not None}


BUILDERS = {"setl": _visit, "cross_visit": _visit, "test_psn": _test_person}


def good_records(ctx: Context, count: int) -> Iterator[dict[str, Any]]:
    """The partition's `count` records, all good, in order (record i is the same whatever else is asked)."""
    rng = partition_random(ctx.seed, ctx.part)
    build = BUILDERS[ctx.part.record_type]
    for index in range(count):
        yield build(ctx, rng, index)


DEFAULT_BAD_SHARE = 0.01


def generate(
    part: Partition,
    count: int,
    *,
    seed: int,
    bad_share: float = DEFAULT_BAD_SHARE,
    storable_only: bool = False,
    kinds: tuple[str, ...] | None = None,
    manifest: Manifest | None = None,
    ds: Dataset | None = None,
    dicts: Dictionaries | None = None,
) -> Iterator[dict[str, Any]]:
    """`count` records of one partition, round(count × bad_share) of them bad: the positions and the
    kinds (spread evenly over the kinds that apply, or those named in `kinds`; only those the tables
    hold with `storable_only`) come from the partition's own "bad" stream, and each bad record is
    reported to `manifest` as it is yielded. Record i is the same good record whatever the share,
    unless it is one of the bad ones."""
    if not 0 <= bad_share <= 1:
        raise ValueError(f"bad_share {bad_share} is not between 0 and 1")
    ctx = context(part, seed, ds, dicts)
    chosen = bad.kinds_for(ctx.rt, storable_only, kinds)
    brng = partition_random(seed, part, "bad")
    n_bad = round(count * bad_share) if chosen else 0
    order = list(chosen)
    brng.shuffle(order)
    plan = {index: order[j % len(order)] for j, index in enumerate(brng.sample(range(count), n_bad))}
    check = bad.Check(ctx.rt, ctx.ds, ctx.dicts)
    for index, rec in enumerate(good_records(ctx, count)):
        kind = plan.get(index)
        if kind is not None:
            path = kind.mutate(rec, brng, check)
            if manifest is not None:
                manifest.add(bad.entry(ctx.rt, part.region, part.year, index, rec, kind, path))
        if manifest is not None:
            manifest.records[part.record_type] += 1
        yield rec
