"""Writing the province's rows and reading them back as the platform should hold them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from hipgate.exchange.dataset import Dataset, serialise_record
from hipgate.exchange.fingerprint import summarise_records


def insert_setl(conn: psycopg.Connection[Any], record: dict[str, Any]) -> None:
    row = {k: v for k, v in record.items() if k != "setl_item"}
    cols = ", ".join(f'"{k}"' for k in row)
    conn.execute(f"INSERT INTO exchange.setl ({cols}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values()))
    for item in record.get("setl_item", []):
        item = {"setl_id": record["setl_id"], **item}
        cols = ", ".join(f'"{k}"' for k in item)
        conn.execute(
            f"INSERT INTO exchange.setl_item ({cols}) VALUES ({', '.join(['%s'] * len(item))})", list(item.values())
        )


def source_records(conninfo: str, ds: Dataset, code: str = "setl") -> list[dict[str, Any]]:
    rt = ds.records[code]
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM exchange.{code}").fetchall()
        items: dict[str, list[dict[str, Any]]] = {}
        if rt.items:
            for item in cur.execute(f"SELECT * FROM exchange.{rt.items.code}").fetchall():
                items.setdefault(item["setl_id"], []).append(item)
    return [serialise_record(rt, r, items.get(r.get("setl_id"), []) if rt.items else None) for r in rows]


def source_summary(
    conninfo: str, ds: Dataset, code: str = "setl", exclude: set[str] | None = None
) -> list[dict[str, Any]]:
    records = [r for r in source_records(conninfo, ds, code) if r.get("setl_id") not in (exclude or set())]
    return [d.as_dict() for d in summarise_records(code, records, ds.records[code].year or "")]


def platform_summary(sim: Any, code: str = "setl") -> list[dict[str, Any]]:
    return [d for d in sim.summary()["days"] if d["record_type"] == code]


def outbox(conninfo: str) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM exchange.hipgate_outbox ORDER BY created_at, msgid").fetchall()
