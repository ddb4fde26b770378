"""Lab seed data (hipgate.exchange.seed): reproducible from (seed, record type, region, year) alone, every
good record valid for the dataset and the interface document, real 身份证号 and codes, amounts that add
up to the cent, each deliberately bad kind present at its share and found for its labelled reason only,
streaming in bounded memory, and a real PostgreSQL COPY of it all."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import shutil
import subprocess
import sys
import tracemalloc
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric
from typer.testing import CliRunner

import exchange_samples as samples
from helpers import PG_BIN, ROOT, postgres_cluster
from hipgate.cli import app
from hipgate.errors import UserError
from hipgate.exchange import interface as ifc
from hipgate.exchange.bookkeeping import bookkeeping_ddl
from hipgate.exchange.dataset import Dataset, dataset_ddl, load_dataset, validate_record
from hipgate.exchange.seed import bad, pgcopy, run
from hipgate.exchange.seed.bad import KINDS, Manifest
from hipgate.exchange.seed.dictionaries import Dictionaries, load_dictionaries
from hipgate.exchange.seed.generate import Partition, generate
from hipgate.exchange.seed.people import certno, gend_of, is_valid_certno

CENT = Decimal("0.01")
TYPES = ("setl", "cross_visit", "test_psn")


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def dicts() -> Dictionaries:
    return load_dictionaries()


def _make(ds: Dataset, rt: str, region: str = "440100", year: int = 2024, n: int = 1500, **kw: Any) -> list[dict]:
    return list(generate(Partition(rt, region, year), n, seed=kw.pop("seed", 17), ds=ds, **kw))


# ---------------------------------------------------------------- determinism


def test_the_same_seed_gives_the_same_records_and_another_seed_others(ds: Dataset) -> None:
    for rt in TYPES:
        first = _make(ds, rt, n=300, bad_share=0.05)
        assert first == _make(ds, rt, n=300, bad_share=0.05)
        assert first != _make(ds, rt, n=300, bad_share=0.05, seed=18)


def test_a_partition_is_the_same_alone_or_among_others(ds: Dataset) -> None:
    """Each region-year comes from its own stream: made alone, or after other partitions, or as part of a
    whole plan's script, it is the same; a different region or year is different."""
    alone = _make(ds, "setl", "440300", 2023, n=400, bad_share=0.02)
    _make(ds, "setl", "440100", 2024, n=400)
    _make(ds, "cross_visit", "440300", 2023, n=400)
    assert _make(ds, "setl", "440300", 2023, n=400, bad_share=0.02) == alone
    assert _make(ds, "setl", "440300", 2024, n=400, bad_share=0.02) != alone
    assert _make(ds, "setl", "440600", 2023, n=400, bad_share=0.02) != alone
    plan = run.Plan(seed=17, regions=("440100", "440300"), years=(2023, 2024), per_region_year=400, bad_share=0.02)
    text = b"".join(run.script(plan, ds=ds)).decode()
    rows = "".join(chunk.decode() for chunk in pgcopy.copy_text(alone, "setl", ds))
    assert rows in text


def test_the_good_records_do_not_depend_on_the_bad_share(ds: Dataset) -> None:
    clean = _make(ds, "setl", n=800, bad_share=0)
    manifest = Manifest()
    dirty = _make(ds, "setl", n=800, bad_share=0.05, manifest=manifest)
    bad_ones = {e["index"] for e in manifest.entries}
    assert len(bad_ones) == 40
    assert [r for i, r in enumerate(dirty) if i not in bad_ones] == [
        r for i, r in enumerate(clean) if i not in bad_ones
    ]


# ---------------------------------------------------------------- good records are valid


def test_every_good_record_passes_the_dataset_check(ds: Dataset) -> None:
    for rt in TYPES:
        for region, year in (("440100", 2023), ("441900", 2024), ("445300", 2024)):
            for i, rec in enumerate(_make(ds, rt, region, year, n=1000, bad_share=0)):
                assert validate_record(rt, rec, ds) == [], (rt, region, year, i)


