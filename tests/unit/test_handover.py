"""Each handover condition on repository states as hipgate-backup reports them: it holds in the
good case and fails, naming the problem, in each bad one. (The lab tests run the gate for real.)"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hipgate import handover
from hipgate.backups import Repo

REPOS = [Repo("db", 1, "postgres", False), Repo("site-a", 2, "pgbackrest", True), Repo("site-b", 3, "pgbackrest", True)]


def log(repo: int, label: str) -> dict[str, Any]:
    return {"name": f"db-repo{repo}-{label}.json", "sha256": f"h{repo}{label}", "repo": repo, "label": label}


def good() -> dict[str, dict[str, Any]]:
    labels = {1: "20261123-010000F", 2: "20261123-011000F", 3: "20261123-012000F"}
    logs = [log(r, labels[r]) for r in labels]
    restore = {
        "ok": True,
        "page_checksums_ok": True,
        "finished": "2026-11-23T03:00:00Z",
        "repo": 3,
        "host": "site-b",
        "tables": {"exchange.public.t": {"rows": 1, "md5": "x"}},
    }
    return {
        r.host: {
            "newest_full_age_hours": 2.0,
            "info": {"backup": [{"type": "full", "label": labels[r.index]}]},
            "logs": logs if r.offsite else [logs[0]],
            "last_restore_test": restore if r.host == "site-b" else None,
        }
        for r in REPOS
    }


def conditions(st: dict[str, dict[str, Any]], verified: dict[str, bool] | None = None) -> list[handover.Condition]:
    ok = verified or {r.host: True for r in REPOS}
    return [
        handover.offsite_full_backups(REPOS, st, 26),
        handover.every_repository_verifies(REPOS, {h: {"ok": v, "output": ""} for h, v in ok.items()}),
        handover.restore_test_passed(REPOS, st),
        handover.backup_logs_everywhere(REPOS, st, "db"),
    ]


def test_every_condition_holds_on_good_state() -> None:
    assert all(c.ok for c in conditions(good()))


def test_one_off_site_copy_is_not_enough() -> None:
    st = good()
    st["site-b"]["newest_full_age_hours"] = 30.0  # older than the 26 h limit
    c = handover.offsite_full_backups(REPOS, st, 26)
    assert not c.ok and "repo2@site-a" in c.en and "need 2" in c.en
    st = good()
    st["site-a"] = {"error": "ssh: connect to host site-a: No route to host"}
    assert not handover.offsite_full_backups(REPOS, st, 26).ok


def test_a_repository_that_fails_verify_is_named() -> None:
    c = conditions(good(), {"db": True, "site-a": True, "site-b": False})[1]
    assert not c.ok and "repo3@site-b" in c.en


def test_a_failed_or_missing_restore_test_refuses() -> None:
    st = good()
    st["site-b"]["last_restore_test"]["page_checksums_ok"] = False
    assert not handover.restore_test_passed(REPOS, st).ok
    st = good()
    st["site-b"]["last_restore_test"] = None
    c = handover.restore_test_passed(REPOS, st)
    assert not c.ok and "none" in c.en
    # The newest result counts: an older pass does not hide a newer failure.
    st = good()
    st["site-a"]["last_restore_test"] = copy.deepcopy(st["site-b"]["last_restore_test"])
    st["site-b"]["last_restore_test"].update(ok=False, finished="2026-11-23T04:00:00Z")
    assert not handover.restore_test_passed(REPOS, st).ok


def test_a_backup_log_missing_at_a_site_or_with_another_hash_refuses() -> None:
    st = good()
    st["site-a"]["logs"] = [entry for entry in st["site-a"]["logs"] if entry["repo"] != 3]
    c = handover.backup_logs_everywhere(REPOS, st, "db")
    assert not c.ok and "db-repo3-20261123-012000F.json @ site-a: 缺失 / missing" in c.zh
    st = good()
    st["site-b"]["logs"][0] = {**st["site-b"]["logs"][0], "sha256": "other"}
    c = handover.backup_logs_everywhere(REPOS, st, "db")
    assert not c.ok and "hash differs" in c.en


def test_the_report_is_hashed_and_lists_every_condition(tmp_path: Path) -> None:
    inv = SimpleNamespace(settings={"province": "测试省"})
    conds = conditions(good())
    path, digest = handover.write_report(conds, inv, "db", tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert (tmp_path / f"{path.name}.sha256").read_text().split()[0] == digest
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["passed"] and [c["id"] for c in doc["conditions"]] == [c.id for c in conds]
    html = path.with_suffix(".html").read_text(encoding="utf-8")
    assert digest in html and all(c.id in html for c in conds) and "测试省" in html
