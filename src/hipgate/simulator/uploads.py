"""History files (9101 start or resume, 9102 one chunk, 9103 complete) and reading a completed file
into the ledger.

Chunks stream to disk (uploads/<upload_id>/<index>.chunk, written as a .part file and renamed when its
SHA-256 matched), so no file and no chunk is held in memory. A completed file is read back chunk by
chunk through gzip, line by line (a line is bounded), each record checked against the dataset and
stored like a 4101 record; what is wrong with a line or with the file becomes an anomaly (5401) naming
the file_qry_no. Reading happens after 9103 has answered (the document: "checked afterwards"), in one
background thread; a simulator restarted mid-file reads it again (storing is idempotent by key).
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hipgate.exchange.fingerprint import key_text
from hipgate.simulator import publish
from hipgate.simulator.context import Env, Outcome, now_cst, time_text
from hipgate.simulator.ledger import store_records

MAX_LINE = 64 << 20  # a settlement with 2000 items is well under 2 MiB
BATCH = 200  # records per ledger transaction while reading a file: bounds memory, and how long 4101 waits
BUFFER = 1 << 20


def upload_dir(env: Env, upload_id: str) -> Path:
    return env.uploads_dir / upload_id


def chunk_path(env: Env, upload_id: str, index: int) -> Path:
    return upload_dir(env, upload_id) / f"{index:07d}.chunk"


def expected_size(upload: Mapping[str, Any], index: int) -> int:
    if index < upload["chunk_count"] - 1:
        return int(upload["chunk_size"])
    return int(upload["file_size"]) - int(upload["chunk_size"]) * (int(upload["chunk_count"]) - 1)


def confirmed(conn: sqlite3.Connection, upload_id: str) -> list[int]:
    rows = conn.execute("SELECT chunk_index FROM chunks WHERE upload_id = ? ORDER BY chunk_index", (upload_id,))
    return [r[0] for r in rows]


def _upload_output(conn: sqlite3.Connection, row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "upload_id": row["upload_id"],
        "status": row["status"],
        "confirmed_chunks": confirmed(conn, row["upload_id"]),
        "file_qry_no": row["file_qry_no"],
    }


def start(env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime) -> Outcome:
    """9101: a new upload, the same upload again (resume), or the completed file's file_qry_no."""
    data = envelope["input"]
    if data["chunk_count"] != -(-data["file_size"] // data["chunk_size"]):
        return Outcome.error(
            -1,
            f"分片数应为 ceil(file_size / chunk_size) = {-(-data['file_size'] // data['chunk_size'])}",
            "chunk_count must be ceil(file_size / chunk_size)",
        )
    expected = f"{data['record_type']}_{data['admdvs']}_{data['year']}_"
    if not data["file_name"].startswith(expected):
        return Outcome.error(-1, f"文件名应以 {expected} 开头", f"file_name must start with {expected}")
    if data["admdvs"][:2] != env.config.province[:2]:
        return Outcome.error(-1, "区划不属于本省", f"admdvs {data['admdvs']} is not in province {env.config.province}")
    row = conn.execute("SELECT * FROM files WHERE file_sha256 = ?", (data["file_sha256"],)).fetchone()
    if row is not None:
        declared = {k: row[k] for k in ("file_name", "admdvs", "year", "record_type", "file_size", "chunk_size")}
        declared["chunk_count"], declared["record_count"] = row["chunk_count"], row["declared_records"]
        differ = sorted(k for k, v in declared.items() if data[k] != v)
        if differ:
            return Outcome.error(
                -1306,
                f"与进行中的上传参数不一致：{', '.join(differ)}",
                f"start parameters differ from the upload of this file_sha256: {', '.join(differ)}",
            )
        return Outcome(0, _upload_output(conn, row))
    upload_id = "U" + env.derive("upload", data["file_sha256"])[:31]
    conn.execute(
        "INSERT INTO files (upload_id, file_sha256, sender_code, file_name, admdvs, year, record_type, file_size,"
        " chunk_size, chunk_count, declared_records, status, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " 'uploading', ?)",
        (
            upload_id, data["file_sha256"], envelope["sender_code"], data["file_name"], data["admdvs"], data["year"],
            data["record_type"], data["file_size"], data["chunk_size"], data["chunk_count"], data["record_count"],
            time_text(now),
        ),
    )  # fmt: skip
    upload_dir(env, upload_id).mkdir(parents=True, exist_ok=True)
    return Outcome(0, {"upload_id": upload_id, "status": "uploading", "confirmed_chunks": [], "file_qry_no": None})


