"""The incremental upload (4101): what the province changed since the last run, sent exactly once.

One run:
1. **Capture** (one transaction per record type): read the changes of finished transactions past the
   watermark (below the xmin horizon, `pg_snapshot_xmin(pg_current_snapshot())`), load the current rows
   with their items, check each against the dataset and the interface document; a bad record goes to the
   quarantine with its reasons and is never sent; an unchanged version (same fingerprint as the one the
   platform holds or one already queued) is skipped; the rest is batched (≤ 500) into the outbox, each
   batch with a fresh msgid; the watermark moves to the horizon; commit — before anything is sent.
2. **Send** every pending outbox message, oldest first, with its stored msgid and envelope (a crash
   anywhere before the acknowledgement is recorded means the same message is resent, and the platform
   answers a message it processed with its original reply); the per-record results and the ack are
   recorded in one transaction.

A run that cannot reach the platform leaves everything pending and ends with `Unreachable`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from hipgate.exchange.dataset import Dataset, RecordType, column_type, serialise_record, validate_record
from hipgate.exchange.fingerprint import key_text, record_day, record_fingerprint
from hipgate.exchange.interface import (
    Interface,
    build_envelope,
    new_msgid,
    operation_for,
    split_items,
    validate_request,
)
from hipgate.exchange.ledger import bump, failure, ident, merge_violations, quarantine, table
from hipgate.exchange.platform_client import RelayClient, Reply, Unreachable
from hipgate.exchange.violations import Violation

log = logging.getLogger("hipgate.exchange.incremental")
MAX_BATCH = 500
CLOCK_INFCODE = -1103  # inf_time too far off: the platform did not process it (HTTP 401)
LOCK_ID = 0x68670001  # pg advisory lock: one incremental run at a time
# Placeholders for checking one record through the document's request schema (the relay fills them in).
_CHECK_SIGNER = {"signtype": "SM2", "cainfo": "00", "sign": "AAAAAAAAAAAA"}


@dataclass
class Exchange:
    """What a run works with."""

    conn: psycopg.Connection[Any]
    client: RelayClient
    ds: Dataset
    iface: Interface
    sender_code: str
    schema: str = "exchange"
    batch_size: int = MAX_BATCH
    # Test hook: called at "outbox_stored" (after capture committed) and "sent" (reply in hand, not yet
    # recorded); raising there is a crash at that point.
    crash: Callable[[str], None] | None = None

    def t(self, name: str) -> str:
        return table(self.schema, name)

    def point(self, name: str) -> None:
        if self.crash is not None:
            self.crash(name)


@dataclass
class RunResult:
    queued: int = 0  # records put into the outbox this run
    messages: int = 0  # messages acknowledged this run
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    quarantined: int = 0
    unchanged: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 3 if self.errors else 0


def unsigned(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope as the middleware keeps and sends it: signtype, cainfo and sign are the relay's."""
    return {k: v for k, v in envelope.items() if k not in ("signtype", "cainfo", "sign")}


def new_envelope(ex: Exchange, infno: str, data: Mapping[str, Any]) -> dict[str, Any]:
    return unsigned(build_envelope(infno, data, sender_code=ex.sender_code, cainfo="00",
                                   msgid=new_msgid(ex.sender_code)))  # fmt: skip


def record_violations(ex: Exchange, rt: RecordType, infno: str, record: Mapping[str, Any]) -> list[Violation]:
    """Everything the dataset and the interface document find wrong with one record (paths as in the
    dataset: `setl_item[2].cnt`)."""
    return batch_violations(ex, rt, infno, [record])[0]


