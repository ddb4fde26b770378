"""The exchange dataset (datasets/): its files are checked with bilingual problems naming file, field and
fix; records are checked element by element (and the document agrees); rows serialise to the wire form;
the DDL creates the exchange tables in a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import exchange_samples as samples
from hipgate.errors import UserError
from hipgate.exchange import interface as ifc
from hipgate.exchange.dataset import (
    Dataset,
    Element,
    RecordType,
    dataset_ddl,
    decimal_pattern,
    load_dataset,
    mask_record,
    serialise_record,
    validate_record,
)
from pg_cluster import AS_POSTGRES, PG_BIN, cluster

ROOT = Path(__file__).resolve().parents[2] / "datasets"


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def iface() -> ifc.Interface:
    return ifc.load_interface()


# ---------------------------------------------------------------- the dataset files


def test_the_dataset_has_the_record_types_of_the_exchange(ds: Dataset) -> None:
    assert set(ds.records) == {"setl", "cross_visit", "fee_check_form", "anomaly", "test_psn"}
    assert ds.records["setl"].items is not None and ds.records["setl"].items.code == "setl_item"
    assert ds.records["cross_visit"].direction == "both"
    for rt in ds.all_record_types():
        for el in rt.elements:
            assert el.name_zh and el.name_en and el.type
        if not rt.parent:
            assert rt.cursor == "updt_time" and rt.region and rt.year
    pii = {el.code for rt in ds.all_record_types() for el in rt.elements if el.pii}
    assert {"certno", "psn_name", "tel", "brdy"} <= pii


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT, tmp_path / "datasets")
    return tmp_path / "datasets"


def _edit(root: Path, rel: str, change: Callable[[Any], object]) -> None:
    path = root / rel
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def _el(doc: dict[str, Any], code: str) -> dict[str, Any]:
    return next(e for e in doc["elements"] if e["code"] == code)


BREAKS: list[tuple[str, str, Callable[[Any], object], str, str]] = [
    ("unknown key", "records/setl.yml", lambda d: d["elements"][0].update(lenght=3), "elements.[0].lenght",
     "unknown key"),
    ("string without length", "records/setl.yml", lambda d: d["elements"][0].pop("length"), "elements.[0].length",
     "needs a length"),
    ("length on a date", "records/setl.yml", lambda d: _el(d, "brdy").update(length=10), "elements.[7].length",
     "follows from its type"),
    ("unknown type", "records/setl.yml", lambda d: d["elements"][0].update(type="varchar"), "elements.[0].type",
     "malformed"),
    ("decimal scale", "records/setl.yml", lambda d: _el(d, "acct_pay").update(type="decimal(2,2)"), "type", "s < p"),
    ("unknown code set", "records/setl.yml", lambda d: _el(d, "gend").update(codeset="sex"), "elements.[6].codeset",
     "does not exist"),
    ("key names nothing", "records/setl.yml", lambda d: d.update(key=["setl_no"]), "setl.yml: key",
     "is not an element"),
    ("optional key", "records/test_psn.yml", lambda d: _el(d, "psn_no").update(required=False), "test_psn.yml: key",
     "is not required"),
    ("personal-data key", "records/test_psn.yml", lambda d: d.update(key=["certno"]), "test_psn.yml: key",
     "personal data"),
    ("cursor not a time", "records/anomaly.yml", lambda d: d.update(cursor="ano_id"), "anomaly.yml: cursor",
     "required datetime"),
    ("partition region", "records/anomaly.yml", lambda d: d["partition"].update(region="rec_type"),
     "partition.region", "admdvs"),
    ("duplicate element", "records/anomaly.yml", lambda d: d["elements"].append(dict(d["elements"][0])),
     "elements.[11].code", "appears twice"),
    ("bad regex", "records/anomaly.yml", lambda d: _el(d, "ano_id").update(pattern="^[0-9$"), "pattern",
     "invalid regular expression"),
    ("reserved prefix", "records/anomaly.yml", lambda d: d["elements"][0].update(code="hg_status"),
     "elements.[0].code", "hg_"),
    ("element differs", "records/test_psn.yml", lambda d: _el(d, "psn_name").update(length=60), "psn_name.length",
     "has length 60 here but 50"),
    ("file name", "records/anomaly.yml", lambda d: d.update(code="anomalies"), "anomaly.yml: code",
     "differs from the file name"),
    ("item key is parent key", "records/setl.yml", lambda d: d["items"]["elements"].append(dict(d["elements"][0])),
     "items.elements", "its record's key"),
    ("closed without values", "codesets/gend.yml", lambda d: d.pop("values"), "gend.yml: values", "needs values"),
    ("open without pattern", "codesets/admdvs.yml", lambda d: d.pop("pattern"), "admdvs.yml: pattern",
     "needs a pattern"),
    ("code too long", "codesets/gend.yml", lambda d: d["values"].append({"code": "1234567", "name_zh": "x",
     "name_en": "x"}), "elements.[6].length", "longer than length"),
    ("record_type list", "codesets/record_type.yml", lambda d: d["values"].pop(), "record_type.yml: values",
     "the dataset's record types are"),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "change", "where", "says"), [b[1:] for b in BREAKS], ids=[b[0] for b in BREAKS])
def test_a_bad_dataset_file_is_named_with_field_and_fix(
    tmp_path: Path, rel: str, change: Callable[[Any], object], where: str, says: str
) -> None:
    root = _copy(tmp_path)
    _edit(root, rel, change)
    with pytest.raises(UserError) as exc:
        load_dataset(root)
    text = str(exc.value)
    assert where in text and says in text, text
    for problem in exc.value.problems:
        assert str(root) in problem.where and problem.zh and problem.en and problem.fix_zh and problem.fix_en


def test_every_problem_is_listed_in_one_run_and_a_broken_code_set_is_not_reported_again(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    (root / "codesets" / "gend.yml").write_text("code: gend\ncode: again\n")
    _edit(root, "records/setl.yml", lambda d: d["elements"][0].pop("length"))
    with pytest.raises(UserError) as exc:
        load_dataset(root)
    wheres = [p.where for p in exc.value.problems]
    assert len(wheres) == 2, wheres
    assert "duplicate key" in str(exc.value) and "elements.[0].length" in str(exc.value)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="records"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------- one record


@pytest.mark.parametrize("code", ["setl", "cross_visit", "fee_check_form", "anomaly", "test_psn"])
def test_an_example_record_is_valid(ds: Dataset, code: str) -> None:
    assert validate_record(code, samples.example_record(ds.records[code], ds), ds) == []


@pytest.mark.parametrize(
    ("element", "value", "rule"),
    [
        ("psn_name", KeyError, "required"),
        ("setl_id", None, "required"),
        ("setl_id", "", "min_length"),
        ("certno", "1" * 51, "max_length"),
        ("gend", "3", "enum"),
        ("insuplc_admdvs", "4401", "pattern"),
        ("fixmedins_code", "X44010600001", "pattern"),
        ("setl_id", "S 1", "pattern"),
        ("medfee_sumamt", "12.345", "pattern"),
        ("medfee_sumamt", 12.5, "type"),
        ("brdy", "1990-02-30", "pattern"),
        ("setl_time", "2025-01-02T10:30:00", "pattern"),
        ("enddate", None, None),
        ("extra", 1, "unknown"),
    ],
)
def test_each_violation_names_its_element(ds: Dataset, element: str, value: Any, rule: str | None) -> None:
    rec = samples.example_record(ds.records["setl"], ds)
    if value is KeyError:
        del rec[element]
    else:
        rec[element] = value
    found = validate_record("setl", rec, ds)
    assert [(v.path, v.rule) for v in found] == ([(element, rule)] if rule else [])


def test_items_are_counted_keyed_and_checked(ds: Dataset) -> None:
    rec = samples.example_record(ds.records["setl"], ds)
    rec["setl_item"][1]["feedetl_sn"] = rec["setl_item"][0]["feedetl_sn"]
    rec["setl_item"][0]["cnt"] = "x"
    found = {(v.path, v.rule) for v in validate_record("setl", rec, ds)}
    assert found == {("setl_item[1]", "duplicate_key"), ("setl_item[0].cnt", "pattern")}
    assert [v.rule for v in validate_record("setl", rec | {"setl_item": []}, ds)] == ["count"]
    assert [v.rule for v in validate_record("setl", {k: v for k, v in rec.items() if k != "setl_item"}, ds)] == [
        "required"
    ]


def test_personal_data_is_never_shown_but_codes_are(ds: Dataset) -> None:
    rec = samples.example_record(ds.records["test_psn"], ds) | {"tel": "秘密号码", "brdy": "1990-13-01", "gend": "7"}
    found = validate_record("test_psn", rec, ds)
    text = "\n".join(v.reason() for v in found)
    assert "秘密号码" not in text and "1990-13-01" not in text and "'7'" in text
    masked = mask_record(ds.records["test_psn"], rec)
    assert masked["certno"] == masked["psn_name"] == masked["tel"] == "***" and masked["psn_no"] == rec["psn_no"]


def test_decimal_patterns() -> None:
    import re

    pattern = decimal_pattern(16, 2).strip("^$")
    for good in ("0", "0.5", "-12.25", "99999999999999.99"):
        assert re.fullmatch(pattern, good), good
    for bad in ("01", "1.", ".5", "1.234", "999999999999999", "1e3", "+1"):
        assert not re.fullmatch(pattern, bad), bad


def test_a_table_row_serialises_to_a_valid_record(ds: Dataset) -> None:
    rt = ds.records["setl"]
    wire = samples.example_record(rt, ds)
    row: dict[str, Any] = {k: v for k, v in wire.items() if k != "setl_item"}
    shanghai = dt.timezone(dt.timedelta(hours=8))
    row |= {
        "brdy": dt.date(1990, 1, 1),
        "medfee_sumamt": Decimal("100.50"),
        "acct_pay": 0,
        "setl_time": dt.datetime(2025, 1, 2, 2, 30, tzinfo=dt.UTC),
        "updt_time": dt.datetime(2025, 1, 2, 10, 30, 5, 123456),
        "hg_status": "pending",
        "hg_msgid": None,
    }
    items = [{**item, "setl_id": row["setl_id"], "cnt": Decimal("2.0000")} for item in wire["setl_item"]]
    out = serialise_record(rt, row, items)
    assert out["brdy"] == "1990-01-01" and out["medfee_sumamt"] == "100.50" and out["acct_pay"] == "0"
    assert (
        out["setl_time"]
        == "2025-01-02 10:30:00"
        == dt.datetime(2025, 1, 2, 10, 30, tzinfo=shanghai).strftime("%Y-%m-%d %H:%M:%S")
    )
    assert out["updt_time"] == "2025-01-02 10:30:05"
    assert "hg_status" not in out and all("setl_id" not in i for i in out["setl_item"])
    assert out["setl_item"][0]["cnt"] == "2.0000"
    assert validate_record(rt, out, ds) == []
    with pytest.raises(TypeError):
        serialise_record(rt, row | {"acct_pay": 0.1})
    with pytest.raises(TypeError):
        serialise_record(rt, row | {"brdy": dt.datetime(1990, 1, 1)})


# ---------------------------------------------------------------- the dataset and the document agree


def _value(el: Element, ds: Dataset) -> st.SearchStrategy[Any]:
    if el.codeset and ds.codesets[el.codeset].closed:
        return st.sampled_from(ds.codesets[el.codeset].codes)
    pattern = el.pattern or (ds.codesets[el.codeset].pattern if el.codeset else None)
    if el.kind == "decimal":
        pattern = decimal_pattern(*el.precision_scale)
    if pattern:
        return st.from_regex(pattern, fullmatch=True).filter(lambda s: 0 < len(s) <= (el.length or 99))
    if el.kind == "date":
        return st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)).map(dt.date.isoformat)
    if el.kind == "datetime":
        return st.datetimes(dt.datetime(1900, 1, 1)).map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
    if el.kind == "integer":
        return st.integers(0, 10 ** (el.length or 1) - 1)
    return st.text(min_size=1, max_size=el.length or 1)


def _record(rt: RecordType, ds: Dataset) -> st.SearchStrategy[dict[str, Any]]:
    required = {el.code: _value(el, ds) for el in rt.elements if el.required}
    optional = {el.code: st.none() | _value(el, ds) for el in rt.elements if not el.required}
    if rt.items:
        item = _record(rt.items, ds)
        required[rt.items.code] = st.lists(
            item, min_size=rt.min_items, max_size=3, unique_by=lambda i: tuple(i[k] for k in rt.items.key)
        )
    return st.fixed_dictionaries(required, optional=optional)


# How each record type travels: (transaction, request or reply, where the record sits).
CARRIER = {
    "setl": ("4101", "request", ["input", "records", 0]),
    "cross_visit": ("5301", "reply", ["output", "records", 0]),
    "fee_check_form": ("5201", "reply", ["output", "records", 0]),
    "anomaly": ("5401", "reply", ["output", "records", 0]),
    "test_psn": ("9201", "request", ["input", "persons", 0]),
}


def _document_paths(iface: ifc.Interface, ds: Dataset, code: str, record: dict[str, Any]) -> set[str]:
    infno, kind, where = CARRIER[code]
    message = samples.request(infno, ds) if kind == "request" else samples.reply(infno, ds)
    message[where[0]][where[1]] = [record]
    found = (
        ifc.validate_request(iface, infno, message) if kind == "request" else ifc.validate_reply(iface, infno, message)
    )
    prefix = f"{where[0]}.{where[1]}[0]"
    return {v.path.removeprefix(prefix).lstrip(".") or "(record)" for v in found}


def _dataset_paths(ds: Dataset, code: str, record: dict[str, Any]) -> set[str]:
    return {v.path for v in validate_record(code, record, ds)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), code=st.sampled_from(sorted(CARRIER)))
def test_a_record_the_dataset_accepts_the_document_accepts(iface: ifc.Interface, ds: Dataset, data, code) -> None:
    record = data.draw(_record(ds.records[code], ds))
    assert _dataset_paths(ds, code, record) == set()
    assert _document_paths(iface, ds, code, record) == set()


BREAKERS: dict[str, Callable[[Element], Any]] = {
    "missing": lambda el: KeyError,
    "too long": lambda el: "9" * ((el.length or 30) + 1),
    "wrong type": lambda el: [1],
    "bad form": lambda el: "~bad~" if el.kind != "integer" else -1,
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), code=st.sampled_from(sorted(CARRIER)), breaker=st.sampled_from(sorted(BREAKERS)))
def test_the_dataset_and_the_document_refuse_the_same_element(
    iface: ifc.Interface, ds: Dataset, data, code: str, breaker: str
) -> None:
    rt = ds.records[code]
    record = samples.example_record(rt, ds)
    el = data.draw(st.sampled_from([e for e in rt.elements if e.required or breaker != "missing"]))
    bad = BREAKERS[breaker](el)
    if bad is KeyError:
        del record[el.code]
    else:
        record[el.code] = bad
    free_text = el.kind == "string" and not el.codeset and not el.pattern
    expected = set() if breaker == "bad form" and free_text else {el.code}
    assert _dataset_paths(ds, code, record) == expected
    assert _document_paths(iface, ds, code, record) == expected


# ---------------------------------------------------------------- DDL in a real PostgreSQL


def test_the_ddl_quotes_every_identifier_and_keys_each_table(ds: Dataset) -> None:
    ddl = dataset_ddl(ds)
    assert 'CREATE TABLE IF NOT EXISTS "exchange"."setl" (' in ddl
    assert 'PRIMARY KEY ("setl_id", "feedetl_sn")' in ddl
    assert 'PRIMARY KEY ("mdtrtarea_admvs", "setl_id")' in ddl
    assert '"medfee_sumamt" numeric(16,2) NOT NULL' in ddl and '"enddate" date NULL' in ddl
    assert "''s name" in ddl  # person's name, quoted in its comment
    with pytest.raises(ValueError):
        dataset_ddl(ds, schema='x"; DROP TABLE y; --')


@pytest.fixture(scope="module")
def postgres() -> Iterator[Callable[[str], subprocess.CompletedProcess[str]]]:
    """A throwaway cluster (tests/pg_cluster.py); SQL runs through psql as `postgres`."""

    def psql_on(port: int, sql: str) -> subprocess.CompletedProcess[str]:
        cmd = [*AS_POSTGRES, str(PG_BIN / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port)]
        return subprocess.run([*cmd, "-d", "postgres"], input=sql, capture_output=True, text=True)

    with cluster("hipgate-ddl-", lambda port: psql_on(port, "SELECT 1").returncode == 0) as port:
        yield lambda sql: psql_on(port, sql)


def _insert(table: str, row: dict[str, Any]) -> str:
    cols = ", ".join(f'"{k}"' for k in row)
    vals = ", ".join("NULL" if v is None else "'" + str(v).replace("'", "''") + "'" for v in row.values())
    return f'INSERT INTO "exchange"."{table}" ({cols}) VALUES ({vals});'


def test_the_ddl_creates_the_exchange_tables_in_postgresql(postgres, ds: Dataset) -> None:
    made = postgres(dataset_ddl(ds))
    assert made.returncode == 0, made.stderr
    tables = postgres("SELECT table_name FROM information_schema.tables WHERE table_schema = 'exchange' ORDER BY 1")
    inboxes = [rt.code + "_inbox" for rt in ds.records.values() if rt.direction == "both"]
    assert tables.stdout.split() == sorted([rt.code for rt in ds.all_record_types()] + inboxes)
    setl = samples.example_record(ds.records["setl"], ds)
    items = setl.pop("setl_item")
    sql = _insert("setl", setl) + "".join(_insert("setl_item", {"setl_id": setl["setl_id"], **i}) for i in items)
    assert postgres(sql).returncode == 0
    # An upload table is the province's: its elements only, the middleware's state is elsewhere.
    cols = postgres("SELECT column_name FROM information_schema.columns WHERE table_name = 'setl'")
    assert not [c for c in cols.stdout.split() if c.startswith("hg_")]
    assert postgres('SELECT "medfee_sumamt" FROM "exchange"."setl"').stdout.strip() == "12.50"
    again = postgres(_insert("setl", setl))
    assert again.returncode != 0 and "duplicate key" in again.stderr
    orphan = postgres(_insert("setl_item", {"setl_id": "NOPE", **items[0]}))
    assert orphan.returncode != 0 and "foreign key" in orphan.stderr
    too_long = postgres(_insert("setl", setl | {"setl_id": "S2", "certno": "1" * 51}))
    assert too_long.returncode != 0 and "too long" in too_long.stderr
    both = samples.example_record(ds.records["cross_visit"], ds)
    assert postgres(_insert("cross_visit", both)).returncode == 0  # the upload table
    assert postgres(_insert("cross_visit_inbox", both | {"hg_msgid": "x"})).returncode == 0  # downloads apart
    received = postgres('SELECT "hg_acked_at" IS NULL, "hg_received_at" <= now() FROM "exchange"."cross_visit_inbox"')
    assert received.stdout.strip() == "t|t"
    assert postgres('DELETE FROM "exchange"."setl"; SELECT count(*) FROM "exchange"."setl_item"').stdout.strip() == "0"
