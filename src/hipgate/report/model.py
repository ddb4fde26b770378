"""Turn verify results into what the report shows: a control x host matrix, section summaries, waivers.

Kept free of any output format so the HTML, JSON and JUnit writers present the same facts.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipgate.errors import UserError, fail
from hipgate.preflight.network import TITLES
from hipgate.report.results_schema import RESULTS_SCHEMA
from hipgate.validation import validate_document

PASS, FAIL, WAIVED, MISSING, NA = "pass", "fail", "waived", "missing", "na"
# A cell takes the worst status of its checks; a check with no result at all is worse than a waiver
# because nothing was proven. "na": none of the control's checks applies to that host (a database
# check on the bastion); such cells count for nothing.
_RANK = {PASS: 0, WAIVED: 1, MISSING: 2, FAIL: 3}
STATUS_TEXT = {
    PASS: ("符合", "pass"),
    FAIL: ("不符合", "fail"),
    WAIVED: ("已豁免", "waived"),
    MISSING: ("未检查", "not checked"),
    NA: ("不适用", "n/a"),
}

# The report's overall verdict, by its worst cell status: one wording for the page and the CLI.
VERDICT_TEXT = {
    PASS: "全部符合 / all controls pass",
    WAIVED: "符合（含已批准豁免）/ conformant with approved waivers",
    MISSING: "不完整：部分检查未运行 / incomplete: some checks did not run",
    FAIL: "不符合 / non-conformant",
}


@dataclass
class Cell:
    control: str
    host: str
    status: str
    results: list[dict[str, Any]]

    @property
    def anchor(self) -> str:
        return f"ev-{self.control}-{self.host}"


@dataclass
class Section:
    section: str
    name_zh: str
    name_en: str
    controls: list[dict[str, Any]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def status(self) -> str:
        return max(self.counts, key=_RANK.__getitem__) if self.counts else MISSING


@dataclass
class Report:
    doc: dict[str, Any]
    sha256: str
    source: Path
    hosts: list[str]
    controls: list[dict[str, Any]]
    cells: dict[tuple[str, str], Cell]
    sections: list[Section]
    counts: Counter[str]

    @property
    def status(self) -> str:
        return max(self.counts, key=_RANK.__getitem__) if self.counts else MISSING

    @property
    def verdict(self) -> str:
        return VERDICT_TEXT[self.status]

    def row(self, control_id: str) -> list[Cell]:
        return [self.cells[(control_id, h)] for h in self.hosts]

    def waivers(self) -> list[dict[str, Any]]:
        return [dict(w, control=c["id"]) for c in self.controls for w in c["waivers"]]

    def data(self, key: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(result, its data[key]) for every result that carries that kind of structured evidence."""
        return [(r, r["data"][key]) for r in self.doc["results"] if key in (r.get("data") or {})]

    def tunnels(self) -> list[dict[str, Any]]:
        """VPN SAs in use per host (check vpn_tunnel_strong, named by two controls: shown once)."""
        seen: dict[tuple[str, str, str], dict[str, Any]] = {}
        for result, sas in self.data("vpn"):
            for sa in sas:
                seen.setdefault((result["host"], sa["ike"], sa["esp"]), dict(sa, result=result))
        return list(seen.values())

    def preflight(self) -> list[dict[str, Any]]:
        """Go-live network preflight rows (check platform_network_preflight), with their titles."""
        out = []
        for result, rows in self.data("preflight"):
            for row in rows:
                zh, en = TITLES.get(row["check"], (row["check"], row["check"]))
                out.append(dict(row, title_zh=zh, title_en=en, result=result))
        return out

    def reachability(self) -> tuple[list[str], list[dict[str, Any]]]:
        """The reachability matrix: target columns ("host:port") and one row per probing host."""
        columns: list[str] = []
        rows = []
        for result, d in self.data("reachability"):
            cells = {f"{p['to']}:{p['port']}": p for p in d["probes"]}
            columns += [c for c in cells if c not in columns]
            rows.append({"from": d["from"], "address": d["address"], "cells": cells, "result": result})

        def order(col: str) -> tuple[int, str, int]:
            host, _, port = col.rpartition(":")
            return (self.hosts.index(host) if host in self.hosts else len(self.hosts), host, int(port))

        rows.sort(key=lambda r: order(f"{r['from']}:0"))
        return sorted(columns, key=order), rows


def read_results(path: Path) -> tuple[dict[str, Any], str]:
    """Load and validate results.json; return it with the SHA-256 of its exact bytes."""
    if not path.is_file():
        raise fail(
            str(path),
            "找不到检查结果文件。",
            "the results file does not exist.",
            "先运行 hipgate verify -i 清单目录，或用 --results 指定 results.json。",
            "run hipgate verify -i INVENTORY first, or point --results at a results.json.",
        )
    raw = path.read_bytes()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise fail(
            str(path),
            f"不是有效的 JSON：{exc}",
            f"not valid JSON: {exc}",
            "重新运行 hipgate verify 生成结果文件。",
            "run hipgate verify again to regenerate it.",
        ) from None
    problems = validate_document(path, doc, RESULTS_SCHEMA)
    if problems:
        raise UserError(problems)
    return doc, hashlib.sha256(raw).hexdigest()


def build(path: Path) -> Report:
    doc, digest = read_results(path)
    controls = doc["controls"]
    known = {c["id"]: c for c in controls}
    hosts = list(doc["hosts"])
    by_cell: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for i, r in enumerate(doc["results"]):
        if r["control"] not in known or r["host"] not in hosts:
            raise fail(
                f"{path}: results.[{i}]",
                f"结果引用了未声明的控制项或主机（{r['control']} / {r['host']}）。",
                f"the result names a control or host the file does not declare ({r['control']} / {r['host']}).",
                "结果文件可能被修改过：重新运行 hipgate verify。",
                "the file may have been edited: run hipgate verify again.",
            )
        by_cell.setdefault((r["control"], r["host"]), []).append(r)
    cells: dict[tuple[str, str], Cell] = {}
    for c in controls:
        for h in hosts:
            results = by_cell.get((c["id"], h), [])
            # Every declared check must have reported, or the cell proves nothing about that check.
            reported = {r["check"] for r in results}
            applies = c.get("applies") or {}
            expected = [ch for ch in c["checks"] if h in applies.get(ch, hosts)]
            statuses = [r["status"] for r in results] + [MISSING for ch in expected if ch not in reported]
            if not expected and not results:
                status = NA
            else:
                status = max(statuses, key=_RANK.__getitem__) if statuses else MISSING
            cells[(c["id"], h)] = Cell(c["id"], h, status, results)
    sections: dict[str, Section] = {}
    for c in controls:
        sec = sections.setdefault(c["section"], Section(c["section"], c["section_zh"], c["section_en"]))
        sec.controls.append(c)
        sec.counts.update(cells[(c["id"], h)].status for h in hosts if cells[(c["id"], h)].status != NA)
    counts: Counter[str] = Counter(cell.status for cell in cells.values() if cell.status != NA)
    return Report(doc, digest, path, hosts, controls, cells, list(sections.values()), counts)
