"""The flow matrix: what it resolves to per host, and every kind of bad matrix refused with a clear error."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import edit_yaml
from hipgate.errors import UserError
from hipgate.inventory.load import load_inventory


def settings(inv: Path) -> Path:
    return inv / "group_vars" / "all" / "hipgate.yml"


def problems(inv: Path, change: Callable[[Any], object]) -> list[str]:
    edit_yaml(settings(inv), change)
    with pytest.raises(UserError) as caught:
        load_inventory(inv)
    out = []
    for p in caught.value.problems:
        assert p.zh and p.en and p.fix_zh and p.fix_en
        out.append(f"{p.where} | {p.en} | {p.fix_en}")
    return out


def flows(doc: Any) -> list[dict[str, Any]]:
    return doc["hipgate"]["flows"]


def test_rules_per_host_from_the_example(inventory: Path) -> None:
    inv = load_inventory(inventory)
    m = inv.flow_matrix()
    db = {r.flow: r for r in m.rules_for("db01")}
    # Database: ssh from management and bastion (implied), 5432 only from middleware, bastion and
    # OpenBao's database engine (implied).
    # Off-site sites take backups over ssh from it (implied by the backup_sites group).
    assert set(db) == {
        "management-ssh",
        "bastion-ssh",
        "app-to-db",
        "admin-to-db",
        "secrets-to-db",
        "backup-from-sites",
    }
    sites = [f"{inv.address(h)}/32" for h in inv.group_hosts("backup_sites")]
    assert db["backup-from-sites"].implied and sorted(db["backup-from-sites"].sources) == sorted(sites)
    site = {r.flow: r for r in m.rules_for(inv.group_hosts("backup_sites")[0])}
    assert site["backup-to-sites"].sources == (f"{inv.address('db01')}/32",)
    assert site["backup-logs-between-sites"].ports == "22"
    assert db["secrets-to-db"].implied and db["secrets-to-db"].sources == (f"{inv.address('vault01')}/32",)
    assert db["app-to-db"].sources == ("10.86.1.30/32",) and db["app-to-db"].ports == "5432"
    assert db["management-ssh"].implied and not db["app-to-db"].implied
    # The bastion gets operators' ssh, and no rule allowing itself.
    bastion = {r.flow: r for r in m.rules_for("bastion01")}
    assert bastion["operators-to-bastion"].sources == ("10.86.100.0/24",)
    assert "bastion-ssh" not in bastion
    # `all` means every managed host, never the national platform.
    vault = {r.flow: r for r in m.rules_for("vault01")}
    assert "10.123.0.1/32" not in vault["secrets-api"].sources and "10.86.1.10/32" in vault["secrets-api"].sources
    # Custodians reach OpenBao from the management networks (implied).
    assert vault["custody-api"].implied and vault["custody-api"].ports == "8200"
    # The log collector accepts syslog over TLS from every managed host (implied by its group).
    assert "log-collection" in bastion and bastion["log-collection"].ports == "6514"
    # The VPN peer's IKE and ESP reach the front-end server only (implied by hipgate.vpn).
    fe = {r.flow: r for r in m.rules_for("fe01")}
    assert fe["vpn-ike"].implied and fe["vpn-ike"].sources == ("10.123.0.1/32",) and fe["vpn-ike"].ports == "500, 4500"
    assert fe["vpn-esp"].proto == "esp" and fe["vpn-esp"].sources == ("10.123.0.1/32",)
    assert all(r.flow not in ("vpn-ike", "vpn-esp") for h in inv.hosts for r in m.rules_for(h) if h != "fe01")


def test_allows_answers_like_the_firewall(inventory: Path) -> None:
    m = load_inventory(inventory).flow_matrix()
    assert m.allows("10.86.1.30", "db01", "tcp", 5432).name == "app-to-db"
    assert m.allows("10.86.1.10", "db01", "tcp", 5432) is None  # front-end server: no flow
    assert m.allows("10.86.0.5", "db01", "tcp", 22).name == "management-ssh"
    assert m.allows("10.86.100.7", "db01", "tcp", 22) is None  # operators only reach the bastion
    assert ("db01", 5432) in m.protected_tcp_ports() and ("fe01", 8200) in m.protected_tcp_ports()


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: flows(d)[0].update({"to": ["databse"]}), "hipgate.flows.[0].to", "unknown host or group 'databse'"),
        (lambda d: flows(d)[0].update({"from": ["10.0.0.1/8"]}), "hipgate.flows.[0].from", "unknown host or group"),
        (lambda d: flows(d)[0].update({"ports": [70000]}), "hipgate.flows.[0].ports", "invalid port '70000'"),
        (lambda d: flows(d)[0].update({"ports": ["9000-8000"]}), "hipgate.flows.[0].ports", "invalid port"),
        (lambda d: flows(d)[0].update({"ports": []}), "hipgate.flows.[0].ports", "has no ports"),
        (lambda d: flows(d)[0].update({"proto": "esp"}), "hipgate.flows.[0].ports", "esp, which has no ports"),
        (lambda d: flows(d)[1].update({"name": "app-to-db"}), "hipgate.flows.[1].name", "used twice"),
        (lambda d: flows(d)[0].update({"proto": "icmp"}), "hipgate.flows.[0].proto", "use one of: tcp, udp, esp"),
        # Two flows allowing the same traffic: the rule set must stay minimal (8.1.3.2-b).
        (
            # Copies, not shared lists: yaml.safe_dump would write a shared list as an alias, refused.
            lambda d: flows(d).append(
                {**copy.deepcopy(flows(d)[0]), "name": "app-to-db-again", "ports": ["5000-5500"]}
            ),
            "app-to-db-again",
            "overlap",
        ),
        # A flow that repeats what hipgate already allows (management ssh) is redundant too.
        (
            lambda d: flows(d).append(
                {
                    "name": "ssh-again",
                    "from": ["10.86.0.0/28"],
                    "to": ["vault"],
                    "proto": "tcp",
                    "ports": [22],
                    "purpose": "x",
                }
            ),
            "ssh-again",
            "overlap",
        ),
        # The seed requirement: nothing but middleware and bastion may reach the database port.
        (
            lambda d: flows(d).append(
                {
                    "name": "fe-to-db",
                    "from": ["frontend"],
                    "to": ["database"],
                    "proto": "tcp",
                    "ports": [5432],
                    "purpose": "x",
                }
            ),
            "fe-to-db",
            "no unauthorised direct access",
        ),
        (
            lambda d: flows(d).append(
                {
                    "name": "ops-to-db",
                    "from": ["10.86.100.0/24"],
                    "to": ["db01"],
                    "proto": "tcp",
                    "ports": ["5000-6000"],
                    "purpose": "x",
                }
            ),
            "ops-to-db",
            "no unauthorised direct access",
        ),
        # pg_hba and the firewall must agree.
        (
            lambda d: d["hipgate"]["database"]["clients"].append({"from": "frontend", "database": "x", "role": "y"}),
            "hipgate.database.clients.[2].from",
            "does not let it reach",
        ),
        (
            lambda d: d["hipgate"]["database"]["clients"].append({"from": "nobody", "database": "x", "role": "y"}),
            "hipgate.database.clients.[2].from",
            "unknown host or group",
        ),
        (
            lambda d: d["hipgate"]["database"]["clients"].append(
                {"from": "middleware", "database": "x", "role": "Bad-Role"}
            ),
            "hipgate.database.clients.[2].role",
            "",
        ),
        (
            lambda d: d["hipgate"]["network"].pop("management_networks"),
            "hipgate.network.management_networks",
            "missing",
        ),
    ],
    ids=[
        "unknown-to",
        "bad-network",
        "port-range",
        "reversed-range",
        "no-ports",
        "esp-ports",
        "duplicate-name",
        "bad-proto",
        "overlap",
        "redundant-implied",
        "frontend-to-db",
        "network-to-db",
        "hba-not-in-firewall",
        "hba-unknown-host",
        "hba-bad-role",
        "no-management",
    ],
)
def test_bad_matrix_is_refused_naming_the_field(inventory: Path, change, field: str, words: str) -> None:
    found = problems(inventory, change)
    hits = [p for p in found if field in p.split(" | ")[0] and words in p]
    assert hits, found
    assert str(settings(inventory)) in hits[0]