def chunk_precheck(conn: sqlite3.Connection, upload_id: str, index: int, sha256: str, size: int) -> Outcome | None:
    """What 9102 answers without reading the chunk: unknown upload (-1303), index or size (-1304), an
    index confirmed with other bytes (-1307); None when the chunk is to be read."""
    row = conn.execute("SELECT * FROM files WHERE upload_id = ?", (upload_id,)).fetchone()
    if row is None:
        return Outcome.error(-1303, f"上传任务 {upload_id} 不存在", f"unknown upload_id {upload_id}")
    if index >= row["chunk_count"]:
        return Outcome.error(
            -1304, f"分片序号 {index} 超出范围（共 {row['chunk_count']} 片）", f"chunk index {index} out of range"
        )
    want = expected_size(row, index)
    if size != want:
        return Outcome.error(
            -1304, f"分片 {index} 应为 {want} 字节，实为 {size}", f"chunk {index} must be {want} bytes, not {size}"
        )
    held = conn.execute(
        "SELECT sha256 FROM chunks WHERE upload_id = ? AND chunk_index = ?", (upload_id, index)
    ).fetchone()
    if held is not None and held["sha256"] != sha256:
        return Outcome.error(
            -1307, f"分片 {index} 已确认且内容不同", f"chunk {index} is already confirmed with other bytes"
        )
    return None


def receive(source: io.BufferedIOBase, target: Path, size: int) -> tuple[str, int]:
    """Stream `size` bytes to `target`, returning their SHA-256 and how many arrived (fewer: the
    connection broke). Memory: one buffer."""
    digest = hashlib.sha256()
    got = 0
    with open(target, "wb") as out:
        while got < size:
            block = source.read(min(BUFFER, size - got))
            if not block:
                break
            digest.update(block)
            out.write(block)
            got += len(block)
    return digest.hexdigest(), got


def confirm_chunk(
    env: Env, conn: sqlite3.Connection, upload_id: str, index: int, sha256: str, size: int, part: Path, now: dt.datetime
) -> Outcome:
    os.replace(part, chunk_path(env, upload_id, index))
    conn.execute(
        "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?)", (upload_id, index, sha256, size, time_text(now))
    )
    return Outcome(0, {"upload_id": upload_id, "chunk_index": index, "chunk_sha256": sha256, "received_size": size})


class Chunks(io.RawIOBase):
    """The confirmed chunks of an upload read one after the other: the file, never in memory whole."""

    def __init__(self, paths: list[Path]) -> None:
        self._paths = iter(paths)
        self._current: io.BufferedReader | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self._current is None:
                nxt = next(self._paths, None)
                if nxt is None:
                    return 0
                self._current = open(nxt, "rb")  # noqa: SIM115 (closed when exhausted or in close())
            n = self._current.readinto(buffer)
            if n:
                return n
            self._current.close()
            self._current = None

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        super().close()


