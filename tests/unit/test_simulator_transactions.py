"""The simulator's transactions over real HTTPS on 127.0.0.1: every transaction's happy path (replies
conform to the document and carry the platform's valid signature), each class of refusal with its
documented code and status, idempotent replay byte for byte, and downloads with exactly-once
acknowledgements."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from hipgate.exchange.interface import load_interface, validate_reply
from simulator_helpers import (
    REVOKED_CAINFO,
    SENDER2,
    SENDER2_CAINFO,
    Client,
    admin,
    now_text,
    person_record,
    running,
    setl_record,
    signed_client,
    verify_reply,
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from running(tmp_path_factory.mktemp("sim"))


@pytest.fixture
def client(sim: Any) -> Any:
    yield from signed_client(sim)


def conforms(infno: str, reply: Any, keys: Any, msgid: str | None = None) -> dict[str, Any]:
    """The reply conforms to the document and is signed by the platform; its parsed body."""
    violations = validate_reply(load_interface(), infno, reply.body, reply.status, reply.headers, msgid)
    assert violations == [], [v.reason() for v in violations]
    assert verify_reply(reply, keys.platform_public)
    return reply.json


def ok(infno: str, client: Client, sim: Any, data: dict[str, Any]) -> dict[str, Any]:
    msg = client.envelope(infno, data)
    reply = client.post(infno, msg)
    body = conforms(infno, reply, sim[1], msg["msgid"])
    assert reply.status == 200 and body["infcode"] == 0, body
    return body["output"]


def test_upload_records_accepted_duplicate_newer_and_older(sim: Any, client: Client) -> None:
    out = ok("4101", client, sim, {"record_type": "setl", "records": [setl_record(1), setl_record(2)]})
    assert [r["result"] for r in out["results"]] == ["accepted", "accepted"]
    assert out["results"][0]["key"] == {"setl_id": "S0000000001"}
    newer = setl_record(1, updt_time="2024-03-06 08:00:00")
    older = setl_record(2, updt_time="2024-01-01 00:00:00")
    out = ok("4101", client, sim, {"record_type": "setl", "records": [setl_record(1), newer, older]})
    assert [r["result"] for r in out["results"]] == ["duplicate", "accepted", "rejected"]
    assert "older" in out["results"][2]["err_msg"]
    other = setl_record(3, division="310104")  # not this province's settlement
    out = ok("4101", client, sim, {"record_type": "setl", "records": [other]})
    assert out["results"][0]["result"] == "rejected"
    summary = admin(sim[0], "GET", "/ledger/summary")
    assert summary["totals"]["setl"]["records"] == 2
    assert summary["totals"]["setl"]["versions_replaced"] == 1
    assert summary["totals"]["setl"]["duplicates_received"] == 1


def test_idempotent_replay_returns_the_original_bytes(sim: Any, client: Client) -> None:
    msg = client.envelope("4101", {"record_type": "setl", "records": [setl_record(10)]})
    first = client.post("4101", msg)
    assert first.status == 200 and first.json["output"]["results"][0]["result"] == "accepted"
    before = admin(sim[0], "GET", "/ledger/summary")
    again = client.post("4101", client.envelope("4101", msg["input"], msgid=msg["msgid"], inf_time=msg["inf_time"]))
    assert again.status == 200 and again.body == first.body  # re-signed (a new ECDSA sign), same content
    changed = copy.deepcopy(msg["input"])
    changed["records"][0]["psn_name"] = "李四"
    conflict = client.post("4101", client.envelope("4101", changed, msgid=msg["msgid"]))
    body = conforms("4101", conflict, sim[1], msg["msgid"])
    assert (conflict.status, body["infcode"]) == (409, -1201)
    assert admin(sim[0], "GET", "/ledger/summary") == before  # neither the replay nor the conflict stored anything
    assert [r["outcome"] for r in admin(sim[0], "GET", "/requests") if r["msgid"] == msg["msgid"]] == [
        "processed", "replayed", "refused",
    ]  # fmt: skip


def refused(client: Client, sim: Any, infno: str, message: Any, *, raw: bytes | None = None) -> tuple[int, int, str]:
    body = raw if raw is not None else json.dumps(message, ensure_ascii=False).encode()
    reply = client.raw(f"/fsi/api/{infno}", body, {"Content-Type": "application/json"})
    parsed = conforms(infno, reply, sim[1])
    assert parsed["output"] is None and parsed["err_msg"]
    return reply.status, parsed["infcode"], parsed["err_msg"]


def test_validation_errors_get_the_documented_codes(sim: Any, client: Client) -> None:
    good = client.envelope("5201", {"limit": 10})
    status, code, why = refused(client, sim, "5201", None, raw=b"{not json")
    assert (status, code) == (400, -1001)
    dup = json.dumps(good)[:-1] + ', "infno": "5201"}'
    assert refused(client, sim, "5201", None, raw=dup.encode())[:2] == (400, -1001)
    assert refused(client, sim, "5201", good | {"infno": "5401"})[:2] == (400, -1002)
    assert refused(client, sim, "5201", client.envelope("5201", {"limit": 10}, infver="V2.0"))[:2] == (400, -1003)
    status, code, why = refused(client, sim, "5201", client.envelope("5201", {"limit": 0}))
    assert (status, code) == (400, -1001) and "input.limit" in why
    status, code, why = refused(client, sim, "5201", client.envelope("5201", {"limit": 5, "page": 2}))
    assert (status, code) == (400, -1001) and "input.page" in why
    record = setl_record(20)
    del record["psn_name"]
    status, code, why = refused(
        client, sim, "4101", client.envelope("4101", {"record_type": "setl", "records": [record]})
    )
    assert (status, code) == (400, -1001) and "psn_name" in why
    reply = client.raw("/fsi/api/7777", b"{}", {"Content-Type": "application/json"})
    assert (reply.status, reply.json["infcode"]) == (400, -1002)


def test_sender_certificate_signature_and_clock(sim: Any, client: Client) -> None:
    simulator, keys, cafile = sim
    msg = client.envelope("5201", {"limit": 10})
    forged = dict(msg, sign=client.envelope("5201", {"limit": 11})["sign"])
    assert refused(client, sim, "5201", forged)[:2] == (401, -1101)
    tampered = dict(msg, input={"limit": 12})
    assert refused(client, sim, "5201", tampered)[:2] == (401, -1101)
    unknown_cert = client.envelope("5201", {"limit": 10}, cainfo="ABCDEF")
    assert refused(client, sim, "5201", unknown_cert)[:2] == (401, -1102)
    revoked = client.envelope("5201", {"limit": 10}, cainfo=REVOKED_CAINFO)
    assert refused(client, sim, "5201", revoked)[:2] == (401, -1102)
    late = client.envelope("5201", {"limit": 10}, inf_time=now_text(-400))
    status, code, why = refused(client, sim, "5201", late)
    assert (status, code) == (401, -1103) and "300" in why
    other = Client(simulator.platform.port, cafile, keys.sm2, sender_code="44000009")
    assert refused(other, sim, "5201", other.envelope("5201", {"limit": 10}))[:2] == (403, -1004)
    second = Client(simulator.platform.port, cafile, keys.ecdsa, "ECDSA", SENDER2_CAINFO, SENDER2)
    assert refused(second, sim, "5201", second.envelope("5201", {"limit": 10}))[:2] == (403, -1004)
    out = ok("4101", second, sim, {"record_type": "setl", "records": [setl_record(30)]})
    assert out["results"][0]["result"] == "accepted"
    wrong_type = dict(client.envelope("5201", {"limit": 10}), signtype="ECDSA")  # the certificate is SM2
    status, code, why = refused(client, sim, "5201", wrong_type)
    assert (status, code) == (401, -1101) and "SM2" in why
    for c in (other, second):
        c.close()


def test_test_persons_and_reversal(sim: Any, client: Client) -> None:
    out = ok("9201", client, sim, {"persons": [person_record(1), person_record(2)]})
    assert [r["result"] for r in out["results"]] == ["accepted", "accepted"]
    out = ok("9201", client, sim, {"persons": [person_record(1)]})
    assert out["results"][0]["result"] == "duplicate"
    keys = [{"psn_no": "TEST000001"}, {"psn_no": "TEST000099"}]
    out = ok("9202", client, sim, {"record_type": "test_psn", "keys": keys, "reason": "演练结束 / drill over"})
    assert [r["result"] for r in out["results"]] == ["reversed", "unknown"]
    out = ok("9202", client, sim, {"record_type": "test_psn", "keys": keys[:1], "reason": "again"})
    assert out["results"][0]["result"] == "already_reversed"
    totals = admin(sim[0], "GET", "/ledger/summary")["totals"]["test_psn"]
    assert (totals["records"], totals["reversed"]) == (1, 1)
    out = ok("9201", client, sim, {"persons": [person_record(1)]})  # registered again after the drill
    assert out["results"][0]["result"] == "accepted"


def page_through(client: Client, sim: Any, infno: str, limit: int, cursor: str | None = None) -> tuple[list, str]:
    records: list[dict[str, Any]] = []
    while True:
        out = ok(infno, client, sim, {"limit": limit} | ({"cursor": cursor} if cursor else {}))
        records += out["records"]
        cursor = out["next_cursor"]
        if not out["more"]:
            return records, cursor


def test_downloads_and_acknowledgements_exactly_once(sim: Any, client: Client) -> None:
    simulator = sim[0]
    published = admin(simulator, "POST", "/publish", {"kind": "fee_check_form", "count": 5})["published"]
    assert len(published) == 5
    forms, cursor = page_through(client, sim, "5201", 2)
    assert [f["chk_form_no"] for f in forms] == [k["chk_form_no"] for k in published]
    assert ok("5201", client, sim, {"limit": 10, "cursor": cursor})["records"] == []
    first_three = [{"chk_form_no": f["chk_form_no"]} for f in forms[:3]]
    out = ok("5202", client, sim, {"keys": first_three})
    assert [r["result"] for r in out["results"]] == ["acknowledged"] * 3
    again, _ = page_through(client, sim, "5201", 10)  # from the beginning: the unacknowledged two only
    assert [f["chk_form_no"] for f in again] == [f["chk_form_no"] for f in forms[3:]]
    out = ok("5202", client, sim, {"keys": [*first_three[:1], {"chk_form_no": "HC00NOSUCH"}]})
    assert [r["result"] for r in out["results"]] == ["already_acknowledged", "unknown"]
    # The duplicate_ack fault re-serves one acknowledged form, once.
    fault = admin(simulator, "POST", "/faults", {"kind": "duplicate_ack", "infno": "5201", "items": 1})
    page = ok("5201", client, sim, {"limit": 10, "cursor": cursor})
    assert [f["chk_form_no"] for f in page["records"]] == [forms[2]["chk_form_no"]]
    assert ok("5202", client, sim, {"keys": first_three[2:]})["results"][0]["result"] == "already_acknowledged"
    assert ok("5201", client, sim, {"limit": 10, "cursor": cursor})["records"] == []
    fired = next(f for f in admin(simulator, "GET", "/faults") if f["id"] == fault["id"])
    assert len(fired["fired"]) == 1 and not fired["active"]
    bad = client.post("5201", client.envelope("5201", {"limit": 10, "cursor": "5201~1~0000000000000000"}))
    assert (bad.status, bad.json["infcode"]) == (200, -1401)
    foreign = client.post("5401", client.envelope("5401", {"limit": 10, "cursor": cursor}))
    assert foreign.json["infcode"] == -1401


def test_cross_visits_published_and_acknowledged(sim: Any, client: Client) -> None:
    published = admin(sim[0], "POST", "/publish", {"kind": "cross_visit", "count": 3})["published"]
    visits, _ = page_through(client, sim, "5301", 500)
    assert [{"mdtrtarea_admvs": v["mdtrtarea_admvs"], "setl_id": v["setl_id"]} for v in visits] == published
    for v in visits:
        assert v["insuplc_admdvs"].startswith("44") and not v["mdtrtarea_admvs"].startswith("44")
        paid = sum(float(v[k]) for k in ("fund_pay_sumamt", "psn_cash_pay", "acct_pay"))
        assert round(paid, 2) == float(v["medfee_sumamt"])
    out = ok("5302", client, sim, {"keys": published})
    assert {r["result"] for r in out["results"]} == {"acknowledged"}
    assert page_through(client, sim, "5301", 500)[0] == []


def test_anomalies_for_a_share_of_records_reference_the_key(sim: Any, client: Client) -> None:
    for batch in range(4):
        records = [setl_record(1000 + batch * 500 + i) for i in range(500)]
        ok("4101", client, sim, {"record_type": "setl", "records": records})
    anomalies, _ = page_through(client, sim, "5401", 500)
    assert 15 <= len(anomalies) <= 70  # 2 % of 2000, deterministic from the seed
    for a in anomalies:
        key = json.loads(a["rec_key"])
        assert a["rec_type"] == "setl" and set(key) == {"setl_id"}
    ack = ok("5402", client, sim, {"keys": [{"ano_id": a["ano_id"]} for a in anomalies[:500]]})
    assert {r["result"] for r in ack["results"]} == {"acknowledged"}
    assert page_through(client, sim, "5401", 500)[0] == []
    # Sending the same records again gives no new anomaly (duplicates), so nothing arrives twice.
    ok("4101", client, sim, {"record_type": "setl", "records": [setl_record(1000 + i) for i in range(500)]})
    assert page_through(client, sim, "5401", 500)[0] == []


def test_catalogue_versions_and_entries(sim: Any, client: Client) -> None:
    versions: list[dict[str, Any]] = []
    cursor = None
    while True:
        out = ok("1301", client, sim, {"limit": 4} | ({"cursor": cursor} if cursor else {}))
        versions += out["versions"]
        cursor = out["next_cursor"]
        if not out["more"]:
            break
    codes = {(v["catalog_code"], v["ver"]) for v in versions}
    assert {("med_list", "2024.1"), ("med_list", "2025.1"), ("gend", "2024.1"), ("admdvs", "2024.1")} <= codes
    only = ok("1301", client, sim, {"limit": 10, "catalog_code": "med_list"})["versions"]
    assert [v["ver"] for v in only] == ["2024.1", "2025.1"]
    filtered_cursor = ok("1301", client, sim, {"limit": 1, "catalog_code": "med_list"})["next_cursor"]
    assert client.call("1301", {"limit": 1, "cursor": filtered_cursor}).json["infcode"] == -1401
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        out = ok("1302", client, sim, {"catalog_code": "med_list", "ver": "2025.1", "limit": 3} |
                 ({"cursor": cursor} if cursor else {}))  # fmt: skip
        entries += out["entries"]
        cursor = out["next_cursor"]
        if not out["more"]:
            break
    assert len(entries) == next(v["entry_count"] for v in only if v["ver"] == "2025.1")
    assert any(e["vali_flag"] == "0" for e in entries)
    missing = client.call("1302", {"catalog_code": "med_list", "ver": "1999.9", "limit": 3})
    assert (missing.status, missing.json["infcode"]) == (200, -1501)
    new = admin(sim[0], "POST", "/publish", {"kind": "catalog", "catalog_code": "gend"})["version"]
    later = ok("1301", client, sim, {"limit": 10, "catalog_code": "gend"})["versions"]
    assert [v["ver"] for v in later] == ["2024.1", new["ver"]]


def test_only_post_and_known_paths(sim: Any, client: Client, tmp_path: Path) -> None:
    conn = client.connection()
    conn.request("GET", "/fsi/api/5201")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert (resp.status, body["infcode"]) == (400, -1001)