def test_every_good_record_passes_the_interface_documents_record_schema(ds: Dataset) -> None:
    iface = ifc.load_interface()
    for infno, rt, field, per in (("4101", "setl", "records", 100), ("4101", "cross_visit", "records", 250),
                                  ("9201", "test_psn", "persons", 100)):  # fmt: skip
        records = _make(ds, rt, n=500, bad_share=0)
        for start in range(0, len(records), per):
            env = samples.request(infno, ds)
            env["input"] = {field: records[start : start + per]}
            if infno == "4101":
                env["input"]["record_type"] = rt
            assert ifc.validate_request(iface, infno, env) == [], (rt, start)


def test_the_interface_refuses_the_structural_bad_kinds(ds: Dataset) -> None:
    """What the dataset check refuses, the interface document refuses too (its schema is the dataset's),
    but for a repeated item key: JSON Schema cannot say that one property of the items is unique
    (uniqueItems compares whole items), so only the dataset check finds DQ-ITEMS-DUPLICATE-SN."""
    iface = ifc.load_interface()
    manifest = Manifest()
    records = _make(ds, "setl", n=1600, bad_share=0.05, manifest=manifest)
    for entry in manifest.entries:
        env = samples.request("4101", ds)
        env["input"] = {"record_type": "setl", "records": [records[entry["index"]]]}
        refused = ifc.validate_request(iface, "4101", env) != []
        assert refused == (entry["structural"] and entry["kind"] != "DQ-ITEMS-DUPLICATE-SN"), entry


def test_every_certno_is_valid_for_stdnum_and_agrees_with_brdy_and_gend(ds: Dataset, dicts: Dictionaries) -> None:
    for rt in TYPES:
        for rec in _make(ds, rt, "440300", 2024, n=1500, bad_share=0):
            number = rec["certno"]
            assert rec["psn_cert_type"] == "01"
            assert ric.validate(number) == number
            assert ric.get_birth_date(number).isoformat() == rec["brdy"]
            assert rec["gend"] == ("1" if int(number[16]) % 2 else "2")
            place = dicts.divisions[number[:6]]
            assert place.valid_from <= int(number[6:10])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_certno_makes_what_stdnum_accepts(data: st.DataObject) -> None:
    dicts = load_dictionaries()
    div = data.draw(st.sampled_from(sorted(dicts.divisions.values(), key=lambda d: d.code)))
    born = data.draw(st.dates(dt.date(max(div.valid_from, 1930), 1, 1), dt.date(2024, 12, 31)))
    seq = data.draw(st.integers(0, 999))
    number = certno(div.code, born, seq)
    assert is_valid_certno(number)
    assert ric.get_birth_date(number) == born
    assert gend_of(number) == ("1" if seq % 2 else "2")
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    assert not is_valid_certno(wrong)


# ---------------------------------------------------------------- realism: codes, amounts, times


def test_the_dictionaries_agree_with_stdnum_and_the_code_sets(ds: Dataset, dicts: Dictionaries) -> None:
    assert dicts.province == "440000" and dicts.divisions["440000"].name == "广东省"
    assert len(dicts.prefectures("440000")) == 21
    for d in dicts.divisions.values():
        place = ric.get_birth_place(certno(d.code, dt.date(2024, 6, 1), 1))
        assert d.name in (place.get("county"), place["province"]), d
        number = certno(d.code, dt.date(d.valid_from, 6, 1), 1)
        assert is_valid_certno(number), d
        if d.valid_from > 1900:  # and not the year before: valid_from is the start of its validity
            assert not is_valid_certno(certno(d.code, dt.date(d.valid_from - 1, 6, 1), 1)), d
    icd = re.compile(ds.codesets["icd10"].pattern or "")
    assert all(icd.fullmatch(d.code) for d in dicts.diagnoses)
    med_list = re.compile(ds.codesets["med_list"].pattern or "")
    for item in dicts.catalogue.values():
        assert med_list.fullmatch(item.code) and re.fullmatch(dicts.formats[item.kind], item.code), item
        assert item.type in ds.codesets["med_chrgitm_type"].codes and item.lv in ds.codesets["chrgitm_lv"].codes
    # What the bad kinds use as unknown is unknown indeed: to the dictionaries and to stdnum's table.
    for code in bad.UNKNOWN_DIVISIONS:
        assert code not in dicts.divisions and not is_valid_certno(certno(code, dt.date(1990, 1, 1), 1))
    assert not set(bad.UNKNOWN_DIAGNOSES) & {d.code for d in dicts.diagnoses}
    assert all(icd.fullmatch(c) for c in bad.UNKNOWN_DIAGNOSES)
    assert not set(bad.UNKNOWN_MED_TYPES) & set(ds.codesets["med_type"].codes)


