"""History export and upload against the real simulator through the relay: the file format and manifest,
an upload interrupted mid-file and resumed from the platform's confirmed chunks, and a completed file
never sent again."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import psycopg
import pytest
from helpers_mw import insert_setl, platform_summary, source_summary

from hipgate.exchange import history, source
from hipgate.exchange.dataset import validate_record
from simulator_helpers import setl_record

CHUNK = 64 << 10
COUNT = 2400


class Crash(Exception):
    pass


@pytest.fixture
def filled(exchange_db):
    with psycopg.connect(exchange_db) as conn:
        for n in range(1, COUNT + 1):
            # A name that varies, so that the file does not compress to a single chunk.
            noise = hashlib.sha512(str(n).encode()).hexdigest()
            record = setl_record(n, day=f"2023-0{1 + n % 9}-1{n % 10}")
            insert_setl(conn, record | {"fixmedins_name": "医院" + noise[:100], "dise_name": noise[100:]})
        insert_setl(conn, setl_record(COUNT + 1, day="2024-01-01"))  # another year
        insert_setl(conn, setl_record(COUNT + 2, division="440306") | {"gend": "7"})  # bad, 2024
        insert_setl(conn, setl_record(COUNT + 3, day="2023-05-05") | {"gend": "7"})  # bad, exported year
    return exchange_db


def _ex(stack, conninfo, ds, iface, crash=None):
    return stack.exchange(conninfo, ds, iface, crash=crash)


def test_export_writes_the_documented_files_and_manifest(stack, filled, ds, iface, tmp_path: Path) -> None:
    ex = _ex(stack, filled, ds, iface)
    result = history.export(ex, "440106", 2023, tmp_path / "out", chunk_size=CHUNK, max_records=1500)
    names = [f["file_name"] for f in result.files]
    assert names == ["setl_440106_2023_001.jsonl.gz", "setl_440106_2023_002.jsonl.gz"]
    assert result.quarantined == 1 and sum(f["record_count"] for f in result.files) == COUNT
    for f in result.files:
        path = tmp_path / "out" / f["file_name"]
        data = path.read_bytes()
        assert f["file_size"] == len(data) and f["file_sha256"] == hashlib.sha256(data).hexdigest()
        assert sum(c["size"] for c in f["chunks"]) == len(data) and f["chunk_count"] == len(f["chunks"])
        for c in f["chunks"]:
            assert hashlib.sha256(data[c["offset"] : c["offset"] + c["size"]]).hexdigest() == c["sha256"]
        lines = gzip.decompress(data).decode().splitlines()
        assert len(lines) == f["record_count"]
        records = [json.loads(line) for line in lines]
        assert all(validate_record("setl", r, ds) == [] for r in records)
        assert all(r["setl_time"].startswith("2023") and r["mdtrtarea_admvs"] == "440106" for r in records)
        assert json.loads((tmp_path / "out" / (f["file_name"] + ".manifest.json")).read_text()) == f
    again = history.export(ex, "440106", 2023, tmp_path / "again", chunk_size=CHUNK, max_records=1500)
    assert [f["file_sha256"] for f in again.files] == [f["file_sha256"] for f in result.files]  # reproducible
    ex.conn.close()


def test_upload_resumes_from_the_confirmed_chunks_and_never_resends(stack, filled, ds, iface, tmp_path) -> None:
    ex = _ex(stack, filled, ds, iface)
    made = history.export(ex, "440106", 2023, tmp_path, chunk_size=CHUNK)
    (f,) = made.files
    assert f["chunk_count"] >= 3
    sent = []

    def crash(point: str) -> None:
        if point == "chunk":
            sent.append(1)
            if len(sent) == 2:
                raise Crash("after two chunks")

    ex.crash = crash
    with pytest.raises(Crash):
        history.upload(ex, "440106", 2023)
    ex.crash = None
    seen = []
    resumed = history.upload(ex, "440106", 2023, progress=seen.append)
    assert resumed.errors == [] and resumed.completed == [f["file_name"]]
    assert resumed.chunks_sent == f["chunk_count"] - 2  # only what the platform had not confirmed
    chunk_requests = [r for r in stack.sim.requests() if r["infno"] == "9102"]
    assert len(chunk_requests) == f["chunk_count"]
    assert seen[-1].bytes_done == seen[-1].bytes_total == f["file_size"] and seen[0].bytes_done > 2 * CHUNK - 1
    with psycopg.connect(filled) as conn:
        (qry,) = conn.execute("SELECT file_qry_no FROM exchange.hipgate_history_file").fetchone()
    assert qry
    assert history.upload(ex, "440106", 2023).skipped == [f["file_name"]]  # the bookkeeping says complete
    with psycopg.connect(filled) as conn:  # even if the bookkeeping forgot: 9101 says complete
        conn.execute("UPDATE exchange.hipgate_history_file SET status = 'exported', file_qry_no = NULL")
    forgot = history.upload(ex, "440106", 2023)
    assert forgot.skipped == [f["file_name"]] and forgot.chunks_sent == 0
    assert len([r for r in stack.sim.requests() if r["infno"] == "9102"]) == f["chunk_count"]
    assert stack.sim.wait_files(60)
    ex.conn.close()
    expected = [d for d in source_summary(filled, ds, exclude={setl_record(COUNT + 3)["setl_id"]})
                if d["day"].startswith("2023")]  # fmt: skip
    assert platform_summary(stack.sim) == expected
    # The middleware's own account of what the platform should hold (`run source-summary`) agrees.
    ex = _ex(stack, filled, ds, iface)
    assert source.source_summary(ex, "440106", 2023)["days"] == expected
    ex.conn.close()
