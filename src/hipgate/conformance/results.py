"""One result per (control, check, host): status after waivers, with the evidence."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path
from typing import Any

from hipgate.conformance.checks import Outcome
from hipgate.policy.load import Control

PASS, FAIL, WAIVED = "pass", "fail", "waived"


def evaluate(
    control: Control, check: str, host: str, outcome: Outcome, inventory_name: str, today: datetime.date
) -> dict[str, Any]:
    """Apply waivers: a failing check with a live waiver is `waived`; with an expired one it stays `fail`."""
    waiver = next((w for w in control.waivers if w.applies(host, inventory_name)), None)
    status = PASS if outcome.ok else FAIL
    waiver_doc = None
    if waiver is not None:
        expired = waiver.expired(today)
        waiver_doc = {
            "approver": waiver.approver,
            "expires": waiver.expires.isoformat(),
            "expired": expired,
            "justification_zh": waiver.justification_zh,
            "justification_en": waiver.justification_en,
        }
        if not outcome.ok and not expired:
            status = WAIVED
    return {
        "control": control.id,
        "check": check,
        "host": host,
        "status": status,
        "summary_zh": outcome.zh,
        "summary_en": outcome.en,
        "evidence": [dataclasses.asdict(e) for e in outcome.evidence],
        "data": outcome.data,
        "waiver": waiver_doc,
        "checked_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def append(results_dir: Path, record: dict[str, Any]) -> None:
    """One file per pytest worker, so parallel workers never interleave writes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(results_dir / f"results-{worker}.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def collect(results_dir: Path) -> list[dict[str, Any]]:
    records = []
    for part in sorted(results_dir.glob("results-*.jsonl")):
        records += [json.loads(line) for line in part.read_text(encoding="utf-8").splitlines() if line]
    return sorted(records, key=lambda r: (r["control"], r["check"], r["host"]))