def _d(text: str) -> Decimal:
    assert isinstance(text, str) and re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]+)?", text), text
    return Decimal(text)


def test_amounts_add_up_to_the_cent_and_times_are_in_order(ds: Dataset, dicts: Dictionaries) -> None:
    for rt in ("setl", "cross_visit"):
        records = _make(ds, rt, "440600", 2023, n=2000, bad_share=0)
        for rec in records:
            total = _d(rec["medfee_sumamt"])
            parts = [_d(rec[e]) for e in ("fund_pay_sumamt", "psn_cash_pay", "acct_pay")]
            assert sum(parts) == total and min(parts) >= 0 and total > 0
            if rt == "setl":
                items = rec["setl_item"]
                for item in items:
                    assert _d(item["det_item_fee_sumamt"]) == (_d(item["cnt"]) * _d(item["pric"])).quantize(
                        CENT, ROUND_HALF_UP
                    )
                    assert rec["begndate"] <= item["fee_ocur_time"][:10] and item["fee_ocur_time"] <= rec["setl_time"]
                    assert item["med_list_codg"] in dicts.catalogue
                assert sum(_d(i["det_item_fee_sumamt"]) for i in items) == total
                assert len({i["feedetl_sn"] for i in items}) == len(items)
            assert rec["begndate"] <= rec["enddate"] <= rec["setl_time"][:10]
            assert rec["brdy"] <= rec["begndate"]
            assert rec["setl_time"].startswith("2023-") and rec["updt_time"] >= rec["setl_time"]
            assert rec["mdtrtarea_admvs"] == "440600" and rec["dise_codg"] in {d.code for d in dicts.diagnoses}
            assert rec["fixmedins_code"][1:7] in dicts.divisions and rec["insuplc_admdvs"] in dicts.divisions
        if rt == "cross_visit":  # the out-of-province insured treated here
            assert all(not r["insuplc_admdvs"].startswith("44") for r in records)
        else:
            local = sum(r["insuplc_admdvs"] == "440600" for r in records) / len(records)
            assert 0.8 < local < 0.95
        # Diagnoses fit the person: maternity only for women, prostate only for men.
        assert all(r["gend"] == "2" for r in records if r["dise_codg"][0] in "OZ" or r["med_type"] in ("51", "52"))
        assert all(r["gend"] == "1" for r in records if r["dise_codg"] == "N40.x00")
        assert len({r["med_type"] for r in records}) >= 8 and len({r["dise_codg"] for r in records}) >= 30


# ---------------------------------------------------------------- deliberately bad records


def test_every_bad_kind_has_a_stable_documented_id() -> None:
    ids = [k.id for k in KINDS]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"DQ-[A-Z0-9]+(-[A-Z0-9]+)+", i) for i in ids)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"`{i}`" in readme for i in ids), [i for i in ids if f"`{i}`" not in readme]