def batch_violations(
    ex: Exchange, rt: RecordType, infno: str, records: Sequence[Mapping[str, Any]]
) -> list[list[Violation]]:
    """record_violations of each record, in order. The document sees each run of up to MAX_BATCH records
    (its maxItems) once, as one request: a request's fixed cost (the envelope, openapi-core finding the
    operation, the body's JSON) is paid per batch, not per record. Each record's violations are its own,
    named as if it had been checked alone, so a bad record quarantines nothing else of its batch."""
    out: list[list[Violation]] = []
    prefix = "input.records[0]."
    for start in range(0, len(records), MAX_BATCH):
        batch = list(records[start : start + MAX_BATCH])
        envelope = {
            **build_envelope(infno, {"record_type": rt.code, "records": batch}, sender_code=ex.sender_code,
                             cainfo="00", msgid=f"{ex.sender_code}20240101000000000000"),
            **_CHECK_SIGNER,
        }  # fmt: skip
        per_record = split_items(validate_request(ex.iface, infno, envelope), "input.records", len(batch))
        for record, found in zip(batch, per_record, strict=True):
            doc = [
                Violation(v.path.removeprefix(prefix), v.rule, v.zh, v.en)
                for v in found
                if v.path.startswith(prefix) or v.path == "input.records[0]"
            ]
            out.append(merge_violations(validate_record(rt, record, ex.ds), doc))
    return out


# ---------------------------------------------------------------- capture


