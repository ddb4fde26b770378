"""The interface document (interfaces/national-platform.openapi.yaml): valid OpenAPI, every transaction
with its infno, every error documented, record schemas equal to the dataset's element by element, and
hipgate.exchange.interface validating requests and replies against it, naming the field."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_spec

import exchange_samples as samples
from hipgate.errors import UserError
from hipgate.exchange import interface as ifc
from hipgate.exchange.dataset import Dataset, key_json_schema, load_dataset, record_json_schema

# The transactions issue 17 asks for: infno -> (path, x-hipgate-action, record types).
TRANSACTIONS = {
    "9101": ("/fsi/api/9101", "history_start", ("setl", "cross_visit")),
    "9102": ("/fsi/api/9102/{upload_id}/{chunk_index}", "history_chunk", ("setl", "cross_visit")),
    "9103": ("/fsi/api/9103", "history_complete", ("setl", "cross_visit")),
    "4101": ("/fsi/api/4101", "upload", ("setl", "cross_visit")),
    "5201": ("/fsi/api/5201", "download", ("fee_check_form",)),
    "5202": ("/fsi/api/5202", "ack", ("fee_check_form",)),
    "5301": ("/fsi/api/5301", "download", ("cross_visit",)),
    "5302": ("/fsi/api/5302", "ack", ("cross_visit",)),
    "5401": ("/fsi/api/5401", "download", ("anomaly",)),
    "5402": ("/fsi/api/5402", "ack", ("anomaly",)),
    "1301": ("/fsi/api/1301", "catalog_list", ()),
    "1302": ("/fsi/api/1302", "catalog_download", ()),
    "9201": ("/fsi/api/9201", "register_test_persons", ("test_psn",)),
    "9202": ("/fsi/api/9202", "reversal", ("setl", "cross_visit", "test_psn")),
}
# Every error the brief names, by meaning: validation, signature, duplicate msgid, checksum, unknown
# upload, rate limiting, unavailable.
NAMED_ERRORS = {-1001: 400, -1101: 401, -1201: 409, -1301: 200, -1302: 200, -1303: 200, -9001: 429, -9002: 503}
STATUSES = ("200", "400", "401", "403", "409", "429", "500", "503")


@pytest.fixture(scope="module")
def iface() -> ifc.Interface:
    return ifc.load_interface()


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def doc(iface: ifc.Interface) -> dict[str, Any]:
    return iface.document


def _send(iface: ifc.Interface, infno: str, env: dict[str, Any]) -> list[ifc.Violation]:
    return ifc.validate_request(iface, infno, env, samples.CHUNK if infno == "9102" else None)


def _paths(violations: list[ifc.Violation]) -> dict[str, str]:
    return {v.path: v.rule for v in violations}


# ---------------------------------------------------------------- the document itself


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate_spec(doc)


def test_every_transaction_exists_with_its_infno(iface: ifc.Interface, doc: dict[str, Any]) -> None:
    assert set(iface.operations) == set(TRANSACTIONS)
    ids = set()
    for infno, (path, action, record_types) in TRANSACTIONS.items():
        op = iface.operations[infno]
        raw = doc["paths"][path]["post"]
        assert (op.path, raw["x-infno"], op.action, op.record_types) == (path, infno, action, record_types)
        ids.add(op.operation_id)
        assert sorted(raw["responses"]) == sorted(STATUSES), infno
        if infno != "9102":
            schema = doc["components"]["schemas"][f"Request_{infno}"]
            assert schema["properties"]["infno"]["const"] == infno
            assert schema["additionalProperties"] is False
    assert len(ids) == len(TRANSACTIONS)


def test_every_error_is_documented_with_status_and_meaning(iface: ifc.Interface, doc: dict[str, Any]) -> None:
    errors = {e["infcode"]: e for e in iface.errors}
    for code, status in NAMED_ERRORS.items():
        assert errors[code]["http_status"] == status, code
    for e in iface.errors:
        assert e["name_zh"] and e["name_en"] and isinstance(e["retry"], bool), e
    schemas = doc["components"]["schemas"]
    assert sorted(schemas["Infcode"]["enum"]) == sorted(errors)
    for status in STATUSES[1:]:
        assert schemas[f"Error_{status}"]["properties"]["infcode"]["enum"] == [
            c for c, e in errors.items() if e["http_status"] == int(status)
        ]
    for infno in TRANSACTIONS:  # a 200 reply carries success or a business error, never a transport one
        codes = schemas[f"Reply_{infno}"]["properties"]["infcode"]["enum"]
        assert 0 in codes and all(errors[c]["http_status"] == 200 for c in codes), infno
    for status in ("429", "503"):
        assert "Retry-After" in doc["components"]["responses"][f"Error{status}"]["headers"]


def test_the_description_defines_the_canonical_bytes(doc: dict[str, Any]) -> None:
    text = doc["info"]["description"]
    assert "sign" in text and "sorted" in text and 'separators=(",", ":"), ensure_ascii=False' in text
    assert "original reply" in text  # idempotent replay


# ---------------------------------------------------------------- dataset <=> document


def _compare(where: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Element by element: what differs between the dataset's schema and the document's."""
    diffs = []
    for key in sorted(set(ours) | set(theirs)):
        if key != "properties" and ours.get(key) != theirs.get(key):
            diffs.append(f"{where}.{key}: dataset {ours.get(key)!r}, document {theirs.get(key)!r}")
    mine, doc = ours.get("properties", {}), theirs.get("properties", {})
    for code in sorted(set(mine) | set(doc)):
        if code not in doc:
            diffs.append(f"{where}.{code}: in the dataset, not in the document")
        elif code not in mine:
            diffs.append(f"{where}.{code}: in the document, not in the dataset")
        elif mine[code] != doc[code]:
            diffs.append(f"{where}.{code}: dataset {mine[code]!r}, document {doc[code]!r}")
    return diffs


