"""hipgate.exchange in the inventory (issue 17): each wrong setting is refused naming the file, the field and
the fix; the relay between the halves is an implied flow, from the middleware to the front-end server only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import edit_yaml, problems_of
from helpers import inventory_settings as settings
from hipgate.flows import build_matrix, topology_from_inventory
from hipgate.inventory.load import load_inventory


def exchange(inv: Path, **changes: Any) -> None:
    def apply(d: dict) -> None:
        for key, value in changes.items():
            if value is None:
                d["hipgate"]["exchange"].pop(key, None)
            else:
                d["hipgate"]["exchange"][key] = value

    edit_yaml(settings(inv), apply)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"regions": ["440100", "450300"]}, "hipgate.exchange.regions.[1]", "not in this province"),
        ({"regions": ["4401"]}, "hipgate.exchange.regions.[0]", ""),
        ({"regions": []}, "hipgate.exchange.regions", ""),
        ({"schedule": "every quarter hour"}, "hipgate.exchange.schedule", "OnCalendar"),
        ({"schedule": "*-*-* *:00/15:00\nExecStart=/bin/sh"}, "hipgate.exchange.schedule", "OnCalendar"),
        ({"sender_code": "44000001\n"}, "hipgate.exchange.sender_code", ""),
        ({"sender_code": "440001"}, "hipgate.exchange.sender_code", ""),
        ({"sender_code": None}, "hipgate.exchange.sender_code", ""),
        ({"interface": "../missing-national.openapi.yaml"}, "hipgate.exchange.interface", "does not exist"),
        ({"interface": "doc.yaml; rm -rf /"}, "hipgate.exchange.interface", "safe file path"),
        ({"signtype": "RSA"}, "hipgate.exchange.signtype", ""),
        ({"relay_port": 80}, "hipgate.exchange.relay_port", ""),
        ({"max_lag_minutes": 0}, "hipgate.exchange.max_lag_minutes", ""),
        ({"platform_url": "http://national-platform/"}, "hipgate.exchange.platform_url", ""),
        ({"unknown": 1}, "hipgate.exchange.unknown", ""),
    ],
)
def test_a_wrong_exchange_setting_is_refused_naming_the_field(
    inventory: Path, changes: dict[str, Any], field: str, words: str
) -> None:
    exchange(inventory, **changes)
    found = [p for p in problems_of(inventory) if p.where.startswith(str(settings(inventory)))]
    matching = [p for p in found if p.where.endswith(field)]
    assert matching, [p.where for p in found]
    p = matching[0]
    assert p.zh and p.en and p.fix_zh and p.fix_en and words in p.en, p


def test_an_interface_document_beside_the_inventory_is_accepted_and_inside_it_refused(inventory: Path) -> None:
    (inventory.parent / "national.openapi.yaml").write_text("openapi: 3.1.0\n", encoding="utf-8")
    exchange(inventory, interface="../national.openapi.yaml")
    assert load_inventory(inventory).settings["exchange"]["interface"] == "../national.openapi.yaml"
    # Inside the inventory folder Ansible would parse it as one more inventory source.
    (inventory / "docs").mkdir()
    (inventory / "docs" / "national.openapi.yaml").write_text("openapi: 3.1.0\n", encoding="utf-8")
    exchange(inventory, interface="docs/national.openapi.yaml")
    assert str(inventory / "docs" / "national.openapi.yaml") in [p.where for p in problems_of(inventory)]
    (inventory / "docs" / "national.openapi.yaml").rename(inventory / "docs" / "national.openapi.yaml.txt")
    exchange(inventory, interface="docs/national.openapi.yaml.txt")  # a name Ansible skips: still refused
    assert [p for p in problems_of(inventory) if p.where.endswith("hipgate.exchange.interface")]


def test_a_file_in_a_subfolder_of_the_inventory_is_an_unvalidated_source(inventory: Path) -> None:
    """Ansible reads subfolders of an inventory directory as inventory too (checked: a host in sub/x.yml
    shows in ansible-inventory --list); hosts there would bypass every check."""
    (inventory / "sub").mkdir()
    (inventory / "sub" / "x.yml").write_text("all:\n  hosts:\n    evil: {ansible_host: 10.9.9.9}\n", encoding="utf-8")
    wheres = [p.where for p in problems_of(inventory)]
    assert str(inventory / "sub" / "x.yml") in wheres, wheres


def test_the_relay_is_an_implied_flow_from_the_middleware_to_the_frontend_only(inventory: Path) -> None:
    exchange(inventory, relay_port=9443)
    inv = load_inventory(inventory)
    matrix, problems = build_matrix(inv.settings, topology_from_inventory(inv.groups, inv.hosts), "x")
    assert not problems
    relay = [f for f in matrix.flows if f.name == "exchange-relay"]
    assert len(relay) == 1 and relay[0].implied
    assert relay[0].sources == ("middleware",) and relay[0].targets == ("frontend",)
    assert relay[0].proto == "tcp" and relay[0].ports == ((9443, 9443),)
    assert not [f for f in matrix.flows if "frontend" in f.sources and "middleware" in f.targets]
    edit_yaml(settings(inventory), lambda d: d["hipgate"].pop("exchange"))
    inv = load_inventory(inventory)
    matrix, _ = build_matrix(inv.settings, topology_from_inventory(inv.groups, inv.hosts), "x")
    assert not [f for f in matrix.flows if f.name == "exchange-relay"]
