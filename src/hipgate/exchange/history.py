"""History files (9101-9103): a region-year of each upload record type exported to gzip JSON Lines exactly
as the interface document specifies, with a manifest, then uploaded chunk by chunk.

`export` streams rows through server-side cursors (one REPEATABLE READ snapshot for records and items),
so memory stays constant whatever the year holds; every record is checked against the dataset and a bad
one is quarantined, never written. Files are `{record_type}_{admdvs}_{year}_{nnn}.jsonl.gz`, split after
`max_records`; gzip's mtime is 0, so the same rows make the same bytes and hash.

`upload` asks 9101 first: the platform's confirmed chunks decide what is sent after an interruption, and
a file it reports complete is never sent again (nor one the bookkeeping holds as complete). Each chunk is
streamed from disk (9102); 9103 completes the file, whose returned size and hash must be the manifest's.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hipgate.exchange.dataset import RecordType, serialise_record, validate_record
from hipgate.exchange.fingerprint import record_fingerprint
from hipgate.exchange.incremental import Exchange, new_envelope
from hipgate.exchange.interface import operation_for
from hipgate.exchange.ledger import bump, failure, ident, quarantine
from hipgate.exchange.platform_client import Unreachable

log = logging.getLogger("hipgate.exchange.history")
DEFAULT_CHUNK = 4 << 20
MIN_CHUNK, MAX_CHUNK = 64 << 10, 16 << 20  # the document's bounds of chunk_size
MAX_RECORDS = 1_000_000
CHUNK_RETRIES = 3
FETCH = 2000


@dataclass(frozen=True)
class Progress:
    records_done: int
    records_total: int
    bytes_done: int
    bytes_total: int
    rate: float  # bytes per second this run
    eta: float | None  # seconds


@dataclass
class HistoryResult:
    files: list[dict[str, Any]] = field(default_factory=list)
    quarantined: int = 0
    chunks_sent: int = 0
    completed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 3 if self.errors else 0


def file_name(rt: RecordType, region: str, year: int, seq: int) -> str:
    return f"{rt.code}_{region}_{year}_{seq:03d}.jsonl.gz"


def history_types(ex: Exchange) -> list[RecordType]:
    return [ex.ds.records[c] for c in operation_for(ex.iface, "history_start").record_types]


def region_year_records(ex: Exchange, rt: RecordType, region: str | None, year: int | None) -> Iterator[dict[str, Any]]:
    """The region-year's records in wire form, key order, items merged in from a second cursor (region and
    year None: every record of the type)."""
    conds: list[str] = []
    bounds: tuple[Any, ...] = ()
    if region is not None:
        conds.append(f"{{p}}{ident(rt.region or '')} = %s")
        bounds += (region,)
    if year is not None:
        conds.append(f"{{p}}{ident(rt.year or '')} >= %s AND {{p}}{ident(rt.year or '')} < %s")
        bounds += (f"{year}-01-01", f"{year + 1}-01-01")
    where = " AND ".join(conds).replace("{p}", "") or "TRUE"
    pwhere = " AND ".join(conds).replace("{p}", "p.") or "TRUE"
    order = ", ".join(ident(c) for c in rt.key)
    parents = ex.conn.cursor(name=f"hg_hist_{rt.code}", row_factory=dict_row)
    parents.itersize = FETCH
    parents.execute(f"SELECT * FROM {ex.t(rt.code)} WHERE {where} ORDER BY {order}", bounds)
    items_iter: Iterator[dict[str, Any]] = iter(())
    if rt.items is not None:
        join = " AND ".join(f"p.{ident(c)} = i.{ident(c)}" for c in rt.key)
        item_order = ", ".join(f"i.{ident(c)}" for c in (*rt.key, *rt.items.key))
        items = ex.conn.cursor(name=f"hg_hist_{rt.items.code}", row_factory=dict_row)
        items.itersize = FETCH
        items.execute(
            f"SELECT i.* FROM {ex.t(rt.items.code)} i JOIN {ex.t(rt.code)} p ON {join} WHERE {pwhere}"
            f" ORDER BY {item_order}",
            bounds,
        )
        items_iter = iter(items)
    pending: dict[str, Any] | None = next(items_iter, None)
    try:
        for row in parents:
            key = tuple(row[c] for c in rt.key)
            children = []
            while pending is not None and tuple(pending[c] for c in rt.key) == key:
                children.append(pending)
                pending = next(items_iter, None)
            yield serialise_record(rt, row, children if rt.items is not None else None)
    finally:
        parents.close()
        if rt.items is not None:
            items.close()


def _digest(path: Path, chunk_size: int) -> tuple[int, str, list[dict[str, Any]]]:
    """Size, SHA-256 and per-chunk SHA-256 of a file, reading one chunk at a time."""
    whole, chunks, offset = hashlib.sha256(), [], 0
    with path.open("rb") as fh:
        while piece := fh.read(chunk_size):
            whole.update(piece)
            chunks.append({"index": len(chunks), "offset": offset, "size": len(piece),
                           "sha256": hashlib.sha256(piece).hexdigest()})  # fmt: skip
            offset += len(piece)
    return offset, whole.hexdigest(), chunks


def _finish_file(ex: Exchange, rt: RecordType, region: str, year: int, path: Path, count: int,
                 chunk_size: int) -> dict[str, Any]:  # fmt: skip
    size, sha, chunks = _digest(path, chunk_size)
    manifest = {
        "file_name": path.name, "record_type": rt.code, "admdvs": region, "year": year, "record_count": count,
        "file_size": size, "file_sha256": sha, "chunk_size": chunk_size, "chunk_count": len(chunks),
        "chunks": chunks,
    }  # fmt: skip
    path.with_name(path.name + ".manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    ex.conn.execute(
        f"INSERT INTO {ex.t('hipgate_history_file')} (file_name, record_type, admdvs, year, path, record_count,"
        " file_size, file_sha256, chunk_size, chunk_count, manifest)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (path.name, rt.code, region, year, str(path), count, size, sha, chunk_size, len(chunks), Jsonb(manifest)),
    )
    with ex.conn.cursor() as cur:
        cur.executemany(
            f'INSERT INTO {ex.t("hipgate_history_chunk")} (file_name, chunk_index, "offset", size, sha256)'
            " VALUES (%s, %s, %s, %s, %s)",
            [(path.name, c["index"], c["offset"], c["size"], c["sha256"]) for c in chunks],
        )
    return manifest


def export(ex: Exchange, region: str, year: int, directory: Path, chunk_size: int = DEFAULT_CHUNK,
           max_records: int = MAX_RECORDS) -> HistoryResult:  # fmt: skip
    """Export the region-year (see the module's docstring); a record type already uploaded is skipped."""
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must be {MIN_CHUNK}-{MAX_CHUNK} bytes (the interface document's bounds)")
    directory.mkdir(parents=True, exist_ok=True)
    result = HistoryResult()
    conn = ex.conn
    for rt in history_types(ex):
        conn.commit()
        done = conn.execute(
            f"SELECT file_name FROM {ex.t('hipgate_history_file')}"
            " WHERE record_type = %s AND admdvs = %s AND year = %s AND status <> 'exported'",
            (rt.code, region, year),
        ).fetchall()
        if done:  # uploading or complete: its files are the ones on the platform, never made anew
            result.skipped += [d[0] for d in done]
            continue
        conn.commit()
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # records and items: one snapshot
        conn.execute(
            f"DELETE FROM {ex.t('hipgate_history_file')} WHERE record_type = %s AND admdvs = %s AND year = %s",
            (rt.code, region, year),
        )
        seq, count, out, path = 0, 0, None, None
        for record in region_year_records(ex, rt, region, year):
            violations = validate_record(rt, record, ex.ds)
            if violations:
                quarantine(conn, ex.schema, rt, record, record_fingerprint(record), violations, source="history")
                bump(conn, ex.schema, "quarantined", rt.code)
                result.quarantined += 1
                continue
            if out is None or count >= max_records:
                if out is not None and path is not None:
                    out.close()
                    result.files.append(_finish_file(ex, rt, region, year, _publish(path), count, chunk_size))
                seq, count = seq + 1, 0
                path = directory / (file_name(rt, region, year, seq) + ".part")
                out = gzip.GzipFile(filename="", mode="wb", fileobj=path.open("wb"), mtime=0)
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
            count += 1
        if out is not None and path is not None:
            out.close()
            result.files.append(_finish_file(ex, rt, region, year, _publish(path), count, chunk_size))
        conn.commit()
    return result


def _publish(part: Path) -> Path:
    """The finished file under its real name (a crash mid-export leaves only a .part)."""
    fileobj_path = part.with_suffix("")  # drop ".part"
    os.replace(part, fileobj_path)
    return fileobj_path


# ---------------------------------------------------------------- upload


def _ok(reply: Any) -> bool:
    return reply.relay == "forwarded" and reply.status == 200 and reply.infcode == 0


class _Meter:
    def __init__(self, total_bytes: int, total_records: int, done: int, callback: Callable[[Progress], None] | None):
        self.total, self.records, self.done, self.callback = total_bytes, total_records, done, callback
        self.start, self.sent = time.monotonic(), 0

    def add(self, n: int) -> None:
        self.done += n
        self.sent += n
        if self.callback is None:
            return
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.sent / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else None
        records = int(self.records * self.done / self.total) if self.total else 0
        self.callback(Progress(records, self.records, self.done, self.total, rate, eta))


def _start(ex: Exchange, f: dict[str, Any]) -> Any:
    data = {k: f[k] for k in ("file_name", "admdvs", "year", "record_type", "file_size", "file_sha256",
                              "chunk_size", "chunk_count", "record_count")}  # fmt: skip
    return ex.client.call("9101", new_envelope(ex, "9101", data))


def _error(ex: Exchange, result: HistoryResult, text: str, infno: str | None, f: dict[str, Any]) -> None:
    """A file's upload stopped: the run's error and a failure row."""
    result.errors.append(text)
    ex.conn.rollback()
    failure(ex.conn, ex.schema, "history", text, f["record_type"], infno)
    ex.conn.commit()


def _complete(ex: Exchange, name: str, file_qry_no: str) -> None:
    ex.conn.execute(
        f"UPDATE {ex.t('hipgate_history_file')} SET status = 'complete', file_qry_no = %s, completed_at = now()"
        " WHERE file_name = %s",
        (file_qry_no, name),
    )
    bump(ex.conn, ex.schema, "files", "")
    ex.conn.commit()


def upload_file(ex: Exchange, f: dict[str, Any], meter: _Meter, result: HistoryResult) -> None:
    name, path = f["file_name"], Path(f["path"])
    size, sha, _ = _digest(path, f["chunk_size"])
    if (size, sha) != (f["file_size"], f["file_sha256"]):
        _error(ex, result, f"{name}: the file on disk is not the exported one / 磁盘上的文件与导出时不同", None, f)
        return
    for _round in range(2):  # a second 9101 when 9103 says chunks are missing (-1305)
        reply = _start(ex, f)
        if not _ok(reply):
            _error(ex, result, f"9101 {name}: {reply.error_text()}", "9101", f)
            return
        out = reply.output
        if out["status"] == "complete":  # the platform has it: never sent again
            _complete(ex, name, out["file_qry_no"])
            result.skipped.append(name)
            return
        confirmed = set(out["confirmed_chunks"])
        ex.conn.execute(
            f"UPDATE {ex.t('hipgate_history_file')} SET status = 'uploading', upload_id = %s WHERE file_name = %s",
            (out["upload_id"], name),
        )
        ex.conn.execute(
            f"UPDATE {ex.t('hipgate_history_chunk')} SET confirmed_at ="
            " CASE WHEN chunk_index = ANY(%s) THEN coalesce(confirmed_at, now()) END WHERE file_name = %s",
            (list(confirmed), name),
        )
        ex.conn.commit()
        chunks = ex.conn.execute(
            f'SELECT chunk_index, "offset", size, sha256 FROM {ex.t("hipgate_history_chunk")}'
            " WHERE file_name = %s AND confirmed_at IS NULL ORDER BY chunk_index",
            (name,),
        ).fetchall()
        ex.conn.commit()
        with path.open("rb") as fh:
            for index, offset, csize, csha in chunks:
                if not _send_chunk(ex, out["upload_id"], index, offset, csize, csha, fh, f, result):
                    return
                meter.add(csize)
                ex.point("chunk")
        done = ex.client.call("9103", new_envelope(ex, "9103", {"upload_id": out["upload_id"], "file_size": size,
                                                                  "file_sha256": sha}))  # fmt: skip
        if done.infcode == -1305:
            continue
        if not _ok(done):
            _error(ex, result, f"9103 {name}: {done.error_text()}", "9103", f)
            return
        got = done.output
        if (got["file_size"], got["file_sha256"]) != (size, sha):
            text = f"9103 {name}: the platform holds another size or hash / 平台返回的大小或哈希不符"
            _error(ex, result, text, "9103", f)
            return
        _complete(ex, name, got["file_qry_no"])
        result.completed.append(name)
        return
    _error(ex, result, f"{name}: chunks still missing after a second 9101 / 两次续传后仍有分片未确认", "9101", f)


def _send_chunk(ex: Exchange, upload_id: str, index: int, offset: int, size: int, sha: str, fh: Any,
                f: dict[str, Any], result: HistoryResult) -> bool:  # fmt: skip
    name = f["file_name"]
    for _attempt in range(CHUNK_RETRIES):
        envelope = new_envelope(ex, "9102", {"upload_id": upload_id, "chunk_index": index, "chunk_sha256": sha})
        reply = ex.client.send_chunk(ex.iface, envelope, fh, offset, size)
        if reply.infcode == -1301:  # checksum mismatch in transit: send the chunk again
            continue
        if not _ok(reply) or reply.output.get("chunk_sha256") != sha or reply.output.get("received_size") != size:
            _error(ex, result, f"9102 {name}#{index}: {reply.error_text()}", "9102", f)
            return False
        ex.conn.execute(
            f"UPDATE {ex.t('hipgate_history_chunk')} SET confirmed_at = now()"
            " WHERE file_name = %s AND chunk_index = %s",
            (name, index),
        )
        bump(ex.conn, ex.schema, "chunks", "")
        ex.conn.commit()
        result.chunks_sent += 1
        return True
    _error(ex, result, f"9102 {name}#{index}: checksum refused {CHUNK_RETRIES} times / 分片校验多次失败", "9102", f)
    return False


def upload(ex: Exchange, region: str, year: int, progress: Callable[[Progress], None] | None = None) -> HistoryResult:
    """Upload the exported files of the region-year that are not complete. Unreachable propagates."""
    result = HistoryResult()
    with ex.conn.cursor(row_factory=dict_row) as cur:
        files = cur.execute(
            f"SELECT * FROM {ex.t('hipgate_history_file')} WHERE admdvs = %s AND year = %s ORDER BY file_name",
            (region, year),
        ).fetchall()
        done = cur.execute(
            f"SELECT coalesce(sum(c.size), 0) AS n FROM {ex.t('hipgate_history_chunk')} c"
            f" JOIN {ex.t('hipgate_history_file')} f USING (file_name)"
            " WHERE f.admdvs = %s AND f.year = %s AND (c.confirmed_at IS NOT NULL OR f.status = 'complete')",
            (region, year),
        ).fetchone()
    ex.conn.commit()
    meter = _Meter(sum(f["file_size"] for f in files), sum(f["record_count"] for f in files), int(done["n"]), progress)
    for f in files:
        if f["status"] == "complete":
            result.skipped.append(f["file_name"])
            continue
        try:
            upload_file(ex, f, meter, result)
        except Unreachable as exc:
            ex.conn.rollback()
            failure(ex.conn, ex.schema, "history", f"{f['file_name']}: {exc}", f["record_type"])
            ex.conn.commit()
            raise
    return result
