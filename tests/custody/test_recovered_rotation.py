"""A recovered generation must be rotated in time: from a real OpenBao's audit log, a quorum's reads
mark a generation exposed; it is overdue once older than the limit unless a newer generation was
written after the recovery. One custodian reading their own share is no recovery."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from helpers import CUSTODIANS
from hipgate.custody import ceremony, exposure, postgres, vault

LATER = datetime.timedelta(hours=25)


def test_a_recovered_generation_is_overdue_until_rotated(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    su = postgres.Superuser(pg["superuser"], "test cluster")
    first = ceremony.init("db01", bao["writer"], CUSTODIANS, 2, su, "postgres", log, "op")

    def overdue(after: datetime.timedelta) -> list[dict]:
        evs = exposure.events(bao["audit"].read_text().splitlines())
        return exposure.unrotated(evs, 2, 24, datetime.datetime.now(datetime.UTC) + after)

    a = vault.login(bao["addr"], "custodian-a", bao["passwords"]["custodian-a"])
    vault.read_share(a, "db01", first, "custodian-a")  # one custodian alone: no recovery
    assert overdue(LATER) == []
    ceremony.recover("db01", {c: vault.login(bao["addr"], c, bao["passwords"][c]) for c in CUSTODIANS[1:]}, log)
    assert overdue(datetime.timedelta(0)) == []  # within the limit
    late = overdue(LATER)
    assert [(x["system"], x["generation"]) for x in late] == [("db01", first)], late
    ceremony.init("db01", bao["writer"], CUSTODIANS, 2, su, "postgres", log, "op")  # custody rotate
    assert overdue(LATER) == []


def test_the_vault_hosts_filter_keeps_no_value(bao: dict, pg: dict, tmp_path: Path) -> None:
    import subprocess
    import sys

    su = postgres.Superuser(pg["superuser"], "test cluster")
    g = ceremony.init("db01", bao["writer"], CUSTODIANS, 2, su, "postgres", tmp_path / "j", "op")
    ceremony.recover(
        "db01", {c: vault.login(bao["addr"], c, bao["passwords"][c]) for c in CUSTODIANS[:2]}, tmp_path / "j"
    )
    out = subprocess.run(
        [sys.executable, "-c", exposure.FILTER, str(bao["audit"])], capture_output=True, text=True, check=True
    ).stdout
    evs = exposure.events(out.splitlines())
    assert {(e["op"], e["custodian"]) for e in evs if e["generation"] == g} >= {
        ("create", "custodian-c"),
        ("read", "custodian-a"),
        ("read", "custodian-b"),
    }
    for c in CUSTODIANS:
        share = vault.read_share(vault.login(bao["addr"], c, bao["passwords"][c]), "db01", g, c)
        assert share.split(":", 1)[1] not in out


def test_the_handover_gate_refuses_a_recovered_generation_not_rotated_in_time(
    bao: dict, pg: dict, tmp_path: Path
) -> None:
    from test_custody_cli import inventory

    from hipgate.handover import custody_quorum
    from hipgate.inventory import load_inventory

    inv = load_inventory(inventory(tmp_path, bao))
    su = postgres.Superuser(pg["superuser"], "test cluster")
    g = ceremony.init("db01", bao["writer"], CUSTODIANS, 2, su, "postgres", tmp_path / "j", "op")
    for c in CUSTODIANS:
        vault.change_password(vault.login(bao["addr"], c, bao["passwords"][c]), c, f"{c}-own-password-1")
    clients = {c: vault.login(bao["addr"], c, f"{c}-own-password-1") for c in CUSTODIANS[:2]}
    ceremony.recover("db01", clients, tmp_path / "j")
    # The same audit entries, as they will read 25 hours later.
    aged = []
    for line in bao["audit"].read_text().splitlines():
        e = json.loads(line)
        e["time"] = (datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")) - LATER).isoformat()
        aged.append(json.dumps(e))
    assert custody_quorum(inv, "db01", bao["writer"].token, bao["audit"].read_text().splitlines()).ok
    late = custody_quorum(inv, "db01", bao["writer"].token, aged)
    assert not late.ok and g in late.en and "not rotated" in late.en and "未轮换" in late.zh, late.en