def _join(rt: RecordType, alias: str) -> str:
    return " AND ".join(f"{alias}.{ident(c)} = (k.v->>{_lit(c)})::{column_type(rt.element(c))}" for c in rt.key)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_records(ex: Exchange, rt: RecordType, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The current rows for these keys in wire form (with items); keys whose row is gone are left out."""
    if not keys:
        return []
    with ex.conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT t.* FROM {ex.t(rt.code)} t JOIN jsonb_array_elements(%s::jsonb) k(v) ON {_join(rt, 't')}",
            (Jsonb(keys),),
        )
        rows = cur.fetchall()
        items: dict[str, list[dict[str, Any]]] = {}
        if rt.items is not None:
            order = ", ".join(f"i.{ident(c)}" for c in (*rt.key, *rt.items.key))
            cur.execute(
                f"SELECT i.* FROM {ex.t(rt.items.code)} i JOIN jsonb_array_elements(%s::jsonb) k(v)"
                f" ON {_join(rt, 'i')} ORDER BY {order}",
                (Jsonb(keys),),
            )
            for item in cur.fetchall():
                items.setdefault(key_text({c: item[c] for c in rt.key}), []).append(item)
    out = []
    for row in rows:
        children = items.get(key_text({c: row[c] for c in rt.key}), []) if rt.items else None
        out.append(serialise_record(rt, row, children))
    return out


def _held_versions(ex: Exchange, rt: RecordType) -> dict[str, set[str]]:
    """Per key: fingerprints the platform holds (accepted/duplicate) or that are already queued."""
    held: dict[str, set[str]] = {}
    rows = ex.conn.execute(
        f"SELECT record_key, fingerprint FROM {ex.t('hipgate_record_state')}"
        " WHERE record_type = %s AND status IN ('accepted', 'duplicate')"
        f" UNION ALL SELECT r.record_key, r.fingerprint FROM {ex.t('hipgate_outbox_record')} r"
        f" JOIN {ex.t('hipgate_outbox')} o USING (msgid) WHERE o.status = 'pending' AND o.record_type = %s",
        (rt.code, rt.code),
    ).fetchall()
    for key, fp in rows:
        held.setdefault(key_text(key), set()).add(fp)
    return held


def capture(ex: Exchange, rt: RecordType, result: RunResult) -> list[str]:
    """Step 1 for one record type; returns the msgids queued. Commits."""
    infno = operation_for(ex.iface, "upload", rt.code).infno
    conn = ex.conn
    t_wm = ex.t("hipgate_watermark")
    (horizon,) = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()  # type: ignore[misc]
    conn.execute(f"INSERT INTO {t_wm} (record_type, horizon) VALUES (%s, '0') ON CONFLICT DO NOTHING", (rt.code,))
    (mark,) = conn.execute(f"SELECT horizon::text FROM {t_wm} WHERE record_type = %s FOR UPDATE", (rt.code,)).fetchone()  # type: ignore[misc]
    changes = conn.execute(
        f"SELECT record_key, min(changed_at) FROM {ex.t('hipgate_change')}"
        " WHERE record_type = %s AND xid >= %s::xid8 AND xid < %s::xid8 GROUP BY record_key",
        (rt.code, mark, horizon),
    ).fetchall()
    changed_at = {key_text(k): at for k, at in changes}
    bump(conn, ex.schema, "changes", rt.code, len(changes))
    records = load_records(ex, rt, [k for k, _ in changes])
    held = _held_versions(ex, rt)
    good: list[tuple[dict[str, Any], str]] = []
    changed: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
    for record in records:
        fp = record_fingerprint(record)
        key = {c: record.get(c) for c in rt.key}
        if fp in held.get(key_text(key), set()):
            result.unchanged += 1
            continue
        changed.append((record, fp, key))
    checked = batch_violations(ex, rt, infno, [record for record, _, _ in changed])
    for (record, fp, key), violations in zip(changed, checked, strict=True):
        if violations:
            quarantine(conn, ex.schema, rt, record, fp, violations)
            _state(ex, rt, key, "quarantined", fp, _day(rt, record), None, violations[0].reason())
            result.quarantined += 1
            bump(conn, ex.schema, "quarantined", rt.code)
            log.warning("quarantined %s %s: %s", rt.code, key_text(key), violations[0].en)
            continue
        conn.execute(
            f"UPDATE {ex.t('hipgate_quarantine')} SET resolved_at = now()"
            " WHERE record_type = %s AND record_key = %s AND resolved_at IS NULL",
            (rt.code, Jsonb(key)),
        )
        good.append((record, fp))
    msgids = []
    size = max(1, min(ex.batch_size, MAX_BATCH))
    for start in range(0, len(good), size):
        batch = good[start : start + size]
        envelope = new_envelope(ex, infno, {"record_type": rt.code, "records": [r for r, _ in batch]})
        _store(ex, rt, envelope, batch, changed_at)
        msgids.append(envelope["msgid"])
        result.queued += len(batch)
    conn.execute(f"UPDATE {t_wm} SET horizon = %s::xid8, updated_at = now() WHERE record_type = %s", (horizon, rt.code))
    conn.commit()
    return msgids


def _day(rt: RecordType, record: Mapping[str, Any]) -> str:
    return record_day(record, rt.year or rt.cursor or "") if record.get(rt.year or "") else ""


def _store(ex: Exchange, rt: RecordType, envelope: dict[str, Any], batch: list[tuple[dict[str, Any], str]],
           changed_at: Mapping[str, Any], created_at: Any = None) -> None:  # fmt: skip
    ex.conn.execute(
        f"INSERT INTO {ex.t('hipgate_outbox')} (msgid, infno, record_type, envelope, created_at)"
        " VALUES (%s, %s, %s, %s, coalesce(%s, now()))",
        (envelope["msgid"], envelope["infno"], rt.code, Jsonb(envelope), created_at),
    )
    with ex.conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {ex.t('hipgate_outbox_record')}"
            " (msgid, idx, record_key, updt_time, fingerprint, day, changed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (envelope["msgid"], i, Jsonb({c: r.get(c) for c in rt.key}), r.get(rt.cursor or ""), fp, _day(rt, r),
                 changed_at.get(key_text({c: r.get(c) for c in rt.key})))
                for i, (r, fp) in enumerate(batch)
            ],
        )  # fmt: skip


def _state(ex: Exchange, rt: RecordType, key: Mapping[str, Any], status: str, fp: str, day: str,
           msgid: str | None, err_msg: str | None) -> None:  # fmt: skip
    ex.conn.execute(
        f"INSERT INTO {ex.t('hipgate_record_state')}"
        " (record_type, record_key, status, fingerprint, day, msgid, err_msg) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (record_type, record_key) DO UPDATE SET status = EXCLUDED.status,"
        " fingerprint = EXCLUDED.fingerprint, day = EXCLUDED.day, msgid = EXCLUDED.msgid,"
        " err_msg = EXCLUDED.err_msg, updated_at = now()",
        (rt.code, Jsonb(dict(key)), status, fp, day, msgid, err_msg),
    )


# ---------------------------------------------------------------- send


def _fail(ex: Exchange, msgid: str, text: str, infcode: int | None, rt_code: str) -> None:
    ex.conn.rollback()
    row = ex.conn.execute(
        f"UPDATE {ex.t('hipgate_outbox')} SET attempts = attempts + 1, last_error = %s, infcode = %s,"
        " sent_at = now() WHERE msgid = %s RETURNING infno",
        (text[:2000], infcode, msgid),
    ).fetchone()
    failure(ex.conn, ex.schema, "incremental", text, rt_code, row[0] if row else None, msgid)
    ex.conn.commit()


def record_ack(ex: Exchange, msgid: str, rt: RecordType, reply: Reply) -> tuple[int, int, int]:
    """The per-record results and the acknowledgement, in one transaction; (accepted, duplicate, rejected)."""
    conn = ex.conn
    rows = conn.execute(
        f"SELECT idx, record_key, fingerprint, day FROM {ex.t('hipgate_outbox_record')} WHERE msgid = %s ORDER BY idx",
        (msgid,),
    ).fetchall()
    results = (reply.output or {}).get("results") or []
    by_idx = {r.get("idx"): r for r in results if isinstance(r, dict)}
    if len(by_idx) != len(rows) or any(
        key_text(by_idx.get(idx, {}).get("key") or {}) != key_text(key) for idx, key, _, _ in rows
    ):
        raise ValueError(f"the reply to {msgid} does not answer its records one by one / 应答的逐条结果与报文记录不符")
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for idx, key, fp, day in rows:
        res = by_idx[idx]
        counts[res["result"]] += 1
        conn.execute(
            f"UPDATE {ex.t('hipgate_outbox_record')} SET result = %s, err_msg = %s WHERE msgid = %s AND idx = %s",
            (res["result"], res.get("err_msg"), msgid, idx),
        )
        _state(ex, rt, key, res["result"], fp, day, msgid, res.get("err_msg"))
    conn.execute(
        f"UPDATE {ex.t('hipgate_outbox')} SET status = 'acked', acked_at = clock_timestamp(), infcode = 0,"
        " attempts = attempts + 1, sent_at = coalesce(sent_at, now()), last_error = NULL, envelope = NULL"
        " WHERE msgid = %s AND status = 'pending'",
        (msgid,),
    )
    # Lag: from each record's first captured change to this acknowledgement (one clock reading for all).
    conn.execute(
        f"INSERT INTO {ex.t('hipgate_lag_sample')} (msgid, day, record_type, records, lag_max_s, lag_avg_s, lags_s)"
        " SELECT %s, (now() AT TIME ZONE 'Asia/Shanghai')::date, %s, count(*), coalesce(max(s), 0),"
        " coalesce(avg(s), 0), coalesce(array_agg(s ORDER BY idx) FILTER (WHERE s IS NOT NULL), '{}')"
        " FROM (SELECT r.idx, extract(epoch FROM t.at - r.changed_at)::double precision AS s"
        f" FROM {ex.t('hipgate_outbox_record')} r, (SELECT clock_timestamp() AS at) t WHERE r.msgid = %s) l"
        " ON CONFLICT DO NOTHING",
        (msgid, rt.code, msgid),
    )
    bump(conn, ex.schema, "messages", rt.code)
    bump(conn, ex.schema, "sent", rt.code, len(rows))
    for name, n in counts.items():
        bump(conn, ex.schema, name, rt.code, n)
    conn.commit()
    return counts["accepted"], counts["duplicate"], counts["rejected"]


def supersede(ex: Exchange, msgid: str) -> str:
    """A message the platform refused for its time (-1103, not processed) becomes a new one: same records,
    fresh msgid and inf_time. Safe: the platform answers a msgid it holds with the original reply before it
    looks at the clock, so -1103 means it never processed this one."""
    conn = ex.conn
    conn.rollback()
    infno, rt_code, envelope, created = conn.execute(
        f"SELECT infno, record_type, envelope, created_at FROM {ex.t('hipgate_outbox')} WHERE msgid = %s FOR UPDATE",
        (msgid,),
    ).fetchone()  # type: ignore[misc]
    fresh = new_envelope(ex, infno, envelope["input"])
    conn.execute(
        f"INSERT INTO {ex.t('hipgate_outbox')} (msgid, infno, record_type, envelope, created_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (fresh["msgid"], infno, rt_code, Jsonb(fresh), created),
    )
    conn.execute(
        f"INSERT INTO {ex.t('hipgate_outbox_record')} (msgid, idx, record_key, updt_time, fingerprint, day, changed_at)"
        f" SELECT %s, idx, record_key, updt_time, fingerprint, day, changed_at FROM {ex.t('hipgate_outbox_record')}"
        " WHERE msgid = %s",
        (fresh["msgid"], msgid),
    )
    conn.execute(
        f"UPDATE {ex.t('hipgate_outbox')} SET status = 'superseded', superseded_by = %s, envelope = NULL,"
        " infcode = %s WHERE msgid = %s",
        (fresh["msgid"], CLOCK_INFCODE, msgid),
    )
    conn.commit()
    return fresh["msgid"]


def send_pending(ex: Exchange, result: RunResult) -> None:
    """Step 2: every pending message, oldest first. Unreachable propagates (everything stays pending)."""
    pending = ex.conn.execute(
        f"SELECT msgid FROM {ex.t('hipgate_outbox')} WHERE status = 'pending' ORDER BY created_at, msgid"
    ).fetchall()
    ex.conn.commit()
    for (msgid,) in pending:
        superseded = False
        while True:
            infno, rt_code, envelope = ex.conn.execute(
                f"SELECT infno, record_type, envelope FROM {ex.t('hipgate_outbox')} WHERE msgid = %s", (msgid,)
            ).fetchone()  # type: ignore[misc]
            ex.conn.commit()
            rt = ex.ds.record_type(rt_code)
            try:
                reply = ex.client.call(infno, envelope)
            except Unreachable as exc:
                _fail(ex, msgid, str(exc), None, rt_code)
                raise
            ex.point("sent")
            if reply.infcode == CLOCK_INFCODE and not superseded:
                msgid, superseded = supersede(ex, msgid), True
                continue
            if reply.relay == "forwarded" and reply.status == 200 and reply.infcode == 0:
                try:
                    a, d, r = record_ack(ex, msgid, rt, reply)
                except ValueError as exc:
                    _fail(ex, msgid, str(exc), 0, rt_code)
                    result.errors.append(str(exc))
                    break
                result.messages += 1
                result.accepted, result.duplicate, result.rejected = (
                    result.accepted + a, result.duplicate + d, result.rejected + r,
                )  # fmt: skip
            else:
                text = f"{msgid}: {reply.error_text()}"
                log.error("message %s not accepted: %s", msgid, text)
                _fail(ex, msgid, text, reply.infcode, rt_code)
                result.errors.append(text)
            break


def run(ex: Exchange) -> RunResult:
    """One incremental run over every record type 4101 carries. Raises Unreachable when the platform
    cannot be reached (after the retries): what was captured stays in the outbox, pending."""
    result = RunResult()
    (locked,) = ex.conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_ID,)).fetchone()  # type: ignore[misc]
    ex.conn.commit()
    if not locked:
        result.errors.append("another incremental run holds the lock / 另一增量任务正在运行")
        return result
    try:
        op = operation_for(ex.iface, "upload")
        for code in op.record_types:
            capture(ex, ex.ds.records[code], result)
        ex.point("outbox_stored")
        send_pending(ex, result)
    finally:
        ex.conn.rollback()
        ex.conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
        ex.conn.commit()
    return result
