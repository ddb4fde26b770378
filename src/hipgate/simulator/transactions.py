"""What each JSON transaction does once admitted: a function of (env, connection, envelope, now) to an
Outcome, run inside the ledger transaction that also stores the reply. 9102's chunk is the server's
(it streams); 9101 and 9103 are in uploads.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from hipgate.simulator import catalog, outbox, publish, uploads
from hipgate.simulator.context import Env, Outcome, time_text
from hipgate.simulator.ledger import reverse_record, store_record

Handler = Callable[[Env, sqlite3.Connection, Mapping[str, Any], dt.datetime, dict[str, Any]], Outcome]


def _store(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, record_type: str, records: list
) -> list[dict[str, Any]]:
    """Store records one by one (4101, 9201); per record: idx, key, result, err_msg; anomalies published."""
    rt = env.contract.record_type(record_type)
    at = time_text(now)
    results, anomalies = [], []
    for idx, record in enumerate(records):
        region = record.get(rt.region) if rt.region else None
        if record_type in ("setl", "cross_visit") and region and str(region)[:2] != env.config.province[:2]:
            # The province uploads what happened at its own institutions (the partition's division).
            key = {k: record[k] for k in rt.key}
            why = f"{rt.region} {region} 不属于本省 / not in province {env.config.province}"
            results.append({"idx": idx, "key": key, "result": "rejected", "err_msg": why})
            continue
        stored = store_record(
            conn, record_type, rt.key, rt.year or "updt_time", record, at=at,
            sender_code=envelope["sender_code"], msgid=envelope["msgid"],
        )  # fmt: skip
        results.append({"idx": idx, "key": stored.key, "result": stored.result, "err_msg": stored.err_msg})
        if stored.changed and record_type != "test_psn":
            anomaly = publish.anomaly_for(env, record_type, record, stored.key, now)
            if anomaly:
                anomalies.append(anomaly)
    publish.publish_anomalies(env, conn, anomalies, at)
    return results


def incremental_upload(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict
) -> Outcome:
    data = envelope["input"]
    results = _store(env, conn, envelope, now, data["record_type"], data["records"])
    return Outcome(0, {"record_type": data["record_type"], "results": results})


def register_test_persons(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict
) -> Outcome:
    return Outcome(0, {"results": _store(env, conn, envelope, now, "test_psn", envelope["input"]["persons"])})


def reverse(env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict) -> Outcome:
    data = envelope["input"]
    results = []
    for idx, key in enumerate(data["keys"]):
        result = reverse_record(conn, data["record_type"], key, data["reason"], time_text(now))
        err = None if result == "reversed" else {"already_reversed": "已撤销 / already reversed",
                                                 "unknown": "平台无此记录 / no such record held"}[result]  # fmt: skip
        results.append({"idx": idx, "key": dict(key), "result": result, "err_msg": err})
    return Outcome(0, {"record_type": data["record_type"], "results": results})


def _download(infno: str) -> Handler:
    def handler(
        env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, extra: dict
    ) -> Outcome:
        data = envelope["input"]
        try:
            page, again = outbox.download(
                conn, env.secret, infno, data.get("cursor"), data["limit"], extra.get("reserve", 0)
            )
        except outbox.CursorError:
            return Outcome.error(-1401, "游标无效或已过期", "invalid or expired cursor")
        extra["reserved_keys"] = again
        return Outcome(0, page)

    return handler


def _ack(download_infno: str) -> Handler:
    def handler(env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict) -> Outcome:
        results = outbox.acknowledge(conn, download_infno, envelope["input"]["keys"], envelope["msgid"], time_text(now))
        return Outcome(0, {"results": results})

    return handler


def catalog_versions(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict
) -> Outcome:
    data = envelope["input"]
    try:
        return Outcome(
            0, catalog.list_versions(conn, env.secret, data.get("catalog_code"), data.get("cursor"), data["limit"])
        )
    except outbox.CursorError:
        return Outcome.error(-1401, "游标无效或已过期", "invalid or expired cursor")


def catalog_download(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict
) -> Outcome:
    data = envelope["input"]
    try:
        page = catalog.download_version(
            conn, env.secret, data["catalog_code"], data["ver"], data.get("cursor"), data["limit"]
        )
    except outbox.CursorError:
        return Outcome.error(-1401, "游标无效或已过期", "invalid or expired cursor")
    if page is None:
        return Outcome.error(
            -1501, "目录或目录版本不存在", f"unknown catalogue {data['catalog_code']} version {data['ver']}"
        )
    return Outcome(0, page)


def _start(env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, _: dict) -> Outcome:
    return uploads.start(env, conn, envelope, now)


def _complete(
    env: Env, conn: sqlite3.Connection, envelope: Mapping[str, Any], now: dt.datetime, extra: dict
) -> Outcome:
    return uploads.complete(env, conn, envelope, now, checksum_fault=bool(extra.get("checksum")))


# By x-hipgate-action where the document names one (so a province's own infnos map to the same logic),
# the download and acknowledgement pairs by the record type they carry.
ACTIONS: dict[str, Handler] = {
    "history_start": _start,
    "history_complete": _complete,
    "upload": incremental_upload,
    "register_test_persons": register_test_persons,
    "reversal": reverse,
    "catalog_list": catalog_versions,
    "catalog_download": catalog_download,
}


def handlers(env: Env) -> dict[str, Handler]:
    """infno -> handler, from the document's operations (x-hipgate-action, x-hipgate-record-types)."""
    ops = env.contract.iface.operations
    out: dict[str, Handler] = {}
    downloads = {op.record_types: op.infno for op in ops.values() if op.action == "download"}
    for op in ops.values():
        if op.action in ACTIONS:
            out[op.infno] = ACTIONS[op.action]
        elif op.action == "download":
            out[op.infno] = _download(op.infno)
        elif op.action == "ack" and op.record_types in downloads:
            out[op.infno] = _ack(downloads[op.record_types])
    return out
