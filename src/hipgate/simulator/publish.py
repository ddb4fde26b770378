"""What the simulated platform publishes for the province to download, generated deterministically
from the seed: anomalies (5401) for a share of the records it accepts, fee-check forms (5201) about
settlements it holds, and cross-province visits of the province's insured (5301).

Identifiers, choices and amounts follow from the seed and the records; only the times (issu_time,
detc_time, updt_time) are the platform's clock, as a real platform's are.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sqlite3
import zlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from hipgate.exchange.fingerprint import key_text
from hipgate.simulator import outbox
from hipgate.simulator.context import Env, time_text

# Realistic findings by anomaly type (codeset anomaly_type): severity (ano_lv), the element named and
# the description. {value} is the element's value when it is not personal data.
FINDINGS = [
    ("02", "2", "dise_codg",
     "主要诊断编码 {value} 不在医保疾病诊断代码库中 / main diagnosis {value} is not in the diagnosis catalogue"),
    ("04", "2", "enddate",
     "结束日期与开始日期、结算时间不符 / end date inconsistent with the start date and settlement time"),
    ("05", "3", "medfee_sumamt", "医疗费总额与费用明细合计不符 / total fees differ from the sum of the items"),
    ("07", "2", "psn_no", "人员编号在全国参保库中未找到 / person number not found in the national insured register"),
    ("07", "1", "fixmedins_code",
     "定点医药机构 {value} 未在全国定点机构库登记 / institution {value} not in the national register"),
    ("08", "1", "setl_time", "结算后超过 30 日才上传 / uploaded more than 30 days after settlement"),
    ("06", "2", None, "与平台已有的另一条记录疑似重复 / suspected duplicate of another record held"),
]  # fmt: skip
PII_FREE = {"dise_codg", "fixmedins_code", "setl_time", "medfee_sumamt", "enddate"}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红"
HOSPITALS = ["人民医院", "中医院", "第一人民医院", "妇幼保健院", "中心医院", "大学附属医院"]
DIAGNOSES = [
    ("J18.900", "肺炎"),
    ("I10.x00", "原发性高血压"),
    ("E11.900", "2型糖尿病"),
    ("K35.800", "急性阑尾炎"),
    ("N18.500", "慢性肾脏病5期"),
    ("S72.000", "股骨颈骨折"),
]
# Province-level divisions (GB/T 2260) a cross-province visit can happen in.
PROVINCES = ["110000", "120000", "310000", "320000", "330000", "370000", "420000", "440000", "500000", "510000"]


def _choice(env: Env, *parts: object) -> float:
    """A number in [0, 1) that depends only on the seed and parts."""
    return int(env.derive(*parts)[:13], 16) / float(1 << 52)


def anomaly_for(
    env: Env,
    record_type: str,
    record: Mapping[str, Any],
    key: Mapping[str, Any],
    now: dt.datetime,
    file_qry_no: str | None = None,
    rec_key: str | None = None,
) -> dict[str, Any] | None:
    """The anomaly a newly accepted record (or version) gets, for a share (config anomaly_share) of them.
    `rec_key`: key_text(key), when the caller has it already."""
    rec_key = key_text(key) if rec_key is None else rec_key
    updt_time = str(record.get("updt_time"))
    if _choice(env, "anomaly", record_type, rec_key, updt_time) >= env.config.anomaly_share:
        return None
    ano_type, level, element, text = FINDINGS[int(env.derive("finding", record_type, rec_key), 16) % len(FINDINGS)]
    value = record.get(element) if element in PII_FREE else None
    rt = env.contract.record_type(record_type)
    region = record.get(rt.region) if rt.region else None
    return {
        "ano_id": "AN" + env.derive("ano_id", record_type, rec_key, updt_time)[:30].upper(),
        "ano_type": ano_type,
        "ano_lv": level,
        "admdvs": str(region or env.config.province),
        "rec_type": record_type,
        "rec_key": rec_key[:200],
        "file_qry_no": file_qry_no,
        "elem_code": element if element in record else None,
        "ano_dscr": text.format(value=value if value is not None else ""),
        "detc_time": time_text(now),
        "updt_time": time_text(now),
    }


def file_anomaly(
    env: Env, file_qry_no: str, where: str, element: str | None, reason: str, now: dt.datetime, **extra: Any
) -> dict[str, Any]:
    """An anomaly about a history file or one of its lines (type 01/02 for a bad line, 09 for the file)."""
    ano_type = extra.pop("ano_type", "02")
    return {
        "ano_id": "AN" + env.derive("file_anomaly", file_qry_no, where)[:30].upper(),
        "ano_type": ano_type,
        "ano_lv": extra.pop("ano_lv", "2"),
        "admdvs": extra.pop("admdvs", env.config.province),
        "rec_type": extra.pop("rec_type"),
        "rec_key": extra.pop("rec_key", None),
        "file_qry_no": file_qry_no,
        "elem_code": element,
        "ano_dscr": f"{where}: {reason}"[:1000],
        "detc_time": time_text(now),
        "updt_time": time_text(now),
    }


def publish_anomalies(env: Env, conn: sqlite3.Connection, anomalies: list[dict[str, Any]], at: str) -> int:
    if not anomalies:
        return 0
    infno = env.contract.download_infno("anomaly")
    return len(outbox.publish(conn, infno, "anomaly", env.contract.record_type("anomaly").key, anomalies, at))


def _counter(conn: sqlite3.Connection, name: str, n: int) -> int:
    """Reserve n numbers of a named counter; returns the first."""
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (f"counter:{name}",)).fetchone()
    first = int(row[0]) if row else 1
    conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"counter:{name}", str(first + n)))
    return first


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _certno(rng: random.Random, admdvs: str) -> tuple[str, str]:
    """A resident identity number (GB 11643, with its check digit) and the birth date in it."""
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 80))
    body = f"{admdvs[:4]}{rng.randrange(1, 99):02d}{birth:%Y%m%d}{rng.randrange(0, 1000):03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check, birth.isoformat()


def _amounts(rng: random.Random, inpatient: bool) -> dict[str, str]:
    """Fees that balance: the funds, cash and the personal account add up to the total."""
    total = Decimal(rng.randrange(5_000, 3_000_000 if inpatient else 80_000)) / 100
    fund = (total * Decimal(rng.randrange(50, 90)) / 100).quantize(Decimal("0.01"))
    acct = ((total - fund) * Decimal(rng.randrange(0, 60)) / 100).quantize(Decimal("0.01"))
    return {
        "medfee_sumamt": str(total),
        "fund_pay_sumamt": str(fund),
        "psn_cash_pay": str(total - fund - acct),
        "acct_pay": str(acct),
    }


def cross_visits(env: Env, conn: sqlite3.Connection, n: int, now: dt.datetime) -> list[dict[str, Any]]:
    """n visits of the province's insured in other provinces, as that platform settled them."""
    first = _counter(conn, "cross_visit", n)
    own = env.config.province
    out = []
    for no in range(first, first + n):
        rng = random.Random(env.derive("cross_visit", no))
        area = rng.choice([p for p in PROVINCES if p[:2] != own[:2]])
        area = area[:2] + f"{rng.randrange(1, 20):02d}00"
        insured = own[:2] + f"{rng.randrange(1, 20):02d}00"
        certno, brdy = _certno(rng, insured)
        med_type = rng.choice(("11", "14", "21", "24"))
        inpatient = med_type in ("21", "24")
        begin = (now - dt.timedelta(days=rng.randrange(1, 60))).date()
        end = begin + dt.timedelta(days=rng.randrange(1, 15) if inpatient else 0)
        code, name = rng.choice(DIAGNOSES)
        out.append(
            {
                "mdtrtarea_admvs": area,
                "setl_id": f"YD{area}{no:012d}",
                "mdtrt_id": f"JZ{area}{no:012d}",
                "psn_no": f"{insured}{rng.randrange(10**11, 10**12)}",
                "psn_cert_type": "01",
                "certno": certno,
                "psn_name": _name(rng),
                "gend": "1" if int(certno[16]) % 2 else "2",
                "brdy": brdy,
                "insutype": rng.choice(("310", "390")),
                "insuplc_admdvs": insured,
                "fixmedins_code": f"H{area}{rng.randrange(0, 100000):05d}",
                "fixmedins_name": f"{area[:2]}市{rng.choice(HOSPITALS)}",
                "med_type": med_type,
                "begndate": begin.isoformat(),
                "enddate": end.isoformat(),
                "dise_codg": code,
                "dise_name": name,
                **_amounts(rng, inpatient),
                "setl_time": f"{end.isoformat()} {rng.randrange(8, 18):02d}:{rng.randrange(60):02d}:00",
                "updt_time": time_text(now),
            }
        )
    return out


