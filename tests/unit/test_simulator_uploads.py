"""History files through the simulator over real HTTPS: start, chunks, resume, complete, every
documented error of 9101-9103, the checksum and reset faults, and the file's records in the ledger
with the same day summary as the source computes."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import json
import ssl
from typing import Any

import pytest

from hipgate.exchange.fingerprint import record_fingerprint, summarise_records
from simulator_helpers import Client, admin, history_file, running, setl_record, signed_client, wait_until

CHUNK = 65536  # the document's smallest chunk_size


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    yield from running(tmp_path_factory.mktemp("sim"), anomaly_share=0.0)


@pytest.fixture
def client(sim: Any) -> Any:
    yield from signed_client(sim)


def records(first: int, n: int) -> list[dict[str, Any]]:
    """Settlements over three days; each item's own code is a hash, so that the file does not compress to
    nothing and spans several chunks."""
    days = ["2024-03-05", "2024-03-06", "2024-07-01"]
    out = [setl_record(i, day=days[i % 3], items=1 + i % 4) for i in range(first, first + n)]
    for r in out:
        for item in r["setl_item"]:
            item["medins_list_codg"] = hashlib.sha256(item["feedetl_sn"].encode()).hexdigest()
    return out


def declare(data: bytes, n_records: int, seq: int = 1, chunk_size: int = CHUNK) -> dict[str, Any]:
    return {
        "file_name": f"setl_440100_2024_{seq:03d}.jsonl.gz", "admdvs": "440100", "year": 2024, "record_type": "setl",
        "file_size": len(data), "file_sha256": hashlib.sha256(data).hexdigest(), "chunk_size": chunk_size,
        "chunk_count": -(-len(data) // chunk_size), "record_count": n_records,
    }  # fmt: skip


def pieces(data: bytes, chunk_size: int = CHUNK) -> list[bytes]:
    return [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)]


def code(reply: Any) -> int:
    assert reply.status == 200, reply.body
    return int(reply.json["infcode"])


def file_row(sim: Any, upload_id: str) -> dict[str, Any]:
    return next(f for f in admin(sim[0], "GET", "/files") if f["upload_id"] == upload_id)


def test_chunked_upload_with_resume(sim: Any, client: Client) -> None:
    recs = records(1, 3000)
    data = history_file(recs)
    chunks = pieces(data)
    assert len(chunks) >= 4, "the file must span several chunks"
    start = client.call("9101", declare(data, len(recs)))
    out = start.json["output"]
    assert (code(start), out["status"], out["confirmed_chunks"], out["file_qry_no"]) == (0, "uploading", [], None)
    upload_id = out["upload_id"]
    for i in (0, 1):
        reply = client.chunk(upload_id, i, chunks[i])
        assert code(reply) == 0
        assert reply.json["output"] == {"upload_id": upload_id, "chunk_index": i,
                                        "chunk_sha256": hashlib.sha256(chunks[i]).hexdigest(),
                                        "received_size": len(chunks[i])}  # fmt: skip
    resumed = client.call("9101", declare(data, len(recs))).json["output"]
    assert (resumed["upload_id"], resumed["confirmed_chunks"]) == (upload_id, [0, 1])
    early = client.call(
        "9103", {"upload_id": upload_id, "file_size": len(data), "file_sha256": declare(data, 1)["file_sha256"]}
    )
    assert code(early) == -1305 and "2" in early.json["err_msg"]
    for i in range(2, len(chunks)):
        assert code(client.chunk(upload_id, i, chunks[i])) == 0
    assert code(client.chunk(upload_id, 1, chunks[1])) == 0  # resent with the same bytes: confirmed again
    sha = hashlib.sha256(data).hexdigest()
    wrong = client.call("9103", {"upload_id": upload_id, "file_size": len(data) + 1, "file_sha256": sha})
    assert code(wrong) == -1302
    done = client.call("9103", {"upload_id": upload_id, "file_size": len(data), "file_sha256": sha})
    assert code(done) == 0
    file_qry_no = done.json["output"]["file_qry_no"]
    assert done.json["output"]["status"] == "complete"
    again = client.call("9103", {"upload_id": upload_id, "file_size": len(data), "file_sha256": sha})
    assert again.json["output"] == done.json["output"]
    restart = client.call("9101", declare(data, len(recs))).json["output"]
    assert (restart["upload_id"], restart["status"], restart["file_qry_no"]) == (upload_id, "complete", file_qry_no)
    assert restart["confirmed_chunks"] == list(range(len(chunks)))
    assert wait_until(lambda: file_row(sim, upload_id)["parse_status"] == "parsed")
    row = file_row(sim, upload_id)
    assert (row["parsed_records"], row["accepted"], row["invalid_lines"]) == (3000, 3000, 0)
    assert (row["file_size"], row["file_sha256"], row["chunk_count"], row["file_qry_no"]) == (
        len(data), sha, len(chunks), file_qry_no,
    )  # fmt: skip
    summary = admin(sim[0], "GET", "/ledger/summary")
    ours = [d.as_dict() for d in summarise_records("setl", recs, "setl_time")]
    assert [d for d in summary["days"] if d["record_type"] == "setl"] == ours
    assert sum(d["count"] for d in ours) == 3000 and len(ours) == 3
    held = admin(sim[0], "GET", "/ledger/records?record_type=setl&day=2024-07-01")
    source = {r["setl_id"]: record_fingerprint(r) for r in recs if r["setl_time"].startswith("2024-07-01")}
    assert {r["key"]["setl_id"]: r["fingerprint"] for r in held} == source


def test_chunk_errors(sim: Any, client: Client) -> None:
    recs = records(5000, 1500)
    data = history_file(recs)
    chunks = pieces(data)
    upload_id = client.call("9101", declare(data, len(recs), seq=2)).json["output"]["upload_id"]
    assert code(client.chunk(upload_id, 0, chunks[0])) == 0
    other = bytes(reversed(chunks[0]))
    assert code(client.chunk(upload_id, 0, other)) == -1307  # confirmed with other bytes
    lying = client.chunk(upload_id, 1, chunks[1], sha256=hashlib.sha256(b"something else").hexdigest())
    assert code(lying) == -1301
    assert code(client.chunk(upload_id, 1, chunks[1][:-1])) == -1304  # wrong size
    assert code(client.chunk(upload_id, len(chunks), chunks[-1])) == -1304  # index out of range
    assert code(client.chunk("U0000000000000000unknown", 0, chunks[0])) == -1303
    params = declare(data, len(recs), seq=2, chunk_size=CHUNK * 2)
    assert code(client.call("9101", params)) == -1306
    params = declare(data, len(recs), seq=2) | {"chunk_count": 99}
    assert code(client.call("9101", params)) == -1
    assert code(client.call("9103", {"upload_id": "U0000000000000000unknown", "file_size": 1,
                                     "file_sha256": "0" * 64})) == -1303  # fmt: skip
    files = {f["upload_id"]: f for f in admin(sim[0], "GET", "/files")}
    assert files[upload_id]["confirmed_chunks"] == 1


def test_chunk_replay_and_headers_validated(sim: Any, client: Client) -> None:
    recs = records(9000, 1200)
    data = history_file(recs)
    chunks = pieces(data)
    upload_id = client.call("9101", declare(data, len(recs), seq=3)).json["output"]["upload_id"]
    path, headers = client.chunk_headers(upload_id, 0, chunks[0])
    first = client.raw(path, chunks[0], headers)
    assert code(first) == 0
    assert client.raw(path, chunks[0], headers).body == first.body  # the same msgid and headers: the same reply
    other_path, _ = client.chunk_headers(upload_id, 1, chunks[1])
    conflict = client.raw(other_path, chunks[1], headers)  # same msgid, other chunk: other canonical bytes
    assert (conflict.status, conflict.json["infcode"]) in ((409, -1201), (401, -1101))
    missing = {k: v for k, v in headers.items() if k != "X-HSA-Cainfo"}
    reply = client.raw(path, chunks[0], missing)
    assert (reply.status, reply.json["infcode"]) == (400, -1001) and "X-HSA-Cainfo" in reply.json["err_msg"]
    reply = client.raw(path, chunks[0], headers | {"X-HSA-Sign": headers["X-HSA-Sign"][:-8] + "AAAAAAA="})
    assert (reply.status, reply.json["infcode"]) == (401, -1101)
    reply = client.raw(path, chunks[0], headers | {"X-HSA-Infno": "9101"})
    assert (reply.status, reply.json["infcode"]) == (400, -1002)


def test_checksum_and_reset_faults_then_recovery(sim: Any, client: Client) -> None:
    simulator, _, cafile = sim
    recs = records(20000, 1500)
    data = history_file(recs)
    chunks = pieces(data)
    upload_id = client.call("9101", declare(data, len(recs), seq=4)).json["output"]["upload_id"]
    fault = admin(simulator, "POST", "/faults", {"kind": "checksum", "infno": "9102", "count": 1})
    assert code(client.chunk(upload_id, 0, chunks[0])) == -1301  # intact bytes, refused once
    assert code(client.chunk(upload_id, 0, chunks[0])) == 0
    reset = admin(simulator, "POST", "/faults", {"kind": "reset", "infno": "9102", "after_bytes": 10000})
    path, headers = client.chunk_headers(upload_id, 1, chunks[1])
    conn = http.client.HTTPSConnection("127.0.0.1", simulator.platform.port, context=ssl.create_default_context(
        cafile=str(cafile)), timeout=10)  # fmt: skip
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError, OSError)):
        conn.request("POST", path, body=chunks[1], headers=headers)
        conn.getresponse().read()
    conn.close()
    assert file_row(sim, upload_id)["confirmed_chunks"] == 1  # nothing confirmed by the broken request
    for i in range(1, len(chunks)):
        assert code(client.chunk(upload_id, i, chunks[i])) == 0
    sha = hashlib.sha256(data).hexdigest()
    admin(simulator, "POST", "/faults", {"kind": "checksum", "infno": "9103"})
    complete = {"upload_id": upload_id, "file_size": len(data), "file_sha256": sha}
    assert code(client.call("9103", complete)) == -1302
    assert code(client.call("9103", complete)) == 0
    faults = {f["id"]: f for f in admin(simulator, "GET", "/faults")}
    assert len(faults[fault["id"]]["fired"]) == 1 and not faults[fault["id"]]["active"]
    assert faults[reset["id"]]["fired"][0]["detail"] == f"connection reset after 10000 of {len(chunks[1])} body bytes"
    assert wait_until(lambda: file_row(sim, upload_id)["parse_status"] == "parsed")
    assert file_row(sim, upload_id)["accepted"] == 1500


def test_bad_lines_and_wrong_count_become_anomalies(sim: Any, client: Client) -> None:
    recs = records(40000, 900)
    bad = dict(recs[5], gend="7")  # not in the code set
    lines = [*recs[:5], bad, *recs[6:]]
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        for r in lines:
            gz.write(json.dumps(r, ensure_ascii=False).encode() + b"\n")
        gz.write(b"{not json}\n")
    data = buf.getvalue()
    upload_id = client.call("9101", declare(data, 900, seq=5)).json["output"]["upload_id"]
    for i, piece in enumerate(pieces(data)):
        assert code(client.chunk(upload_id, i, piece)) == 0
    done = client.call("9103", {"upload_id": upload_id, "file_size": len(data),
                                "file_sha256": hashlib.sha256(data).hexdigest()})  # fmt: skip
    file_qry_no = done.json["output"]["file_qry_no"]
    assert wait_until(lambda: file_row(sim, upload_id)["parse_status"] == "parsed")
    row = file_row(sim, upload_id)
    assert (row["accepted"], row["invalid_lines"]) == (899, 2)
    page = client.call("5401", {"limit": 500}).json["output"]["records"]
    mine = [a for a in page if a["file_qry_no"] == file_qry_no]
    by_type = sorted((a["ano_type"], a["elem_code"] or "") for a in mine)
    assert by_type == [("02", ""), ("02", "gend"), ("09", "")], mine
    gend = next(a for a in mine if a["elem_code"] == "gend")
    assert json.loads(gend["rec_key"]) == {"setl_id": bad["setl_id"]} and "line 6" in gend["ano_dscr"]