@pytest.mark.parametrize("rt", TYPES)
def test_each_bad_kind_is_present_at_its_share_and_found_for_its_reason_only(
    rt: str, ds: Dataset, dicts: Dictionaries
) -> None:
    n, share = 2400, 0.05
    manifest = Manifest()
    records = _make(ds, rt, "440300", 2024, n=n, bad_share=share, manifest=manifest)
    kinds = bad.kinds_for(ds.record_type(rt))
    assert sum(manifest.counts.values()) == len(manifest.entries) == round(n * share)
    per_kind = {k.id: manifest.counts[(rt, k.id)] for k in kinds}
    assert max(per_kind.values()) - min(per_kind.values()) <= 1 and min(per_kind.values()) >= 1, per_kind
    assert manifest.records[rt] == n
    check = bad.Check(ds.record_type(rt), ds, dicts)
    labelled = {e["index"]: e for e in manifest.entries}
    for i, rec in enumerate(records):
        found = bad.defects(rec, check)
        violations = validate_record(rt, rec, ds)
        entry = labelled.get(i)
        if entry is None:
            assert found == {} and violations == [], (i, found, violations)
            continue
        kind = bad.KIND_BY_ID[entry["kind"]]
        assert set(found) == {kind.id}, (entry, found)
        assert entry["path"] in found[kind.id], (entry, found)
        assert entry["key"] == {c: rec[c] for c in ds.record_type(rt).key}
        if kind.structural:
            assert violations and {v.rule for v in violations} == {kind.rule}, (entry, violations)
            assert entry["path"] in {v.path for v in violations}
        else:
            assert violations == [], (entry, violations)


def test_storable_only_keeps_the_kinds_the_tables_can_hold(ds: Dataset) -> None:
    manifest = Manifest()
    _make(ds, "setl", n=2000, bad_share=0.05, storable_only=True, manifest=manifest)
    made = {kind for _, kind in manifest.counts}
    assert made == {k.id for k in bad.kinds_for(ds.record_type("setl"), storable_only=True)}
    assert made.isdisjoint({"DQ-REQUIRED-MISSING", "DQ-LENGTH-NAME", "DQ-ITEMS-DUPLICATE-SN"})
    assert {"DQ-CODESET-MED-TYPE", "DQ-FORMAT-MED-LIST", "DQ-CERTNO-CHECKDIGIT"} <= made


def test_a_bad_plan_is_refused_with_every_problem_named(ds: Dataset) -> None:
    plan = run.Plan(regions=("440100", "110000", "449900"), years=(1999,), per_region_year=-1, bad_share=0.9,
                    record_types=("setl", "anomaly"))  # fmt: skip
    with pytest.raises(UserError) as caught:
        run.check_plan(plan, ds)
    where = " ".join(p.where for p in caught.value.problems)
    for part in ("--records-per-region-year", "--bad-share", "record type anomaly", "region 110000", "region 449900",
                 "year 1999"):  # fmt: skip
        assert part in where, where


# ---------------------------------------------------------------- streaming


def test_generation_and_the_copy_stream_run_in_bounded_memory(ds: Dataset) -> None:
    """The memory the stream holds does not grow with the number of records: over records 10 000-20 000
    the peak is within 1 MiB of the peak over the first 10 000 (what grows is the partition's bounded
    caches filling: prices per institution and item, birthplaces per prefecture and year), and both are
    a few MiB; the manifest goes to a sink. (scripts/bench-seed measures 2 million records' RSS.)"""
    sink: list[int] = []
    manifest = Manifest(sink=lambda e: sink.append(1))
    records = generate(Partition("setl", "440100", 2024), 20_000, seed=5, manifest=manifest, ds=ds)
    stream = pgcopy.copy_script(records, "setl", ds)
    tracemalloc.start()
    try:
        size = 0
        peaks = []
        for piece in stream:
            size += len(piece)
            if manifest.records["setl"] >= 10_000 and not peaks:
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.reset_peak()
        peaks.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()
    assert manifest.records["setl"] == 20_000 and len(sink) == 200 and size > 10_000_000
    assert max(peaks) < 6 * 2**20, peaks
    assert peaks[1] - peaks[0] < 2**20, peaks