def _settlement_for_form(env: Env, conn: sqlite3.Connection, no: int) -> dict[str, Any]:
    """The settlement a form is about: one the platform holds (chosen by the seed), or, with none held,
    a visit of the province's own."""
    held = conn.execute("SELECT count(*) FROM records WHERE record_type = 'setl' AND reversed_at IS NULL").fetchone()[0]
    if held:
        offset = int(env.derive("form_setl", no), 16) % held
        row = conn.execute(
            "SELECT body FROM records WHERE record_type = 'setl' AND reversed_at IS NULL ORDER BY rec_key"
            " LIMIT 1 OFFSET ?",
            (offset,),
        ).fetchone()
        return json.loads(zlib.decompress(row[0]))
    rng = random.Random(env.derive("form_synthetic", no))
    area = env.config.province[:2] + f"{rng.randrange(1, 20):02d}00"
    return {
        "setl_id": f"SIM{area}{no:010d}",
        "mdtrt_id": f"SIMJZ{area}{no:010d}",
        "psn_no": f"{area}{rng.randrange(10**11, 10**12)}",
        "psn_name": _name(rng),
        "insuplc_admdvs": area,
        "mdtrtarea_admvs": area,
        "fixmedins_code": f"H{area}{rng.randrange(0, 100000):05d}",
        "fixmedins_name": f"{area[:2]}市{rng.choice(HOSPITALS)}",
        **_amounts(rng, True),
    }


