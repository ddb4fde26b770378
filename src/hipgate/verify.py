"""`hipgate verify`: run the conformance suite against an inventory over SSH, in parallel across hosts."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hipgate import __version__
from hipgate.conformance.checks import applies
from hipgate.conformance.results import collect
from hipgate.conformance.targets import managed_hosts, probe_hosts
from hipgate.errors import fail
from hipgate.inventory.load import Inventory, load_inventory
from hipgate.paths import project_root
from hipgate.policy.load import Policy, load_policy


def run_verify(
    inventory: Path,
    out_dir: Path,
    limit: list[str] | None = None,
    policy_file: Path | None = None,
    workers: int = 0,
    today: datetime.date | None = None,
) -> tuple[Path, dict[str, int]]:
    """Run the suite; write results.json (with every record) and junit.xml into out_dir."""
    inv = load_inventory(inventory)
    policy = load_policy(policy_file)
    hosts = probe_hosts(inv, limit)
    if not hosts:
        raise fail(
            "--limit",
            "没有要检查的受管主机。",
            "no managed host to check.",
            "检查 --limit 中的主机名是否在清单中。",
            "check that the --limit host names are in the inventory.",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("results-*.jsonl"):
        old.unlink()
    n = workers or min(len(hosts), 8)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        str(project_root() / "tests" / "conformance"),
        f"--hipgate-inventory={inv.path}",
        f"--hipgate-results={out_dir}",
        f"--junitxml={out_dir / 'junit.xml'}",
        "-o",
        "junit_family=xunit1",
    ]
    if limit:
        cmd.append(f"--hipgate-limit={','.join(limit)}")
    if policy_file:
        cmd.append(f"--hipgate-policy={policy_file}")
    if today:
        cmd.append(f"--hipgate-today={today.isoformat()}")
    if n > 1:
        cmd += ["-n", str(n)]
    started = datetime.datetime.now(datetime.UTC)
    proc = subprocess.run(cmd, cwd=project_root(), capture_output=True, text=True, check=False)
    records = collect(out_dir)
    if proc.returncode not in (0, 1) or not records:
        raise fail(
            "hipgate verify",
            f"检查未能运行：{proc.stdout[-1500:]}{proc.stderr[-1500:]}",
            f"the checks could not run: {proc.stdout[-1500:]}{proc.stderr[-1500:]}",
            "确认主机可通过 SSH 访问（hipgate lab status）。",
            "make sure the hosts answer over SSH.",
            exit_code=1,
        )
    finished = datetime.datetime.now(datetime.UTC)
    doc = results_document(policy, inv, hosts, records, started, finished, today or datetime.date.today())
    path = out_dir / "results.json"
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path, doc["counts"]


def results_document(
    policy: Policy,
    inv: Inventory,
    hosts: list[str],
    records: list[dict[str, Any]],
    started: datetime.datetime,
    finished: datetime.datetime,
    today: datetime.date,
) -> dict[str, Any]:
    """results.json: the policy as it was applied, and every (control, check, host) record."""
    counts = {s: sum(1 for r in records if r["status"] == s) for s in ("pass", "fail", "waived")}
    managed = managed_hosts(inv)
    return {
        "hipgate_version": __version__,
        "policy": {"id": policy.id, "version": policy.version, "standard": policy.standard, "file": str(policy.path)},
        "inventory": str(inv.path),
        "province": inv.settings.get("province", ""),
        # Wide-open settings the province accepted on purpose (hipgate.acknowledge), with the reason.
        "acknowledged": [{"risk": str(a["risk"]), "reason": str(a["reason"])} for a in inv.acknowledged],
        "hosts": hosts,
        "waivers_evaluated_on": today.isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "counts": counts,
        "flows": [
            {
                "name": f.name,
                "from": list(f.sources),
                "to": list(f.targets),
                "proto": f.proto,
                "ports": f.ports_text(),
                "purpose": f.purpose,
                "implied": f.implied,
            }
            for f in inv.flow_matrix().flows
        ],
        "controls": [
            {
                "id": c.id,
                "section": c.section,
                "section_zh": c.section_zh,
                "section_en": c.section_en,
                "title_zh": c.title_zh,
                "title_en": c.title_en,
                "requirement_zh": c.requirement_zh,
                "requirement_en": c.requirement_en,
                "severity": c.severity,
                "role": c.roles,
                "tag": c.tag,
                "check_only": c.check_only,
                "checks": list(c.checks),
                # Where each check runs (a database check only on database hosts); elsewhere "n/a".
                "applies": {ch: [h for h in hosts if applies(ch, h, inv, managed)] for ch in c.checks},
                "parameters": c.parameters,
                "waivers": [
                    {
                        "hosts": list(w.hosts),
                        "scope": w.scope,
                        "justification_zh": w.justification_zh,
                        "justification_en": w.justification_en,
                        "approver": w.approver,
                        "expires": w.expires.isoformat(),
                    }
                    for w in c.waivers
                ],
            }
            for c in policy.controls
        ],
        "results": records,
    }