# ---------------------------------------------------------------- COPY text


def test_copy_text_uses_the_ddls_column_order_and_escapes(ds: Dataset) -> None:
    setl = ds.record_type("setl")
    ddl = dataset_ddl(ds)
    for table in ("setl", "setl_item", "cross_visit", "test_psn"):
        body = ddl.split(f'CREATE TABLE IF NOT EXISTS "exchange"."{table}" (\n', 1)[1].split("\n);", 1)[0]
        ddl_columns = [line.split('"')[1] for line in body.splitlines() if line.startswith('  "')]
        cols = pgcopy.copy_columns(ds.record_type(table), ds)
        assert [c for c in ddl_columns if c in cols] == list(cols)
    rec = _make(ds, "setl", n=1)[0]
    rec["fixmedins_name"] = "a\tb\\c\nd\re"
    rec["enddate"] = None
    line = b"".join(pgcopy.copy_text([rec], "setl", ds)).decode()
    fields = line.rstrip("\n").split("\t")
    assert len(fields) == len(setl.elements)  # the elements only: no middleware column on an upload table
    assert fields[setl.codes.index("fixmedins_name")] == "a\\tb\\\\c\\nd\\re"
    assert fields[setl.codes.index("enddate")] == "\\N"
    items = b"".join(pgcopy.copy_text([rec], "setl_item", ds)).decode().splitlines()
    assert len(items) == len(rec["setl_item"]) and all(i.startswith(rec["setl_id"] + "\t") for i in items)
    with pytest.raises(ValueError):
        pgcopy.ident('setl"; drop table x; --')
    with pytest.raises(ValueError):
        run.psql_command("exchange; rm -rf /")


