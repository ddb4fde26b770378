"""The catalogue and dictionary versions the simulator publishes (1301 lists them, 1302 pages through one).

A small deterministic catalogue: every closed code set of the dataset as a dictionary (version
`2024.1`), the province-level divisions, a few diagnoses, institutions and catalogue items; `med_list`
also has a later version `2025.1` (one item withdrawn, one added), so that a middleware sees a new
version. `publish_version` adds the next version of a catalogue on command.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hipgate.exchange.dataset import Dataset
from hipgate.simulator.outbox import make_cursor, read_cursor

FIRST_RELEASE = "2024-01-01 00:00:00"
PROVINCE_NAMES = {
    "110000": "北京市", "120000": "天津市", "130000": "河北省", "140000": "山西省", "150000": "内蒙古自治区",
    "210000": "辽宁省", "220000": "吉林省", "230000": "黑龙江省", "310000": "上海市", "320000": "江苏省",
    "330000": "浙江省", "340000": "安徽省", "350000": "福建省", "360000": "江西省", "370000": "山东省",
    "410000": "河南省", "420000": "湖北省", "430000": "湖南省", "440000": "广东省", "450000": "广西壮族自治区",
    "460000": "海南省", "500000": "重庆市", "510000": "四川省", "520000": "贵州省", "530000": "云南省",
    "540000": "西藏自治区", "610000": "陕西省", "620000": "甘肃省", "630000": "青海省", "640000": "宁夏回族自治区",
    "650000": "新疆维吾尔自治区",
}  # fmt: skip
ICD10 = [
    ("E11.900", "2型糖尿病"), ("I10.x00", "原发性高血压"), ("J18.900", "肺炎"), ("K35.800", "急性阑尾炎"),
    ("N18.500", "慢性肾脏病5期"), ("S72.000", "股骨颈骨折"), ("C34.900", "支气管或肺恶性肿瘤"),
]  # fmt: skip
MED_LIST = [
    ("XA10BAE054A001010101445", "盐酸二甲双胍片", "drug"),
    ("XC09AAE056A001010201903", "卡托普利片", "drug"),
    ("XJ01CAA040E001010101231", "阿莫西林胶囊", "drug"),
    ("001102000010000", "普通门诊诊查费", "service"),
    ("001201000010000", "床位费", "service"),
    ("C0301010010000000001", "一次性使用输液器", "consumable"),
]


def _entry(code: str, name: str, attrs: dict[str, str | None] | None = None, valid: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "code": code,
        "name": name,
        "vali_flag": "1" if valid else "0",
        "begntime": FIRST_RELEASE,
        "endtime": None,
    }
    if attrs:
        out["attrs"] = attrs
    return out


def builtin(dataset: Dataset, province: str) -> list[dict[str, Any]]:
    """The catalogue versions every simulator starts with."""
    versions = []
    for cs in sorted(dataset.codesets.values(), key=lambda c: c.code):
        if cs.values:
            entries = [_entry(code, zh, {"name_en": en}) for code, zh, en in cs.values]
            versions.append((cs.code, cs.name_zh, entries))
    divisions = [_entry(code, name) for code, name in sorted(PROVINCE_NAMES.items())]
    versions.append(("admdvs", "医保区划", divisions))
    versions.append(("icd10", "医保疾病诊断分类与代码", [_entry(c, n) for c, n in ICD10]))
    institutions = [
        _entry(f"H{province[:2]}0100{i:05d}", f"{PROVINCE_NAMES.get(province, '')}第{i}人民医院", {"hosp_lv": "3"})
        for i in range(1, 6)
    ]
    versions.append(("fixmedins", "定点医药机构", institutions))
    items = [_entry(c, n, {"list_type": t}) for c, n, t in MED_LIST]
    med_list_name = "医保目录（药品、医疗服务项目、医用耗材）"
    versions.append(("med_list", med_list_name, items))
    out = [
        {"catalog_code": code, "catalog_name": name, "ver": "2024.1", "ver_name": f"{name} 2024 年第 1 版",
         "release_time": FIRST_RELEASE, "entries": entries}
        for code, name, entries in versions
    ]  # fmt: skip
    later = [dict(e) for e in items]
    later[1] = {**later[1], "vali_flag": "0", "endtime": "2024-12-31 23:59:59"}
    later.append(_entry("XN02BEL108A001010104028", "对乙酰氨基酚片", {"list_type": "drug"}))
    out.append(
        {"catalog_code": "med_list", "catalog_name": med_list_name, "ver": "2025.1",
         "ver_name": "医保目录 2025 年第 1 版", "release_time": "2025-01-01 00:00:00", "entries": later}
    )  # fmt: skip
    return out


def store_version(conn: sqlite3.Connection, version: dict[str, Any]) -> bool:
    cur = conn.execute(
        "INSERT OR IGNORE INTO catalog VALUES (?, ?, ?, ?, ?, ?)",
        (
            version["catalog_code"],
            version["ver"],
            version["catalog_name"],
            version["ver_name"],
            version["release_time"],
            json.dumps(version["entries"], ensure_ascii=False),
        ),
    )
    return bool(cur.rowcount)


def seed(conn: sqlite3.Connection, dataset: Dataset, province: str) -> None:
    for version in builtin(dataset, province):
        store_version(conn, version)


def publish_version(conn: sqlite3.Connection, catalog_code: str, release_time: str) -> dict[str, Any]:
    """The next version of a catalogue: its latest version with one more entry (deterministic)."""
    row = conn.execute(
        "SELECT * FROM catalog WHERE catalog_code = ? ORDER BY release_time DESC, ver DESC LIMIT 1", (catalog_code,)
    ).fetchone()
    if row is None:
        raise KeyError(catalog_code)
    n = conn.execute("SELECT count(*) FROM catalog WHERE catalog_code = ?", (catalog_code,)).fetchone()[0]
    entries = json.loads(row["entries"])
    entries.append(_entry(f"SIM{catalog_code[:8].upper()}{n:04d}", f"模拟新增条目 {n}", {"note": "simulator"}))
    version = {
        "catalog_code": catalog_code,
        "catalog_name": row["catalog_name"],
        "ver": f"sim.{n + 1}",
        "ver_name": f"{row['catalog_name']} 模拟第 {n + 1} 版",
        "release_time": release_time,
        "entries": entries,
    }
    store_version(conn, version)
    return {k: v for k, v in version.items() if k != "entries"} | {"entry_count": len(entries)}


def list_versions(
    conn: sqlite3.Connection, secret: bytes, catalog_code: str | None, cursor: str | None, limit: int
) -> dict[str, Any]:
    """1301: versions by release time, then code and version; the cursor is bound to the filter."""
    scope = catalog_code or ""
    position = read_cursor(secret, "1301", cursor, scope)
    where, args = ("WHERE catalog_code = ?", [catalog_code]) if catalog_code else ("", [])
    rows = conn.execute(
        "SELECT catalog_code, catalog_name, ver, ver_name, release_time, json_array_length(entries) AS entry_count"
        f" FROM catalog {where} ORDER BY release_time, catalog_code, ver LIMIT ? OFFSET ?",
        (*args, limit + 1, position),
    ).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "versions": [dict(r) for r in rows],
        "next_cursor": make_cursor(secret, "1301", position + len(rows), scope),
        "more": more,
    }


def download_version(
    conn: sqlite3.Connection, secret: bytes, catalog_code: str, ver: str, cursor: str | None, limit: int
) -> dict[str, Any] | None:
    """1302: one page of a version's entries, or None for an unknown catalogue or version (-1501)."""
    row = conn.execute("SELECT entries FROM catalog WHERE catalog_code = ? AND ver = ?", (catalog_code, ver)).fetchone()
    if row is None:
        return None
    scope = f"{catalog_code}|{ver}"
    position = read_cursor(secret, "1302", cursor, scope)
    entries = json.loads(row["entries"])
    page = entries[position : position + limit]
    return {
        "catalog_code": catalog_code,
        "ver": ver,
        "entries": page,
        "next_cursor": make_cursor(secret, "1302", position + len(page), scope),
        "more": position + len(page) < len(entries),
    }
