"""Downloads (5201 fee-check forms, 5301 cross-province visits of the province's insured, 5401 anomaly
logs), each record stored exactly once.

Per transaction: first a page stored by an earlier run and not yet acknowledged is acknowledged (a crash
between store and ack). Then page by page from the stored cursor: the page's records are stored in the
inbox table (`insert … on conflict do nothing`: a re-served item is stored once) together with the page
row, committed; then acknowledged (5202/5302/5402); only then does the cursor move to the page's
next_cursor, in the same transaction that records the acknowledgement. Each anomaly is also written to
the journal as one structured line (logging to stderr, which systemd sends to the journal).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from hipgate.exchange.dataset import RecordType, inbox_table, mask_record, validate_record
from hipgate.exchange.fingerprint import record_fingerprint
from hipgate.exchange.incremental import Exchange, new_envelope
from hipgate.exchange.interface import operation_for
from hipgate.exchange.ledger import bump, failure, ident, key_of, quarantine
from hipgate.exchange.platform_client import Reply, Unreachable

log = logging.getLogger("hipgate.exchange.downloads")
anomaly_log = logging.getLogger("hipgate.exchange.anomaly")
PAGE = 500
LOCK_ID = 0x68670002


@dataclass
class DownloadResult:
    pages: int = 0
    stored: int = 0  # new records in the inbox tables
    repeated: int = 0  # records served again (already stored)
    acknowledged: int = 0
    quarantined: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 3 if self.errors else 0


def _ok(reply: Reply) -> bool:
    return reply.relay == "forwarded" and reply.status == 200 and reply.infcode == 0


def _ack_infno(ex: Exchange, rt: RecordType) -> str:
    return operation_for(ex.iface, "ack", rt.code).infno


def store_page(ex: Exchange, infno: str, rt: RecordType, cursor: str | None, msgid: str, output: dict[str, Any],
               result: DownloadResult) -> list[dict[str, Any]]:  # fmt: skip
    """The page's records and its page row in one transaction; returns the anomalies newly stored."""
    conn, t = ex.conn, ex.t(inbox_table(rt))
    keys, fresh = [], []
    for record in output.get("records") or []:
        violations = validate_record(rt, record, ex.ds)
        if violations:  # never stored as if valid; not acknowledged, so the platform sees it was not taken
            quarantine(conn, ex.schema, rt, record, record_fingerprint(record), violations, source="download")
            result.quarantined += 1
            continue
        row = {el.code: record.get(el.code) for el in rt.elements}
        cols = ", ".join(ident(c) for c in (*row, "hg_msgid"))
        marks = ", ".join(["%s"] * (len(row) + 1))
        cur = conn.execute(f"INSERT INTO {t} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING", [*row.values(), msgid])
        keys.append(key_of(rt, record))
        if cur.rowcount == 1:
            fresh.append(record)
        else:
            result.repeated += 1
    ack = new_envelope(ex, _ack_infno(ex, rt), {"keys": keys}) if keys else None
    conn.execute(
        f"INSERT INTO {ex.t('hipgate_download_page')}"
        " (msgid, infno, record_type, cursor, next_cursor, record_keys, ack_envelope, acked_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN NULL ELSE now() END)",
        (msgid, infno, rt.code, cursor, output.get("next_cursor"), Jsonb(keys), Jsonb(ack) if ack else None, bool(ack)),
    )
    bump(conn, ex.schema, "downloaded", rt.code, len(fresh))
    if rt.code == "anomaly":
        bump(conn, ex.schema, "anomalies", rt.code, len(fresh))
    if not ack:  # nothing to acknowledge: the cursor moves with the page
        _advance(ex, infno, rt, output.get("next_cursor"))
    conn.commit()
    result.stored += len(fresh)
    return fresh if rt.code == "anomaly" else []


def _advance(ex: Exchange, infno: str, rt: RecordType, cursor: str | None) -> None:
    if cursor is None:
        return
    ex.conn.execute(
        f"INSERT INTO {ex.t('hipgate_download_cursor')} (infno, record_type, cursor) VALUES (%s, %s, %s)"
        " ON CONFLICT (infno) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
        (infno, rt.code, cursor),
    )