def file_digest(paths: list[Path]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with Chunks(paths) as raw:
        while block := raw.read(BUFFER):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def complete(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, checksum_fault: bool = False
) -> Outcome:
    """9103: every chunk confirmed (-1305), size and SHA-256 as declared and as received (-1302); then
    the file_qry_no, and the file is read afterwards. A completed upload answers the same again."""
    data = envelope["input"]
    row = conn.execute("SELECT * FROM files WHERE upload_id = ?", (data["upload_id"],)).fetchone()
    if row is None:
        return Outcome.error(-1303, f"上传任务 {data['upload_id']} 不存在", f"unknown upload_id {data['upload_id']}")
    result = {
        "upload_id": row["upload_id"],
        "status": "complete",
        "file_qry_no": row["file_qry_no"],
        "file_size": row["file_size"],
        "file_sha256": row["file_sha256"],
    }
    if data["file_size"] != row["file_size"] or data["file_sha256"] != row["file_sha256"]:
        return Outcome.error(-1302, "文件大小或 SHA-256 与开始时登记的不符", "file size or SHA-256 differs from 9101's")
    if row["status"] == "complete":
        return Outcome(0, result)
    missing = sorted(set(range(row["chunk_count"])) - set(confirmed(conn, row["upload_id"])))
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        return Outcome.error(
            -1305, f"尚有 {len(missing)} 个分片未确认：{shown}", f"{len(missing)} chunks unconfirmed: {shown}"
        )
    paths = [chunk_path(env, row["upload_id"], i) for i in range(row["chunk_count"])]
    size, sha256 = file_digest(paths)
    if checksum_fault or size != row["file_size"] or sha256 != row["file_sha256"]:
        return Outcome.error(
            -1302, "收到的文件与登记的大小或 SHA-256 不符", "the file received differs in size or SHA-256"
        )
    file_qry_no = f"FQ{env.config.province[:2]}{now:%Y%m%d}{env.derive('file_qry_no', row['file_sha256'])[:12].upper()}"
    conn.execute(
        "UPDATE files SET status = 'complete', file_qry_no = ?, completed_at = ?, parse_status = 'pending'"
        " WHERE upload_id = ?",
        (file_qry_no, time_text(now), row["upload_id"]),
    )
    env.schedule_parse(row["upload_id"])
    return Outcome(0, {**result, "file_qry_no": file_qry_no})


def _lines(paths: list[Path]) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) of the gzip JSON Lines file; None for a line longer than MAX_LINE (skipped)."""
    with Chunks(paths) as raw, gzip.GzipFile(fileobj=io.BufferedReader(raw, BUFFER)) as text:
        number = 0
        while True:
            line = text.readline(MAX_LINE)
            if not line:
                return
            number += 1
            if not line.endswith(b"\n") and len(line) >= MAX_LINE:
                while (rest := text.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                    pass
                yield number, None
                continue
            if line.strip():
                yield number, line


def parse_file(env: Env, upload_id: str) -> None:
    """Read a completed file into the ledger (see the module's docstring)."""
    with env.ledger.tx() as conn:
        row = conn.execute("SELECT * FROM files WHERE upload_id = ?", (upload_id,)).fetchone()
        if row is None or row["status"] != "complete" or row["parse_status"] == "parsed":
            return
        conn.execute("UPDATE files SET parse_status = 'parsing' WHERE upload_id = ?", (upload_id,))
    record_type, file_qry_no = row["record_type"], row["file_qry_no"]
    rt = env.contract.record_type(record_type)
    counts = {"parsed": 0, "accepted": 0, "duplicate": 0, "rejected": 0, "invalid": 0}
    batch: list[tuple[int, Any]] = []
    paths = [chunk_path(env, upload_id, i) for i in range(row["chunk_count"])]
    error = None

    def flush() -> None:
        # The checks come first, outside the ledger's lock; then one transaction stores the batch's good
        # records at once (store_records) and publishes the anomalies, in the order the lines gave them.
        now = now_cst()
        at = time_text(now)
        lines: list[tuple[dict[str, Any] | None, int | None]] = []  # per line: an anomaly, its good record
        good: list[dict[str, Any]] = []
        for number, record in batch:
            problem = env.contract.record_problem(record_type, record)
            if problem is not None:
                counts["invalid"] += 1
                key = {k: record.get(k) for k in rt.key} if isinstance(record, dict) else {}
                element = problem[0].split(".")[0].split("[")[0]
                lines.append((
                    publish.file_anomaly(
                        env, file_qry_no, f"line {number}", element if re.fullmatch(r"[a-z][a-z0-9_]*", element)
                        else None, problem[1], now, rec_type=record_type,
                        rec_key=key_text(key)[:200] if key and all(isinstance(v, str) for v in key.values())
                        else None,
                        ano_type="01" if "required" in problem[1] or "必填" in problem[1] else "02",
                    ),
                    None,
                ))  # fmt: skip
                continue
            year_element = rt.year
            wrong_year = None
            if year_element and not str(record.get(year_element, "")).startswith(str(row["year"])):
                wrong_year = publish.file_anomaly(
                    env, file_qry_no, f"line {number}", year_element,
                    f"记录年度与文件年度 {row['year']} 不符 / not of the file's year {row['year']}", now,
                    rec_type=record_type, rec_key=key_text({k: record[k] for k in rt.key})[:200],
                    ano_type="04", ano_lv="1",
                )  # fmt: skip
            lines.append((wrong_year, len(good)))
            good.append(record)
        anomalies = []
        with env.ledger.tx() as conn:
            stored_all = store_records(
                conn, record_type, rt.key, rt.year or "updt_time", good, at=at,
                sender_code=row["sender_code"], file_qry_no=file_qry_no,
            )  # fmt: skip
            for anomaly, i in lines:
                if anomaly is not None:
                    anomalies.append(anomaly)
                if i is None:
                    continue
                stored = stored_all[i]
                counts["parsed"] += 1
                counts[stored.result] += 1
                if stored.changed and (
                    anomaly := publish.anomaly_for(
                        env, record_type, good[i], stored.key, now, file_qry_no, rec_key=stored.rec_key
                    )
                ):
                    anomalies.append(anomaly)
            publish.publish_anomalies(env, conn, anomalies, at)
        batch.clear()

    try:
        for number, line in _lines(paths):
            if line is None:
                batch.append((number, None))
            else:
                try:
                    batch.append((number, json.loads(line)))
                except ValueError:
                    batch.append((number, "(not JSON)"))
            if len(batch) >= BATCH:
                flush()
        flush()
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        error = f"不是完整的 gzip 文件 / not a complete gzip file: {exc}"[:500]
        batch.clear()
    now = now_cst()
    with env.ledger.tx() as conn:
        total = counts["parsed"] + counts["invalid"]
        notes = []
        if error:
            notes.append(("file", None, error))
        elif total != row["declared_records"]:
            notes.append(
                ("record_count", None, f"文件有 {total} 条记录，9101 登记为 {row['declared_records']} 条 / the file "
                 f"holds {total} records, 9101 declared {row['declared_records']}")
            )  # fmt: skip
        publish.publish_anomalies(
            env,
            conn,
            [publish.file_anomaly(env, file_qry_no, w, e, r, now, rec_type=record_type, ano_type="09", ano_lv="3")
             for w, e, r in notes],
            time_text(now),
        )  # fmt: skip
        conn.execute(
            "UPDATE files SET parse_status = ?, parsed_records = ?, accepted = ?, duplicates = ?, rejected = ?,"
            " invalid_lines = ?, parse_error = ?, parsed_at = ? WHERE upload_id = ?",
            ("failed" if error else "parsed", counts["parsed"], counts["accepted"], counts["duplicate"],
             counts["rejected"], counts["invalid"], error, time_text(now), upload_id),
        )  # fmt: skip
    if not error and not env.config.keep_files:
        shutil.rmtree(upload_dir(env, upload_id), ignore_errors=True)


def files_listing(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM files ORDER BY started_at, upload_id").fetchall()
    out = []
    for r in rows:
        item = dict(r)
        item["confirmed_chunks"] = len(confirmed(conn, r["upload_id"]))
        out.append(item)
    return out
