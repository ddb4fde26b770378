"""Each kind of bad inventory gets an error naming the file, the field and the fix, in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import edit_yaml, problems_of
from helpers import inventory_hosts as hosts
from helpers import inventory_settings as settings
from hipgate.errors import Problem
from hipgate.inventory.load import load_inventory


def only_problem(inv: Path, file: Path, field: str) -> Problem:
    found = problems_of(inv)
    matching = [p for p in found if p.where.startswith(str(file)) and p.where.endswith(field)]
    assert matching, [p.where for p in found]
    p = matching[0]
    # Bilingual and actionable: both languages present, a fix in both.
    assert p.zh and p.en and p.fix_zh and p.fix_en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in p.zh + p.fix_zh)
    return p


def test_example_inventory_is_valid(inventory: Path) -> None:
    inv = load_inventory(inventory)
    assert inv.group_hosts("backup_sites") == ["backup-site-a", "backup-site-b"]
    assert inv.address("db01") == "10.86.1.20"
    assert inv.settings["custody"]["threshold"] == 2


def test_missing_group(inventory: Path) -> None:
    edit_yaml(hosts(inventory), lambda d: d["all"]["children"].pop("bastion"))
    p = only_problem(inventory, hosts(inventory), "all.children.bastion")
    assert "bastion" in p.en and "missing" in p.en


def test_one_backup_site(inventory: Path) -> None:
    edit_yaml(hosts(inventory), lambda d: d["all"]["children"]["backup_sites"]["hosts"].pop("backup-site-b"))
    p = only_problem(inventory, hosts(inventory), "all.children.backup_sites.hosts")
    assert "at least 2" in p.en and "found 1" in p.en


def test_duplicate_ip(inventory: Path) -> None:
    def dup(d: dict) -> None:
        d["all"]["children"]["middleware"]["hosts"]["mw01"]["ansible_host"] = "10.86.1.20"

    edit_yaml(hosts(inventory), dup)
    p = only_problem(inventory, hosts(inventory), "ansible_host")
    assert "10.86.1.20" in p.en and "db01" in p.en


def test_same_host_two_addresses(inventory: Path) -> None:
    edit_yaml(
        hosts(inventory),
        lambda d: d["all"]["children"]["bastion"]["hosts"].update({"db01": {"ansible_host": "10.86.1.99"}}),
    )
    p = only_problem(inventory, hosts(inventory), "hosts.db01.ansible_host")
    assert "two addresses" in p.en


@pytest.mark.parametrize("bad", ["10.123.0.0/33", "10.123.0.1/16", "not-a-cidr", "300.1.1.0/24"])
def test_malformed_cidr(inventory: Path, bad: str) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["network"].update({"platform_cidr": bad}))
    p = only_problem(inventory, settings(inventory), "hipgate.network.platform_cidr")
    assert bad in p.en or "CIDR" in p.en


def test_malformed_host_ip(inventory: Path) -> None:
    edit_yaml(
        hosts(inventory),
        lambda d: d["all"]["children"]["database"]["hosts"]["db01"].update({"ansible_host": "10.86.1.256"}),
    )
    only_problem(inventory, hosts(inventory), "hosts.db01.ansible_host")


def test_threshold_above_custodians(inventory: Path) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["custody"].update({"threshold": 4}))
    p = only_problem(inventory, settings(inventory), "hipgate.custody.threshold")
    assert "4" in p.en and "3 custodians" in p.en


def test_threshold_below_two(inventory: Path) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["custody"].update({"threshold": 1}))
    only_problem(inventory, settings(inventory), "hipgate.custody.threshold")


def test_unknown_key_in_settings(inventory: Path) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["backup"].update({"retension_full": 3}))
    p = only_problem(inventory, settings(inventory), "hipgate.backup.retension_full")
    assert "retension_full" in p.where


def test_unknown_group(inventory: Path) -> None:
    edit_yaml(hosts(inventory), lambda d: d["all"]["children"].update({"databse": {"hosts": {}}}))
    only_problem(inventory, hosts(inventory), "all.children.databse")


def test_duplicate_custodian_id(inventory: Path) -> None:
    def dup(d: dict) -> None:
        d["hipgate"]["custodians"][2]["id"] = "li.si"

    edit_yaml(settings(inventory), dup)
    only_problem(inventory, settings(inventory), "hipgate.custodians.[2].id")


def test_duplicate_yaml_key_names_line(inventory: Path) -> None:
    text = settings(inventory).read_text(encoding="utf-8")
    settings(inventory).write_text(
        text.replace("  time:\n", "  time:\n    ntp_servers: [10.1.1.1]\n", 1), encoding="utf-8"
    )
    found = problems_of(inventory)
    assert len(found) == 1
    assert found[0].where.startswith(f"{settings(inventory)}:")
    assert "duplicate key 'ntp_servers'" in found[0].en


def test_missing_settings_file(inventory: Path) -> None:
    settings(inventory).unlink()
    p = only_problem(inventory, settings(inventory), "hipgate.yml")
    assert "does not exist" in p.en


def test_every_problem_reported_at_once(inventory: Path) -> None:
    # A sysadmin fixing a copied template should see all schema problems in one run, not one per run.
    edit_yaml(
        settings(inventory), lambda d: d["hipgate"]["network"].update({"platform_cidr": "x", "dns_servers": ["nope"]})
    )
    wheres = {p.where.split(": ", 1)[1] for p in problems_of(inventory)}
    assert {"hipgate.network.platform_cidr", "hipgate.network.dns_servers.[0]"} <= wheres


def test_vpn_peer_inside_local_subnets(inventory: Path) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["vpn"].update({"peer_address": "10.86.200.3"}))
    p = only_problem(inventory, settings(inventory), "hipgate.vpn.peer_address")
    assert "10.86.200.3" in p.en and "10.86.200.0/28" in p.en


def test_vpn_local_overlaps_platform(inventory: Path) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["vpn"].update({"local_subnets": ["10.123.4.0/24"]}))
    p = only_problem(inventory, settings(inventory), "hipgate.vpn.local_subnets")
    assert "10.123.4.0/24" in p.en and "10.123.0.0/16" in p.en
