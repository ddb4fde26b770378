"""The fast paths of issue 17 item 4 say exactly what the plain ones said: the compiled record checks find
what the interpreted ones (tests/exchange_legacy.py) found, with the same zh/en reasons, on every bad kind
of the seed generator and on arbitrary values; a batch checked against the document as one request gives
each record the reasons it gets alone; the fingerprint's fast normal form makes the definition's bytes."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exchange_legacy as legacy
import exchange_samples as samples
from hipgate.exchange import incremental
from hipgate.exchange import interface as ifc
from hipgate.exchange.dataset import (
    DATE_RE,
    DATETIME_RE,
    Dataset,
    load_dataset,
    record_check,
    validate_record,
)
from hipgate.exchange.fingerprint import canonical, normal_form, record_bytes
from hipgate.exchange.seed import bad
from hipgate.exchange.seed.bad import Manifest
from hipgate.exchange.seed.dictionaries import Dictionaries, load_dictionaries
from hipgate.exchange.seed.generate import Partition, generate
from hipgate.exchange.violations import Violation

TYPES = ("setl", "cross_visit", "test_psn")
UPLOADS = ("setl", "cross_visit")  # what 4101 carries


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def dicts() -> Dictionaries:
    return load_dictionaries()


@pytest.fixture(scope="module")
def ex(ds: Dataset) -> Any:
    """What record_violations and batch_violations read of an Exchange."""
    return SimpleNamespace(ds=ds, iface=ifc.load_interface(), sender_code=samples.SENDER)


def _of_kind(ds: Dataset, rt: str, kind: str, n: int = 120) -> tuple[list[dict[str, Any]], Manifest]:
    manifest = Manifest()
    records = list(generate(Partition(rt, "440300", 2024), n, seed=5, bad_share=0.25, kinds=(kind,), manifest=manifest,
                            ds=ds))  # fmt: skip
    return records, manifest


# ---------------------------------------------------------------- the compiled dataset checks


@pytest.mark.parametrize("rt", TYPES)
def test_every_bad_kind_is_still_caught_with_the_same_reason(rt: str, ds: Dataset, dicts: Dictionaries) -> None:
    check = bad.Check(ds.record_type(rt), ds, dicts)
    kinds = bad.kinds_for(ds.record_type(rt))
    assert {k.id for k in bad.kinds_for(ds.records["setl"])} == {k.id for k in bad.KINDS}  # all 16 somewhere
    for kind in kinds:
        records, manifest = _of_kind(ds, rt, kind.id)
        labelled = {e["index"]: e for e in manifest.entries}
        assert labelled, kind.id
        for i, rec in enumerate(records):
            found = validate_record(rt, rec, ds)
            assert found == legacy.validate_record(rt, rec, ds), (kind.id, i)  # paths, rules, zh and en
            entry = labelled.get(i)
            if entry is None:
                assert found == [], (kind.id, i, found)
            elif kind.structural:
                assert {v.rule for v in found} == {kind.rule} and entry["path"] in {v.path for v in found}, found
                assert entry["path"] in kind.found(rec, check, found)
            else:
                assert found == [], (kind.id, found)  # well-formed: only its data-quality rule finds it
                assert entry["path"] in kind.found(rec, check, found)


ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False),
    st.text(max_size=60),
    st.sampled_from(["", " ", "0", "-0", "00.10", "1.005", "12.50", "9" * 17, "2024-02-29", "2023-02-29", "0000-01-01",
                     "2024-13-01", "2024-04-31", "2024-12-31 23:59:59", "2024-12-31 24:00:00", "2024-02-30 10:00:00",
                     "J18.900", "440100", "11", "XA01ABD075A002010100483", "H44010600001", "张三" * 26]),
    st.from_regex(DATE_RE, fullmatch=True),
    st.from_regex(DATETIME_RE, fullmatch=True),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), code=st.sampled_from(TYPES))
def test_arbitrary_values_give_the_same_violations(ds: Dataset, data: st.DataObject, code: str) -> None:
    rt = ds.records[code]
    record: Any = samples.example_record(rt, ds)
    for _ in range(data.draw(st.integers(1, 4))):
        target = record
        if rt.items and data.draw(st.booleans()):
            target = data.draw(st.sampled_from(record[rt.items.code]))
            el = data.draw(st.sampled_from(rt.items.elements))
        else:
            el = data.draw(st.sampled_from(rt.elements))
        if data.draw(st.integers(0, 9)) == 0:
            target.pop(el.code, None)
        else:
            target[el.code] = data.draw(ODD_VALUES)
    if data.draw(st.integers(0, 9)) == 0:
        record["not_an_element"] = 1
    if rt.items and data.draw(st.integers(0, 9)) == 0:
        record[rt.items.code] = data.draw(st.sampled_from([None, [], "x", [record[rt.items.code][0]] * 2, [7]]))
    if data.draw(st.integers(0, 19)) == 0:
        record = data.draw(st.sampled_from([None, [], "record", 3]))
    path = data.draw(st.sampled_from(["", "input.records[4]"]))
    assert _outcome(validate_record, rt, record, ds, path) == _outcome(legacy.validate_record, rt, record, ds, path)


def _outcome(check: Any, *args: Any) -> Any:
    """The violations, or the error: an unhashable item key (a list) was a TypeError and still is one."""
    try:
        return check(*args)
    except TypeError as exc:
        return ("TypeError", str(exc))


def test_dates_and_times_are_real_calendar_days_as_strptime_said(ds: Dataset) -> None:
    rt = ds.records["setl"]
    date_el, time_el = next(e for e in rt.elements if e.kind == "date"), rt.element("setl_time")
    for year in ("0000", "0001", "1900", "2000", "2023", "2024", "2100", "9999"):
        for month in range(0, 14):
            for day in range(0, 33):
                text = f"{year}-{month:02d}-{day:02d}"
                rec = samples.example_record(rt, ds) | {date_el.code: text, time_el.code: f"{text} 23:59:59"}
                assert validate_record(rt, rec, ds) == legacy.validate_record(rt, rec, ds), text


def test_checks_are_compiled_once_per_record_type_and_dataset(ds: Dataset) -> None:
    rt = ds.records["setl"]
    assert record_check(rt, ds) is record_check(rt, ds)
    assert record_check(rt.items, ds) is record_check(rt.items, ds)  # type: ignore[arg-type]
    assert load_dataset()._checks == {}  # another dataset value compiles its own
    # A record type built elsewhere (equal or not) is compiled for itself, never handed another's check.
    shorter = dataclasses.replace(rt, elements=tuple(e for e in rt.elements if e.code != "psn_name"))
    rec = samples.example_record(rt, ds)
    assert [v.rule for v in validate_record(shorter, rec, ds)] == ["unknown"]
    assert validate_record(rt, rec, ds) == []


# ---------------------------------------------------------------- one document validation per batch


def _mixed(ds: Dataset, code: str, n: int, structural: bool = False) -> list[dict[str, Any]]:
    """Good records and every bad kind of the record type (or only those the checks refuse), shuffled in."""
    kinds = tuple(k.id for k in bad.KINDS if k.structural) if structural else None
    return list(generate(Partition(code, "440100", 2024), n, seed=9, bad_share=0.3, kinds=kinds, ds=ds))


@pytest.mark.parametrize("code", UPLOADS)
def test_a_batch_gives_each_record_the_reasons_it_gets_alone(
    ex: Any, ds: Dataset, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _mixed(ds, code, 90, structural=True)
    alone = [legacy.record_violations(ex, ds.records[code], "4101", r) for r in records]
    assert sum(1 for a in alone if a) == 27  # bad ones among good ones
    assert incremental.batch_violations(ex, ds.records[code], "4101", records) == alone
    monkeypatch.setattr(incremental, "MAX_BATCH", 7)  # several requests, the last one short
    assert incremental.batch_violations(ex, ds.records[code], "4101", records) == alone
    assert incremental.record_violations(ex, ds.records[code], "4101", records[0]) == alone[0]


def test_the_document_alone_refuses_only_the_bad_record_of_a_batch(ex: Any, ds: Dataset) -> None:
    rt = ds.records["setl"]
    records = [samples.example_record(rt, ds, n) for n in range(6)]
    records[3]["med_type"] = "99"
    records[4]["setl_item"][1]["cnt"] = 2.5
    records[5]["extra"] = "x"
    env = samples.request("4101", ds)
    env["input"] = {"record_type": "setl", "records": records}
    per = ifc.split_items(ifc.validate_request(ex.iface, "4101", env), "input.records", len(records))
    for i, record in enumerate(records):
        one = samples.request("4101", ds) | {"input": {"record_type": "setl", "records": [record]}}
        assert per[i] == ifc.validate_request(ex.iface, "4101", one), i
    assert [bool(p) for p in per] == [False, False, False, True, True, True]
    assert {v.path for v in per[4]} == {"input.records[0].setl_item[1].cnt"}


def test_split_items_keeps_the_items_and_leaves_the_rest() -> None:
    v = [Violation(p, "r", "zh", "en") for p in ("msgid", "input.records", "input.records[2].a", "input.records[2]",
                                                  "input.records[10].b", "input.records[1][0]", "input.recordsx[1].c",
                                                  "input.records[1]x")]  # fmt: skip
    per = ifc.split_items(v, "input.records", 3)
    assert [[x.path for x in p] for p in per] == [
        [],
        ["input.records[0][0]"],
        ["input.records[0].a", "input.records[0]"],
    ]


# ---------------------------------------------------------------- the fingerprint's normal form


def test_record_bytes_are_the_definitions_on_generated_records(ds: Dataset) -> None:
    for code in TYPES:
        for rec in _mixed(ds, code, 300):
            for form in (rec, json.loads(json.dumps(rec))):
                assert record_bytes(form) == canonical(normal_form(form))
    rec = _mixed(ds, "setl", 1)[0]
    rec["enddate"] = None
    rec["setl_item"][0]["pric"] = None
    assert record_bytes(rec) == canonical(normal_form(rec))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=st.dictionaries(st.text(max_size=6), JSON, max_size=8))
def test_record_bytes_are_the_definitions_on_any_json_object(value: dict[str, Any]) -> None:
    assert record_bytes(value) == canonical(normal_form(value))


def test_record_bytes_of_other_mappings_and_values_follow_the_definition() -> None:
    class Code(str):
        pass

    odd = {"b": Code("x"), "a": [{"z": 1, "y": None}, {"c": dt.date(2024, 1, 1).isoformat()}], "n": None, 2: "k"}
    with pytest.raises(TypeError):  # sort_keys cannot order 2 and "a": as the definition
        canonical(normal_form(odd))
    with pytest.raises(TypeError):
        record_bytes(odd)
    del odd[2]
    assert record_bytes(odd) == canonical(normal_form(odd))
