"""Role variables set outside the inventory check (group_vars of the lab's simulated peer, extra vars)
are checked by the roles themselves before a template writes them: the role's own assert task,
run by ansible-playbook on this machine, refuses a newline or brace in a value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import ROOT

VPN_GOOD = {
    "vpn_endpoint_name": "natplat",
    "vpn_endpoint_peer_id": "vpn.hsa.example.gov.cn",
    "vpn_endpoint_local_id": "fe01",
    "vpn_endpoint_peer_address": "10.123.0.1",
    "vpn_endpoint_local_address": "10.86.200.2",
    "vpn_endpoint_local_subnets": ["10.86.200.0/28"],
    "vpn_endpoint_remote_subnets": ["10.123.0.0/16"],
}
TIME_GOOD = {
    "timesync_ntp_servers": ["ntp.example.cn", "10.1.1.1"],
    "timesync_serve_networks": [],
    "timesync_makestep": "1.0 3",
}


def role_task(tasks_file: str, name_part: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROOT / tasks_file).read_text(encoding="utf-8"))
    return next(t for t in tasks if name_part in t["name"])


def run_assert(tmp_path: Path, task: dict[str, Any], variables: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "vars": variables, "tasks": [task]}]
    book = tmp_path / "play.yml"
    book.write_text(yaml.safe_dump(play), encoding="utf-8")
    ansible = Path(sys.executable).with_name("ansible-playbook")
    return subprocess.run(
        [str(ansible), "-i", "localhost,", str(book)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": f"{ansible.parent}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1", "HOME": str(tmp_path)},
    )


VPN_BAD = [
    ("vpn_endpoint_peer_id", "vpn.example\n  remote { id = %any }"),
    ("vpn_endpoint_peer_id", "a b"),
    ("vpn_endpoint_local_id", "fe01}"),
    ("vpn_endpoint_peer_address", "10.123.0.1\n"),
    ("vpn_endpoint_local_subnets", ["10.86.200.0/28,0.0.0.0/0 "]),
]


def test_vpn_assert_accepts_good_values(tmp_path: Path) -> None:
    res = run_assert(tmp_path, role_task("roles/vpn_endpoint/tasks/preflight.yml", "strict form"), VPN_GOOD)
    assert res.returncode == 0, res.stdout[-2000:]


@pytest.mark.parametrize(("key", "value"), VPN_BAD, ids=[f"{k}={v!r}" for k, v in VPN_BAD])
def test_vpn_assert_refuses(tmp_path: Path, key: str, value: Any) -> None:
    res = run_assert(
        tmp_path, role_task("roles/vpn_endpoint/tasks/preflight.yml", "strict form"), {**VPN_GOOD, key: value}
    )
    assert res.returncode != 0 and "must be one word" in res.stdout, res.stdout[-2000:]


TIME_BAD = [
    ("timesync_ntp_servers", ["10.1.1.1 iburst\nallow all"]),
    ("timesync_ntp_servers", ["ntp.example.cn;"]),
    ("timesync_serve_networks", ["0.0.0.0/0\ncmdallow all"]),
    ("timesync_makestep", "1.0 3\nallow"),
]


def test_time_assert_accepts_good_values(tmp_path: Path) -> None:
    res = run_assert(tmp_path, role_task("roles/timesync/tasks/chrony.yml", "strict form"), TIME_GOOD)
    assert res.returncode == 0, res.stdout[-2000:]


@pytest.mark.parametrize(("key", "value"), TIME_BAD, ids=[f"{k}={json.dumps(v)}" for k, v in TIME_BAD])
def test_time_assert_refuses(tmp_path: Path, key: str, value: Any) -> None:
    res = run_assert(tmp_path, role_task("roles/timesync/tasks/chrony.yml", "strict form"), {**TIME_GOOD, key: value})
    assert res.returncode != 0 and "must be host names" in res.stdout, res.stdout[-2000:]
