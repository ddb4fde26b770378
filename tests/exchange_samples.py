"""Valid records, inputs and outputs for every transaction of the interface, made from the dataset, for
the exchange unit tests (each test breaks one thing in a valid message)."""

from __future__ import annotations

import base64
import copy
import hashlib
from typing import Any

from hipgate.exchange.dataset import Dataset, Element, RecordType

SENDER = "44000001"
CAINFO = "5A3F09C1"
# The form of an SM2 signature (DER, ~71 bytes); the signing module makes real ones.
SIGN = base64.b64encode(bytes(range(48, 119))).decode()
# A value of the right form for each open code set (the big dictionaries are the next issue's).
OPEN_CODES = {
    "admdvs": "440100",
    "fixmedins": "H44010600001",
    "icd10": "J18.900",
    "med_list": "XA01ABD075A002010100483",
}
BY_CODE = {"tel": "020-83827812", "elem_code": "psn_name"}


def example_value(el: Element, ds: Dataset, n: int = 0) -> Any:
    """A valid value of element `el` (n varies identifiers, so keys differ)."""
    if el.code in BY_CODE:
        return BY_CODE[el.code]
    if el.codeset:
        cs = ds.codesets[el.codeset]
        return cs.codes[0] if cs.closed else OPEN_CODES[el.codeset]
    if el.pattern:  # identifiers
        return f"{el.code[:4].upper()}{n:06d}"
    if el.kind == "decimal":
        return "12.50"
    if el.kind == "date":
        return "2025-01-02"
    if el.kind == "datetime":
        return "2025-01-02 10:30:00"
    if el.kind == "integer":
        return 1
    return "测试值"[: el.length or 1]


def example_record(rt: RecordType, ds: Dataset, n: int = 0) -> dict[str, Any]:
    rec = {el.code: example_value(el, ds, n) for el in rt.elements}
    if rt.items:
        rec[rt.items.code] = [example_record(rt.items, ds, i) for i in range(max(rt.min_items, 2))]
    return rec


def example_key(rt: RecordType, ds: Dataset, n: int = 0) -> dict[str, Any]:
    rec = example_record(rt, ds, n)
    return {code: rec[code] for code in rt.key}


CHUNK = b"\x1f\x8b hipgate chunk \x00\xff" * 64
SHA = hashlib.sha256(b"whole file").hexdigest()


def example_inputs(ds: Dataset) -> dict[str, Any]:
    """A valid `input` for each transaction (for 9102: its header envelope's input)."""
    rec = {code: example_record(ds.records[code], ds) for code in ds.records}
    key = {code: example_key(ds.records[code], ds) for code in ds.records}
    return {
        "9101": {
            "file_name": "setl_440100_2024_001.jsonl.gz", "admdvs": "440100", "year": 2024, "record_type": "setl",
            "file_size": 3_000_000, "file_sha256": SHA, "chunk_size": 1_048_576, "chunk_count": 3,
            "record_count": 1200,
        },
        "9102": {"upload_id": "u0123456789abcdef", "chunk_index": 2, "chunk_sha256": hashlib.sha256(CHUNK).hexdigest()},
        "9103": {"upload_id": "u0123456789abcdef", "file_size": 3_000_000, "file_sha256": SHA},
        "4101": {"record_type": "setl", "records": [rec["setl"]]},
        "5201": {"limit": 100},
        "5202": {"keys": [key["fee_check_form"]]},
        "5301": {"cursor": "c1:2025-01-02T10:30:00:x", "limit": 500},
        "5302": {"keys": [key["cross_visit"]]},
        "5401": {"limit": 1},
        "5402": {"keys": [key["anomaly"]]},
        "1301": {"catalog_code": "med_type", "limit": 50},
        "1302": {"catalog_code": "med_list", "ver": "20250101_001", "limit": 1000},
        "9201": {"persons": [rec["test_psn"]]},
        "9202": {"record_type": "test_psn", "keys": [key["test_psn"]], "reason": "上线演练结束 / drill over"},
    }  # fmt: skip


def example_outputs(ds: Dataset) -> dict[str, Any]:
    """A valid successful `output` for each transaction."""
    rec = {code: example_record(ds.records[code], ds) for code in ds.records}
    key = {code: example_key(ds.records[code], ds) for code in ds.records}
    page = {"next_cursor": "c1:2025-01-02T10:30:00:x", "more": False}
    return {
        "9101": {"upload_id": "u0123456789abcdef", "status": "uploading", "confirmed_chunks": [0, 1],
                 "file_qry_no": None},
        "9102": {"upload_id": "u0123456789abcdef", "chunk_index": 2, "chunk_sha256": hashlib.sha256(CHUNK).hexdigest(),
                 "received_size": len(CHUNK)},
        "9103": {"upload_id": "u0123456789abcdef", "status": "complete", "file_qry_no": "FQ2025000001",
                 "file_size": 3_000_000, "file_sha256": SHA},
        "4101": {"record_type": "setl", "results": [
            {"idx": 0, "key": key["setl"], "result": "accepted", "err_msg": None}]},
        "5201": {"records": [rec["fee_check_form"]], **page},
        "5202": {"results": [{"idx": 0, "key": key["fee_check_form"], "result": "acknowledged"}]},
        "5301": {"records": [rec["cross_visit"]], **page},
        "5302": {"results": [{"idx": 0, "key": key["cross_visit"], "result": "already_acknowledged"}]},
        "5401": {"records": [rec["anomaly"]], **page},
        "5402": {"results": [{"idx": 0, "key": key["anomaly"], "result": "unknown"}]},
        "1301": {"versions": [{"catalog_code": "med_type", "catalog_name": "医疗类别", "ver": "20250101_001",
                               "ver_name": "2025 年第 1 版", "release_time": "2025-01-01 00:00:00", "entry_count": 11}],
                 **page},
        "1302": {"catalog_code": "med_list", "ver": "20250101_001", "entries": [
            {"code": "XA01ABD075A002010100483", "name": "阿莫西林胶囊", "vali_flag": "1",
             "begntime": "2025-01-01 00:00:00", "endtime": None, "attrs": {"spec": "0.25g", "dosform": None}}],
                 **page},
        "9201": {"results": [{"idx": 0, "key": key["test_psn"], "result": "accepted", "err_msg": None}]},
        "9202": {"record_type": "test_psn", "results": [
            {"idx": 0, "key": key["test_psn"], "result": "reversed", "err_msg": None}]},
    }  # fmt: skip


def request(infno: str, ds: Dataset, seq: int = 1) -> dict[str, Any]:
    """A complete valid (signed-looking) request envelope for transaction infno."""
    return {
        "infno": infno,
        "msgid": f"{SENDER}20250102103000{seq:06d}",
        "infver": "V1.0",
        "sender_code": SENDER,
        "recer_sys_code": "NHSA",
        "inf_time": "2025-01-02 10:30:00",
        "signtype": "SM2",
        "cainfo": CAINFO,
        "sign": SIGN,
        "input": copy.deepcopy(example_inputs(ds)[infno]),
    }


def reply(infno: str, ds: Dataset, msgid: str | None = None) -> dict[str, Any]:
    """A valid successful reply to transaction infno."""
    return {
        "infcode": 0,
        "inf_refmsgid": msgid or f"{SENDER}20250102103000000001",
        "refmsg_time": "20250102103000123",
        "respond_time": "20250102103000456",
        "err_msg": None,
        "output": copy.deepcopy(example_outputs(ds)[infno]),
        "signtype": "SM2",
        "cainfo": "0B1C2D",
        "sign": SIGN,
    }