def test_dry_run_and_local_outputs_from_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["lab", "seed-data", "--regions", "440100", "--years", "2024", "--records-per-region-year", "300",
            "--record-types", "setl,test_psn", "--bad-share", "0.05"]  # fmt: skip
    res = runner.invoke(app, [*args, "--dry-run", "--manifest", str(tmp_path / "dry.jsonl")])
    assert res.exit_code == 0, res.output
    assert "600 条记录" in res.output and "600 records" in res.output
    res = runner.invoke(app, [*args, "--format", "jsonl", "--out", str(tmp_path / "seed.jsonl.gz")])
    assert res.exit_code == 0, res.output
    lines = gzip.decompress((tmp_path / "seed.jsonl.gz").read_bytes()).decode().splitlines()
    assert len(lines) == 600 and json.loads(lines[0])["setl_id"] == "4401002024S000000000"
    header, entries, summary = run.read_manifest(tmp_path / "seed.jsonl.manifest.jsonl")
    assert (
        header["per_region_year"] == 300 and len(entries) == 30 and summary["records"] == {"setl": 300, "test_psn": 300}
    )
    assert any(e["kind"] == "DQ-REQUIRED-MISSING" for e in entries)  # JSON Lines hold every kind
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "seed.sql")])
    assert res.exit_code == 0, res.output
    _, entries, _ = run.read_manifest(tmp_path / "seed.sql.manifest.jsonl")
    assert all(e["storable"] for e in entries)  # the tables' script only what they hold
    res = subprocess.run(
        [sys.executable, "-m", "hipgate.cli", *args, "--regions", "110000", "--dry-run"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 2 and "region 110000" in res.stderr and "Traceback" not in res.stderr


def test_the_lab_sink_is_psql_as_postgres_on_the_database_host_over_the_labs_ssh(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nothing but the checked database name varies in the remote command line; the stream is stdin."""
    from hipgate.lab import manager, topology

    lab = topology.build_lab("seedtest", 7, [("database", ("database",)), ("frontend", ("frontend",))])
    monkeypatch.setattr(manager, "load", lambda name: lab if name == "seedtest" else None)
    seen: list[list[str]] = []

    def fake_piped(argv: list[str], what: str) -> IO[bytes]:
        seen.append(argv)
        return (tmp_path / "sink").open("wb")  # a file is its own context manager

    monkeypatch.setattr(run, "piped", fake_piped)
    with run.lab_database_sink("seedtest") as sink:
        sink.write(b"COPY ...")
    assert seen == [[
        "ssh", "-F", str(lab.directory / "ssh_config"), "database",
        "sudo -n runuser -u postgres -- psql -X -q -d exchange -v ON_ERROR_STOP=1 --single-transaction -f -",
    ]]  # fmt: skip
    with pytest.raises(UserError):
        run.lab_database_sink("nolab").__enter__()
    with pytest.raises(ValueError):
        run.lab_database_sink("seedtest", "exchange; reboot").__enter__()


# ---------------------------------------------------------------- a real PostgreSQL


needs_pg = pytest.mark.skipif(
    not (PG_BIN / "initdb").exists() or not shutil.which("psql"),
    reason="Debian's postgresql-15 binaries are missing (scripts/setup --with-test-tools installs them)",
)


@needs_pg
def test_seed_data_loads_into_postgresql_with_copy(ds: Dataset, dicts: Dictionaries) -> None:
    """psycopg's COPY for one record type, the psql script (the lab's path: a sink that is psql's stdin)
    for a whole plan; the rows are the records, the bad ones are in the tables with their defects, a
    re-run with --replace replaces the partitions, and the DDL's table types hold every storable kind."""
    import psycopg

    with postgres_cluster("trust") as cluster:
        conninfo = {"host": str(cluster["sock"]), "port": cluster["port"], "user": "postgres"}
        with psycopg.connect(**conninfo, dbname="postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE exchange")
        psql = [*cluster["as_pg"], "psql", "-X", "-q", "-h", str(cluster["sock"]), "-p", str(cluster["port"]),
                "-d", "exchange", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]  # fmt: skip
        with psycopg.connect(**conninfo, dbname="exchange") as conn:
            conn.execute(dataset_ddl(ds))
            conn.commit()
            manifest = Manifest()
            records = _make(ds, "setl", "440100", 2023, n=3000, bad_share=0.02, storable_only=True, manifest=manifest)
            seen = []
            done = pgcopy.load(conn, iter(records), "setl", ds=ds, batch=700, progress=seen.append)
            conn.commit()
            assert done.records == 3000 and done.rows == 3000 + sum(len(r["setl_item"]) for r in records)
            assert seen and seen[-1] == done
            count, total = conn.execute("SELECT count(*), sum(medfee_sumamt) FROM exchange.setl").fetchone()
            assert count == 3000 and total == sum(Decimal(r["medfee_sumamt"]) for r in records)
            items = conn.execute("SELECT count(*), sum(det_item_fee_sumamt) FROM exchange.setl_item").fetchone()
            assert items == (
                done.rows - 3000,
                sum(Decimal(i["det_item_fee_sumamt"]) for r in records for i in r["setl_item"]),
            )
            # The defects are in the tables as made: each storable kind's rule finds its records by SQL.
            by_kind: dict[str, set[str]] = {}
            for e in manifest.entries:
                by_kind.setdefault(e["kind"], set()).add(e["key"]["setl_id"])
            sql = {
                "DQ-DATE-ORDER": "SELECT setl_id FROM exchange.setl WHERE enddate < begndate",
                "DQ-TIME-UPDT": "SELECT setl_id FROM exchange.setl WHERE updt_time < setl_time",
                "DQ-AMOUNT-PAY-SUM": "SELECT setl_id FROM exchange.setl"
                " WHERE fund_pay_sumamt + psn_cash_pay + acct_pay <> medfee_sumamt",
                "DQ-AMOUNT-ITEMS-SUM": "SELECT s.setl_id FROM exchange.setl s JOIN exchange.setl_item i USING (setl_id)"
                " GROUP BY s.setl_id, s.medfee_sumamt HAVING sum(i.det_item_fee_sumamt) <> s.medfee_sumamt",
                "DQ-AMOUNT-ITEM": "SELECT DISTINCT setl_id FROM exchange.setl_item"
                " WHERE det_item_fee_sumamt <> round(cnt * pric, 2)",
                "DQ-CODESET-MED-TYPE": "SELECT setl_id FROM exchange.setl WHERE med_type IN ('15', '31', '99')",
                "DQ-FORMAT-MED-LIST": "SELECT DISTINCT setl_id FROM exchange.setl_item WHERE med_list_codg LIKE '% %'",
            }
            for kind, query in sql.items():
                found = {row[0] for row in conn.execute(query)}
                expected = by_kind[kind] | (by_kind["DQ-AMOUNT-ITEM"] if kind == "DQ-AMOUNT-ITEMS-SUM" else set())
                assert found == by_kind[kind] or (kind == "DQ-AMOUNT-ITEMS-SUM" and found <= expected), kind
            # Values come back as written: a sample, column by column.
            cols = pgcopy.copy_columns(ds.record_type("setl"), ds)[:-1]
            row = conn.execute(
                f"SELECT {', '.join(cols)} FROM exchange.setl WHERE setl_id = %s", (records[7]["setl_id"],)
            ).fetchone()
            for code, value in zip(cols, row, strict=True):
                kind, want = ds.record_type("setl").element(code).kind, records[7][code]
                if kind == "decimal":
                    assert Decimal(want) == value, code
                elif kind == "datetime":
                    assert want == value.isoformat(sep=" "), code
                else:
                    assert want == (value.isoformat() if kind == "date" else value), code
        plan = run.Plan(seed=4, regions=("440300", "441900"), years=(2024,), per_region_year=800, bad_share=0.02,
                        record_types=TYPES, storable_only=True)  # fmt: skip
        for _ in range(2):  # the second run replaces the first
            with run.piped(psql, "local database") as sink:
                run.ship(run.script(plan, ds=ds, replace=True), sink)
        with psycopg.connect(**conninfo, dbname="exchange") as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM exchange.setl WHERE mdtrtarea_admvs <> '440100'),"
                " (SELECT count(*) FROM exchange.cross_visit), (SELECT count(*) FROM exchange.test_psn),"
                " (SELECT count(*) FROM exchange.cross_visit_inbox)"  # seed data is the province's: uploads only
            ).fetchone()
            assert counts == (1600, 1600, 1600, 0)
        # A failing load says why and loads nothing: here the rows are there already (no --replace).
        with pytest.raises(UserError) as caught, run.piped(psql, "local database") as sink:
            run.ship(run.script(plan, ds=ds), sink)
        assert "duplicate key" in str(caught.value)
        query = [*psql[: psql.index("-v")], "-At", "-c", "SELECT count(*) FROM exchange.test_psn"]
        res = subprocess.run(query, capture_output=True, text=True)
        assert res.stdout.strip() == "1600", res.stderr
        # History that predates the middleware (--no-capture): loaded and replaced with the capture triggers in
        # place, it leaves no change behind, and its items are replaced too.
        with psycopg.connect(**conninfo, dbname="exchange") as conn:
            conn.execute(bookkeeping_ddl(ds))
            conn.commit()
        for _ in range(2):
            with run.piped(psql, "local database") as sink:
                run.ship(run.script(plan, ds=ds, replace=True, capture=False), sink)
        with psycopg.connect(**conninfo, dbname="exchange") as conn:
            assert conn.execute("SELECT count(*) FROM exchange.hipgate_change").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM exchange.setl WHERE mdtrtarea_admvs <> '440100'").fetchone() == (
                1600,
            )
            orphans = "SELECT count(*) FROM exchange.setl_item i LEFT JOIN exchange.setl s USING (setl_id)"
            assert conn.execute(orphans + " WHERE s.setl_id IS NULL").fetchone() == (0,)