def acknowledge(ex: Exchange, page_msgid: str, result: DownloadResult) -> bool:
    """Send a stored page's acknowledgement (same msgid on every retry), then record it and move the cursor."""
    conn = ex.conn
    infno, code, next_cursor, ack = conn.execute(
        f"SELECT infno, record_type, next_cursor, ack_envelope FROM {ex.t('hipgate_download_page')} WHERE msgid = %s",
        (page_msgid,),
    ).fetchone()  # type: ignore[misc]
    conn.commit()
    rt = ex.ds.record_type(code)
    reply = ex.client.call(ack["infno"], ack)
    ex.point("acked")
    if not _ok(reply):
        text = f"{ack['infno']} {ack['msgid']}: {reply.error_text()}"
        result.errors.append(text)
        failure(conn, ex.schema, "downloads", text, code, ack["infno"], ack["msgid"])
        conn.commit()
        return False
    keys = [r["key"] for r in reply.output.get("results", []) if r.get("result") != "unknown"]
    t = ex.t(inbox_table(rt))
    where = " AND ".join(f"{ident(c)} = (k.v->>'{c}')" for c in rt.key)
    conn.execute(
        f"UPDATE {t} SET hg_acked_at = coalesce(hg_acked_at, now())"
        f" FROM jsonb_array_elements(%s::jsonb) k(v) WHERE {where}",
        (Jsonb(keys),),
    )
    conn.execute(f"UPDATE {ex.t('hipgate_download_page')} SET acked_at = now() WHERE msgid = %s", (page_msgid,))
    _advance(ex, infno, rt, next_cursor)
    bump(conn, ex.schema, "acknowledged", code, len(keys))
    conn.commit()
    result.acknowledged += len(keys)
    return True


def journal_anomaly(record: dict[str, Any], rt: RecordType) -> None:
    """One structured line per anomaly (JSON after a fixed prefix), personal data masked."""
    anomaly_log.warning("hipgate-anomaly %s", json.dumps({"event": "anomaly", **mask_record(rt, record)},
                                                          ensure_ascii=False, sort_keys=True))  # fmt: skip


def download(ex: Exchange, rt: RecordType, result: DownloadResult, limit: int = PAGE) -> None:
    infno = operation_for(ex.iface, "download", rt.code).infno
    t_page = ex.t("hipgate_download_page")
    for (msgid,) in ex.conn.execute(
        f"SELECT msgid FROM {t_page} WHERE infno = %s AND acked_at IS NULL ORDER BY stored_at", (infno,)
    ).fetchall():
        if not acknowledge(ex, msgid, result):
            return
    while True:
        row = ex.conn.execute(
            f"SELECT cursor FROM {ex.t('hipgate_download_cursor')} WHERE infno = %s", (infno,)
        ).fetchone()
        cursor = row[0] if row else None
        ex.conn.commit()
        data: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        envelope = new_envelope(ex, infno, data)
        reply = ex.client.call(infno, envelope)
        if not _ok(reply):
            text = f"{infno} {envelope['msgid']}: {reply.error_text()}"
            result.errors.append(text)
            failure(ex.conn, ex.schema, "downloads", text, rt.code, infno, envelope["msgid"])
            ex.conn.commit()
            return
        output = reply.output
        anomalies = store_page(ex, infno, rt, cursor, envelope["msgid"], output, result)
        result.pages += 1
        for record in anomalies:
            journal_anomaly(record, rt)
        ex.point("stored")
        if output.get("records") and not acknowledge(ex, envelope["msgid"], result):
            return
        if not output.get("more"):
            return


def run(ex: Exchange, limit: int = PAGE) -> DownloadResult:
    """Every download transaction of the document, each to the end. Unreachable propagates."""
    result = DownloadResult()
    (locked,) = ex.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()  # type: ignore[misc]
    ex.conn.commit()
    if not locked:
        result.errors.append("another download run holds the lock / 另一下载任务正在运行")
        return result
    try:
        for op in ex.iface.operations.values():
            if op.action == "download":
                for code in op.record_types:
                    try:
                        download(ex, ex.ds.records[code], result, limit)
                    except Unreachable as exc:
                        ex.conn.rollback()
                        failure(ex.conn, ex.schema, "downloads", str(exc), code, op.infno)
                        ex.conn.commit()
                        raise
    finally:
        ex.conn.rollback()
        ex.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
        ex.conn.commit()
    return result
