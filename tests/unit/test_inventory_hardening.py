"""A poisoned inventory: every value Ansible reads for hipgate is validated, free strings that reach a
config have a strict format, wide-open settings need an acknowledgement, and hostile files
(/dev/zero, huge files, YAML alias bombs) are refused before they cost memory or time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import edit_yaml, problems_of
from helpers import inventory_hosts as hosts
from helpers import inventory_settings as settings
from hipgate.errors import Problem
from hipgate.inventory.load import load_inventory


def problem_at(inv: Path, file: Path, field: str) -> Problem:
    found = problems_of(inv)
    matching = [p for p in found if p.where.startswith(str(file)) and p.where.endswith(field)]
    assert matching, [p.render() for p in found]
    p = matching[0]
    assert p.zh and p.en and p.fix_zh and p.fix_en
    assert any("\u4e00" <= ch <= "\u9fff" for ch in p.zh + p.fix_zh)
    return p


def set_in(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value


# --- hostile files -------------------------------------------------------------------------------


def _bounded_load(inv: Path) -> subprocess.CompletedProcess[str]:
    """Load the inventory in a child with 512 MiB of address space and 20 s: a hang or a memory
    blow-up fails the test instead of the machine."""
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\n"
        "from hipgate.errors import UserError\n"
        "from hipgate.inventory.load import load_inventory\n"
        "try:\n"
        f"    load_inventory({str(inv)!r})\n"
        "except UserError as e:\n"
        "    print(e)\n"
        "    sys.exit(e.exit_code)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False)


def test_hosts_file_pointing_at_dev_zero_is_refused(inventory: Path) -> None:
    hosts(inventory).unlink()
    hosts(inventory).symlink_to("/dev/zero")
    started = time.monotonic()
    res = _bounded_load(inventory)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert "not a regular file" in res.stdout and "hosts.yml" in res.stdout
    assert time.monotonic() - started < 15


def test_oversized_file_is_refused_before_reading(inventory: Path) -> None:
    with settings(inventory).open("a", encoding="utf-8") as f:
        f.write("#" + "x" * (3 << 20) + "\n")
    p = problem_at(inventory, settings(inventory), "hipgate.yml")
    assert "too large" in p.en


def test_billion_laughs_is_refused_quickly(inventory: Path) -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    prev = "a"
    for name in "bcdefghijk":
        bomb += f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]\n"
        prev = name
    settings(inventory).write_text(bomb, encoding="utf-8")
    started = time.monotonic()
    res = _bounded_load(inventory)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert "alias" in res.stdout
    assert time.monotonic() - started < 15


def test_any_alias_is_refused(inventory: Path) -> None:
    text = settings(inventory).read_text(encoding="utf-8")
    text = text.replace("dns_servers: [10.123.0.53]", "dns_servers: &d [10.123.0.53]", 1)
    text = text.replace("ntp_servers: [10.123.0.123]", "ntp_servers: *d", 1)
    settings(inventory).write_text(text, encoding="utf-8")
    found = problems_of(inventory)
    assert any("alias" in p.en for p in found), [p.render() for p in found]


# --- overrides Ansible would read ----------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    [
        "host_vars/fe01.yml",
        "host_vars/fe01/net.yml",
        "group_vars/frontend.yml",
        "group_vars/frontend/x.yaml",
        "group_vars/all/zz-override.yml",
        "group_vars/all.yml",
    ],
)
def test_hipgate_override_elsewhere_is_refused(inventory: Path, rel: str) -> None:
    target = inventory / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    evil = {
        "hipgate": {
            "flows": [
                {
                    "name": "x",
                    "from": ["0.0.0.0/0"],
                    "to": ["all"],
                    "proto": "tcp dport 1-65535 accept\n accept #",
                    "ports": [1],
                    "purpose": "p",
                }
            ]
        }
    }
    target.write_text(yaml.safe_dump(evil), encoding="utf-8")
    p = problem_at(inventory, target, "hipgate")
    assert "group_vars/all/hipgate.yml" in p.en


@pytest.mark.parametrize("name", ["hosts2.yml", "extra.ini", "more", "x.json"])
def test_second_inventory_source_is_refused(inventory: Path, name: str) -> None:
    (inventory / name).write_text("all:\n  vars:\n    hipgate: {}\n", encoding="utf-8")
    (inventory / "NOTES.md").write_text("notes are fine\n", encoding="utf-8")
    p = problem_at(inventory, inventory / name, name)
    assert "inventory source" in p.en


@pytest.mark.parametrize("rel", ["host_vars/fe01.yml", "group_vars/all/zz.yml"])
def test_null_hipgate_override_is_refused(inventory: Path, rel: str) -> None:
    # `hipgate: ~` would hand the roles their defaults (the firewall's is 0.0.0.0/0 for ssh).
    target = inventory / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("hipgate: ~\n", encoding="utf-8")
    p = problem_at(inventory, target, "hipgate")
    assert "group_vars/all/hipgate.yml" in p.en


def test_hipgate_in_hosts_yml_vars_is_refused(inventory: Path) -> None:
    edit_yaml(hosts(inventory), lambda d: d["all"]["vars"].update({"hipgate": {"province": "x"}}))
    problem_at(inventory, hosts(inventory), "all.vars.hipgate")


def test_connection_vars_in_host_vars_are_validated(inventory: Path) -> None:
    target = inventory / "host_vars" / "db01.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump({"ansible_user": "hipgate\n  ProxyCommand sh -c id"}), encoding="utf-8")
    problem_at(inventory, target, "ansible_user")


# --- strict formats ------------------------------------------------------------------------------

NEWLINE = "x\nProxyCommand touch /tmp/pwn"

SETTINGS_INJECTIONS = [
    ("hipgate.database.clients.0.role", "exchange_app\n"),
    ("hipgate.database.clients.0.database", "exchange\n"),
    ("hipgate.database.databases.0.owner", "exchange_app\n"),
    ("hipgate.network.leased_line_interface", "eth1\n"),
    ("hipgate.network.platform_names.0", "hsa.example.gov.cn\n"),
    ("hipgate.custodians.0.id", "zhang.san\n"),
    ("hipgate.flows.0.name", "app-to-db\n"),
    ("hipgate.vpn.peer_id", "vpn.hsa.example.gov.cn\n  remote { id = %any }"),
    ("hipgate.vpn.peer_id", "a b"),
    ("hipgate.time.ntp_servers.0", "10.123.0.123 iburst\nallow all"),
    ("hipgate.time.ntp_servers.0", "pool.example.cn;"),
    ("hipgate.backup.full_schedule", "Sun *-*-* 01:00\nExecStart=/bin/sh"),
    ("hipgate.backup.diff_schedule", "$(id)"),
    ("hipgate.backup.restore_test_schedule", "Sat *-*-* 03:00 ; rm"),
    ("hipgate.flows.0.from.0", "middleware\n"),
    ("hipgate.flows.0.to.0", "database }"),
    ("hipgate.flows.0.purpose", "ok\naccept"),
    ("hipgate.database.clients.0.from", "middleware\n"),
    ("hipgate.province", "x\ny"),
    ("hipgate.custodians.0.name", "{{ lookup('pipe', 'id') }}"),
    ("hipgate.custodians.0.organisation", "a\rb"),
    ("hipgate.custody.vault_addr", "https://vault.example:8200\n"),
    ("hipgate.custody.vault_addr", 'https://a"b:8200'),
    ("hipgate.custody.ca_file", "/etc/ca.crt\n"),
]


@pytest.mark.parametrize(("path", "value"), SETTINGS_INJECTIONS, ids=[f"{p}={v!r}" for p, v in SETTINGS_INJECTIONS])
def test_settings_injection_refused(inventory: Path, path: str, value: str) -> None:
    def change(d: dict[str, Any]) -> None:
        if path == "hipgate.custody.ca_file" or path == "hipgate.custody.vault_addr":
            d["hipgate"]["custody"].setdefault("ca_file", "/etc/ca.crt")
        set_in(d, path, value)

    edit_yaml(settings(inventory), change)
    found = problems_of(inventory)
    dotted = path.replace(".0", ".[0]")
    assert any(p.where.startswith(str(settings(inventory))) and dotted in p.where for p in found), [
        p.render() for p in found
    ]


HOST_INJECTIONS = [
    ("ansible_user", "hipgate\n  ProxyCommand touch /tmp/pwn"),
    ("ansible_user", "hip gate"),
    ("ansible_ssh_private_key_file", "/k\n  ProxyCommand id"),
    ("ansible_python_interpreter", "/usr/bin/python3; id"),
    ("hipgate_site_owner", "a\nb"),
]


@pytest.mark.parametrize(("key", "value"), HOST_INJECTIONS, ids=[f"{k}={v!r}" for k, v in HOST_INJECTIONS])
def test_host_var_injection_refused(inventory: Path, key: str, value: str) -> None:
    edit_yaml(hosts(inventory), lambda d: d["all"]["children"]["database"]["hosts"]["db01"].update({key: value}))
    problem_at(inventory, hosts(inventory), f"db01.{key}")


def test_all_vars_ansible_user_validated(inventory: Path) -> None:
    edit_yaml(hosts(inventory), lambda d: d["all"]["vars"].update({"ansible_user": NEWLINE}))
    problem_at(inventory, hosts(inventory), "all.vars.ansible_user")


def test_ssh_common_args_cannot_run_commands(inventory: Path) -> None:
    edit_yaml(
        hosts(inventory),
        lambda d: d["all"]["vars"].update({"ansible_ssh_common_args": "-o ProxyCommand='sh -c id'"}),
    )
    problem_at(inventory, hosts(inventory), "all.vars.ansible_ssh_common_args")


@pytest.mark.parametrize("proto", ["tcp dport 1-65535 accept\n accept #", "tcp\n", "TCP", " tcp"])
def test_flow_proto_exact(inventory: Path, proto: str) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["flows"][0].update({"proto": proto}))
    problem_at(inventory, settings(inventory), "hipgate.flows.[0].proto")


@pytest.mark.parametrize("role", ["postgres", "hipgate_vault", "pg_read_server_files", "pg_execute_server_program"])
def test_reserved_roles_refused_as_clients(inventory: Path, role: str) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["database"]["clients"][0].update({"role": role}))
    p = problem_at(inventory, settings(inventory), "hipgate.database.clients.[0].role")
    assert "reserved" in p.en


def test_reserved_role_refused_as_owner(inventory: Path) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["database"]["databases"][0].update({"owner": "postgres"}))
    problem_at(inventory, settings(inventory), "hipgate.database.databases.[0].owner")


@pytest.mark.parametrize(
    "schedule", ["Sun *-*-* 01:00", "Mon..Sat *-*-* 01:00", "daily", "*-*-* 02:30:00", "Mon,Wed 04:00"]
)
def test_valid_schedules_pass(inventory: Path, schedule: str) -> None:
    edit_yaml(settings(inventory), lambda d: d["hipgate"]["backup"].update({"full_schedule": schedule}))
    load_inventory(inventory)


# --- wide-open settings ---------------------------------------------------------------------------


def _wide_management(d: dict[str, Any]) -> None:
    # A /12: wide, and still clear of the example's other flows (0.0.0.0/0 would overlap them).
    d["hipgate"]["network"]["management_networks"] = ["172.16.0.0/12"]


def _wide_flow(d: dict[str, Any]) -> None:
    d["hipgate"]["flows"].append(
        {"name": "web", "from": ["0.0.0.0/0"], "to": ["frontend"], "proto": "tcp", "ports": [9443], "purpose": "web"}
    )


def _http_vault(d: dict[str, Any]) -> None:
    d["hipgate"]["custody"]["vault_addr"] = "http://10.86.1.50:8200"


WIDE = [
    ("wide_management_network", _wide_management, "hipgate.network.management_networks.[0]"),
    ("wide_flow_source", _wide_flow, "hipgate.flows.[4].from"),
    ("plaintext_vault_addr", _http_vault, "hipgate.custody.vault_addr"),
]


@pytest.mark.parametrize(("risk", "change", "field"), WIDE, ids=[w[0] for w in WIDE])
def test_wide_open_needs_acknowledgement(inventory: Path, risk: str, change: Any, field: str) -> None:
    edit_yaml(settings(inventory), change)
    p = problem_at(inventory, settings(inventory), field)
    assert risk in p.en + p.fix_en
    # Acknowledged with a reason: accepted, and the acknowledgement is kept for the report.
    edit_yaml(
        settings(inventory),
        lambda d: d["hipgate"].update({"acknowledge": [{"risk": risk, "reason": "实验 / lab only"}]}),
    )
    inv = load_inventory(inventory)
    assert [a["risk"] for a in inv.acknowledged] == [risk]


def test_acknowledgement_needs_a_reason(inventory: Path) -> None:
    edit_yaml(settings(inventory), _wide_management)
    edit_yaml(
        settings(inventory), lambda d: d["hipgate"].update({"acknowledge": [{"risk": "wide_management_network"}]})
    )
    problem_at(inventory, settings(inventory), "hipgate.acknowledge.[0].reason")


def test_lab_inventory_passes_the_stricter_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inventory `hipgate lab up` writes (settings, role vars, connection vars) stays valid."""
    from hipgate.lab import artifacts

    monkeypatch.setenv("HIPGATE_STATE", str(tmp_path / "state"))  # its signing keys land in the lab's directory
    from hipgate.lab.topology import build_lab, host_specs

    lab = build_lab("t-unit", 5, host_specs(None, None))
    inv = load_inventory(artifacts.write_inventory(lab, tmp_path / "lab"))
    assert inv.acknowledged == [] and inv.group_hosts("database")


def test_memory_limit_helper_is_real() -> None:
    # The bounded loader above must really cap memory: allocating 1 GiB under it fails.
    code = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))\nb = bytearray(1 << 30)\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False)
    assert res.returncode != 0 and "MemoryError" in res.stderr