def test_record_schemas_are_exactly_the_datasets_record_types(ds: Dataset, doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    diffs: list[str] = []
    for rt in ds.all_record_types():
        diffs += _compare(f"Record_{rt.code}", record_json_schema(rt, ds), schemas.get(f"Record_{rt.code}", {}))
        if not rt.parent:
            diffs += _compare(f"Key_{rt.code}", key_json_schema(rt, ds), schemas.get(f"Key_{rt.code}", {}))
    assert not diffs, "\n".join(diffs)
    documented = {name.removeprefix("Record_") for name in schemas if name.startswith("Record_")}
    assert documented == {rt.code for rt in ds.all_record_types()}


def test_every_element_of_the_brief_is_in_the_settlement(ds: Dataset) -> None:
    setl = ds.records["setl"]
    wanted = [
        "psn_no",
        "psn_cert_type",
        "certno",
        "psn_name",
        "gend",
        "brdy",
        "insutype",
        "insuplc_admdvs",
        "mdtrtarea_admvs",
        "fixmedins_code",
        "fixmedins_name",
        "mdtrt_id",
        "setl_id",
        "med_type",
        "begndate",
        "enddate",
        "dise_codg",
        "dise_name",
        "medfee_sumamt",
        "fund_pay_sumamt",
        "psn_cash_pay",
        "acct_pay",
        "setl_time",
        "updt_time",
    ]
    assert set(wanted) <= set(setl.codes)
    assert setl.items is not None
    assert {"feedetl_sn", "med_list_codg", "medins_list_codg", "med_chrgitm_type", "det_item_fee_sumamt", "cnt",
            "pric", "fee_ocur_time"} <= set(setl.items.codes)  # fmt: skip


def test_the_download_and_upload_transactions_carry_the_datasets_records(ds: Dataset, doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    for dl, rt in (("5201", "fee_check_form"), ("5301", "cross_visit"), ("5401", "anomaly")):
        assert schemas[f"Output_{dl}"]["properties"]["records"]["items"] == {
            "$ref": f"#/components/schemas/Record_{rt}"
        }
        ack = str(int(dl) + 1)
        assert schemas[f"Input_{ack}"]["properties"]["keys"]["items"] == {"$ref": f"#/components/schemas/Key_{rt}"}
    assert schemas["Input_9201"]["properties"]["persons"]["items"] == {"$ref": "#/components/schemas/Record_test_psn"}
    typed = {b["if"]["properties"]["record_type"]["const"]: b["then"] for b in schemas["Input_4101"]["allOf"]}
    assert set(typed) == set(schemas["Input_4101"]["properties"]["record_type"]["enum"]) == {"setl", "cross_visit"}


# ---------------------------------------------------------------- requests and replies


@pytest.mark.parametrize("infno", sorted(TRANSACTIONS))
def test_a_valid_request_and_reply_pass_for_each_transaction(iface: ifc.Interface, ds: Dataset, infno: str) -> None:
    env = samples.request(infno, ds)
    assert _send(iface, infno, env) == []
    assert (
        ifc.validate_reply(
            iface, infno, samples.reply(infno, ds), request_msgid=samples.reply(infno, ds)["inf_refmsgid"]
        )
        == []
    )


@pytest.mark.parametrize("infno", sorted(TRANSACTIONS))
def test_a_business_error_reply_has_no_output(iface: ifc.Interface, ds: Dataset, infno: str) -> None:
    bad = samples.reply(infno, ds) | {"infcode": -1, "err_msg": "记录不存在 / no such record", "output": None}
    assert ifc.validate_reply(iface, infno, bad) == []
    assert _paths(ifc.validate_reply(iface, infno, bad | {"output": samples.reply(infno, ds)["output"]})) == {
        "output": "type"
    }
    assert _paths(ifc.validate_reply(iface, infno, bad | {"infcode": -9001})) == {"infcode": "enum"}


def _bad(env: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    env = copy.deepcopy(env)
    node: Any = env
    for part in path[:-1]:
        node = node[part]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return env


@pytest.mark.parametrize(
    ("infno", "path", "value", "named", "rule"),
    [
        ("4101", ["input", "records", 0, "psn_name"], KeyError, "input.records[0].psn_name", "required"),
        ("4101", ["input", "records", 0, "certno"], "4" * 51, "input.records[0].certno", "max_length"),
        (
            "4101",
            ["input", "records", 0, "setl_item", 1, "cnt"],
            "1.23456",
            "input.records[0].setl_item[1].cnt",
            "pattern",
        ),
        ("4101", ["input", "records", 0, "gend"], "3", "input.records[0].gend", "enum"),
        ("4101", ["input", "records", 0, "medfee_sumamt"], 12.5, "input.records[0].medfee_sumamt", "type"),
        ("4101", ["input", "records", 0, "brdy"], "1990-02-30", "input.records[0].brdy", "format"),
        ("4101", ["input", "records", 0, "hg_status"], "sent", "input.records[0].hg_status", "unknown"),
        ("4101", ["input", "records"], [], "input.records", "count"),
        ("4101", ["msgid"], "4400000120250102103000", "msgid", "min_length"),
        ("4101", ["msgid"], "44000001202501021030000000x1", "msgid", "pattern"),
        ("4101", ["msgid"], "44000002202501021030000000001"[:28], "msgid", "msgid_sender"),
        ("4101", ["infno"], "4102", "infno", "const"),
        ("4101", ["signtype"], "RSA", "signtype", "enum"),
        ("4101", ["sign"], "not base64!", "sign", "pattern"),
        ("4101", ["inf_time"], "2025-13-02 10:30:00", "inf_time", "pattern"),
        ("4101", ["inf_time"], "2025-02-30 10:30:00", "inf_time", "time"),
        ("4101", ["extra"], "x", "extra", "unknown"),
        ("4101", ["input", "record_type"], "anomaly", "input.record_type", "enum"),
        ("9101", ["input", "chunk_size"], 1024, "input.chunk_size", "range"),
        ("9101", ["input", "file_name"], "setl_440100_2024.csv", "input.file_name", "pattern"),
        ("9103", ["input", "file_sha256"], "ABC", "input.file_sha256", "pattern"),
        ("5201", ["input", "limit"], 501, "input.limit", "range"),
        ("5202", ["input", "keys", 0, "chk_form_no"], KeyError, "input.keys[0].chk_form_no", "required"),
        ("5302", ["input", "keys", 0, "psn_no"], "P1", "input.keys[0].psn_no", "unknown"),
        ("9202", ["input", "keys", 0], {"setl_id": "S1"}, "input.keys[0].psn_no", "required"),
        ("9201", ["input", "persons", 0, "tel"], "call me", "input.persons[0].tel", "pattern"),
        ("9102", ["msgid"], "bad", "X-HSA-Msgid", "min_length"),
        ("9102", ["sign"], KeyError, "X-HSA-Sign", "required"),
        ("9102", ["input", "chunk_sha256"], "0" * 64, "X-HSA-Chunk-SHA256", "chunk_sha256"),
        ("9102", ["input", "chunk_index"], "x", "chunk_index", "type"),
    ],
)
def test_each_kind_of_bad_request_is_refused_naming_the_field(
    iface: ifc.Interface, ds: Dataset, infno: str, path: list[str | int], value: Any, named: str, rule: str
) -> None:
    found = _send(iface, infno, _bad(samples.request(infno, ds), path, value))
    assert (named, rule) in [(v.path, v.rule) for v in found], [v.reason() for v in found]
    for v in found:
        assert v.zh and v.en and v.reason().startswith(v.path)


def test_personal_data_never_appears_in_a_reason(iface: ifc.Interface, ds: Dataset) -> None:
    secret = "张三丰身份证号码4401"
    env = samples.request("9201", ds)
    env["input"]["persons"][0] |= {"tel": secret + "!", "certno": secret * 5, "psn_name": secret * 5}
    found = _send(iface, "9201", env)
    assert {"input.persons[0].tel", "input.persons[0].certno", "input.persons[0].psn_name"} <= set(_paths(found))
    assert secret not in ifc.reasons(found)


def test_a_body_with_a_duplicated_key_or_not_json_is_refused(iface: ifc.Interface, ds: Dataset) -> None:
    body = json.dumps(samples.request("5201", ds)).encode()
    twice = body[:-1] + b',"infno":"5201"}'
    for raw in (twice, b"{not json", "{}".encode("utf-16")):
        found = ifc.validate_http_request(iface, "/fsi/api/5201", {"Content-Type": "application/json"}, raw, "5201")
        assert [(v.path, v.rule) for v in found] == [("(body)", "json")]


def test_an_unknown_path_or_status_is_named(iface: ifc.Interface, ds: Dataset) -> None:
    found = ifc.validate_http_request(iface, "/fsi/api/4199", {"Content-Type": "application/json"}, b"{}", "4199")
    assert _paths(found) == {"(path)": "infno"}
    assert _paths(ifc.validate_reply(iface, "4101", samples.reply("4101", ds), status=418)) == {"(status)": "status"}


def test_error_replies_by_status(iface: ifc.Interface, ds: Dataset) -> None:
    err = {"infcode": -9001, "inf_refmsgid": None, "refmsg_time": "20250102103000123",
           "respond_time": "20250102103000124", "err_msg": "请稍后 / slow down", "output": None}  # fmt: skip
    assert ifc.validate_reply(iface, "4101", err, status=429, headers={"Retry-After": "5"}) == []
    assert _paths(ifc.validate_reply(iface, "4101", err, status=429)) == {"Retry-After": "required"}
    assert ifc.validate_reply(iface, "4101", err | {"infcode": -9002}, status=503) == []
    signed = err | {"infcode": -1101, "inf_refmsgid": "4400000120250102103000000001", "sign": samples.SIGN}
    assert _paths(ifc.validate_reply(iface, "4101", signed, status=401)) == {"(body)": "required"}
    ok = signed | {"signtype": "SM2", "cainfo": "0A"}
    assert ifc.validate_reply(iface, "4101", ok, status=401) == []
    assert _paths(ifc.validate_reply(iface, "4101", ok, status=409)) == {"infcode": "enum"}
    assert _paths(ifc.validate_reply(iface, "4101", samples.reply("4101", ds), request_msgid="x" * 28)) == {
        "inf_refmsgid": "refmsgid"
    }


def test_the_9102_header_envelope_round_trips(iface: ifc.Interface, ds: Dataset) -> None:
    env = samples.request("9102", ds)
    path, headers = ifc.chunk_request(iface, env)
    assert path == "/fsi/api/9102/u0123456789abcdef/2"
    assert headers["X-HSA-Chunk-SHA256"] == hashlib.sha256(samples.CHUNK).hexdigest()
    back = ifc.header_envelope(iface, {k.lower(): v for k, v in headers.items()}, "u0123456789abcdef", 2)
    assert back == env
    assert ifc.canonical_bytes(back) == ifc.canonical_bytes(env)


def test_operation_lookup(iface: ifc.Interface) -> None:
    assert ifc.operation_for(iface, "download", "anomaly").infno == "5401"
    assert ifc.operation_for(iface, "upload", "setl").infno == "4101"
    with pytest.raises(UserError, match="4199"):
        ifc.operation(iface, "4199")
    with pytest.raises(UserError, match="x-hipgate-action"):
        ifc.operation_for(iface, "download", "setl")


# ---------------------------------------------------------------- envelopes, msgids, canonical bytes


def test_a_built_envelope_passes_once_signed(iface: ifc.Interface, ds: Dataset) -> None:
    env = ifc.build_envelope("5401", {"limit": 10}, sender_code=samples.SENDER, cainfo=samples.CAINFO)
    assert "sign" not in env and env["msgid"].startswith(samples.SENDER)
    assert ifc.validate_request(iface, "5401", env | {"sign": samples.SIGN}) == []
    assert _paths(ifc.validate_request(iface, "5401", env)) == {"sign": "required"}


def test_msgids_are_well_formed_and_strictly_increasing() -> None:
    t0 = dt.datetime(2031, 5, 6, 7, 8, 9)
    ids = [ifc.new_msgid("44000099", t0) for _ in range(5)]
    ids += [ifc.new_msgid("44000099", t0 - dt.timedelta(hours=1))]  # the clock stepped back
    ids += [ifc.new_msgid("44000099", t0 + dt.timedelta(seconds=1))]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[0] == "4400009920310506070809000000" and ids[5] == "4400009920310506070809000005"
    assert ids[6] == "4400009920310506070810000000"
    for msgid in ids:
        assert re.fullmatch(r"44000099[0-9]{20}", msgid)
    with pytest.raises(ValueError):
        ifc.new_msgid("440100", t0)  # a city, and no node


def test_a_million_msgids_in_one_second_run_ahead_without_repeating() -> None:
    t0 = dt.datetime(2032, 1, 1, 0, 0, 0)
    ifc._msgid_state["44000098"] = (t0, 999_998)
    assert [ifc.new_msgid("44000098", t0) for _ in range(2)] == [
        "4400009820320101000000999999",
        "4400009820320101000001000000",
    ]


def test_canonical_bytes_are_sorted_compact_utf8_without_sign() -> None:
    env = {"sign": "x", "input": {"b": [3, {"z": "中文", "a": None}], "a": True}, "infno": "4101", "psn": "é\n\u2028"}
    assert ifc.canonical_bytes(env) == (
        '{"infno":"4101","input":{"a":true,"b":[3,{"a":null,"z":"中文"}]},"psn":"é\\n\u2028"}'.encode()
    )
    with pytest.raises(TypeError):
        ifc.canonical_bytes({"amount": 1.5})


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.text(max_size=8), _json, max_size=6), st.randoms())
def test_canonical_bytes_do_not_depend_on_key_order_or_sign(env: dict[str, Any], rnd: Any) -> None:
    def shuffled(value: Any) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        if isinstance(value, list):
            return [shuffled(v) for v in value]
        return value

    once = ifc.canonical_bytes(env)
    assert ifc.canonical_bytes(shuffled(env) | {"sign": "anything"}) == once
    assert json.loads(once.decode("utf-8")) == {k: v for k, v in env.items() if k != "sign"}
    assert once == _documented_canonical_form({k: v for k, v in env.items() if k != "sign"}).encode("utf-8")


_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _documented_canonical_form(value: Any) -> str:
    """The rules as the document's description writes them, implemented apart from canonical_bytes."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(_SHORT.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in value) + '"'
    if isinstance(value, list):
        return "[" + ",".join(map(_documented_canonical_form, value)) + "]"
    items = sorted(value.items())
    return "{" + ",".join(f"{_documented_canonical_form(k)}:{_documented_canonical_form(v)}" for k, v in items) + "}"


# ---------------------------------------------------------------- loading a province's document


def test_a_province_document_replaces_ours(tmp_path: Path, doc: dict[str, Any]) -> None:
    theirs = copy.deepcopy(doc)
    for item in theirs["paths"].values():  # a real document has no x-infno: the path's number is used
        item["post"].pop("x-infno")
    theirs["info"]["version"] = "2.3.0"
    path = tmp_path / "real.json"
    path.write_text(json.dumps(theirs, ensure_ascii=False))
    real = ifc.load_interface(path)
    assert real.version == "2.3.0" and set(real.operations) == set(TRANSACTIONS)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ({"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}, "Swagger 2.0"),
        ({"openapi": "3.1.0", "info": {"title": "t"}, "paths": {}}, "not a valid OpenAPI document"),
        ({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}, "no transactions"),
        (
            {"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
             "paths": {"/x": {"post": {"responses": {"200": {"description": "ok"}}}}}},
            "no x-infno",
        ),
    ],
)  # fmt: skip
def test_a_bad_document_is_refused_with_its_file_named(tmp_path: Path, content: dict[str, Any], says: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(UserError) as exc:
        ifc.load_interface(path)
    assert str(path) in str(exc.value) and says in str(exc.value)


def test_a_missing_document_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        ifc.load_interface(tmp_path / "none.yaml")