def fee_check_forms(env: Env, conn: sqlite3.Connection, n: int, now: dt.datetime) -> list[dict[str, Any]]:
    """n fee-check forms about settlements of the province, awaiting the province's answer."""
    first = _counter(conn, "fee_check_form", n)
    types = env.contract.dataset.codesets["chk_type"].values
    out = []
    for no in range(first, first + n):
        rng = random.Random(env.derive("form", no))
        setl = _settlement_for_form(env, conn, no)
        code, zh, en = rng.choice(types)
        total = Decimal(str(setl.get("medfee_sumamt", "100.00")))
        amount = (total * Decimal(rng.randrange(5, 60)) / 100).quantize(Decimal("0.01"))
        out.append(
            {
                "chk_form_no": f"HC{env.config.province[:2]}{no:010d}",
                "chk_type": code,
                "chk_stas": "1",
                "setl_id": setl["setl_id"],
                "mdtrt_id": setl["mdtrt_id"],
                "psn_no": setl["psn_no"],
                "psn_name": setl.get("psn_name"),
                "insuplc_admdvs": setl["insuplc_admdvs"],
                "mdtrtarea_admvs": setl["mdtrtarea_admvs"],
                "fixmedins_code": setl["fixmedins_code"],
                "fixmedins_name": setl["fixmedins_name"],
                "chk_amt": str(amount),
                "chk_dscr": f"疑似{zh}，请核实并反馈 / suspected: {en}; check and answer",
                "issu_time": time_text(now),
                "fdbk_enddate": (now + dt.timedelta(days=15)).date().isoformat(),
                "updt_time": time_text(now),
            }
        )
    return out


def publish_generated(env: Env, conn: sqlite3.Connection, kind: str, n: int, now: dt.datetime) -> list[dict[str, Any]]:
    """The control API's publish: `fee_check_form` or `cross_visit`, n of them; returns their keys."""
    makers = {"fee_check_form": fee_check_forms, "cross_visit": cross_visits}
    if kind not in makers:
        raise ValueError(f"kind: fee_check_form or cross_visit, not {kind!r}")
    infno, keys = env.contract.download_infno(kind), env.contract.record_type(kind).key
    return outbox.publish(conn, infno, kind, keys, makers[kind](env, conn, n, now), time_text(now))
