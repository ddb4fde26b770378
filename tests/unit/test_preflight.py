"""Judging the network preflight's raw observations: each check passes on a good host and names the
fault (and what to ask for) on a broken one. The probe itself runs for real in tests/lab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import copy_example
from hipgate.inventory.load import load_inventory
from hipgate.preflight import network as pf

SA = """\
natplat: #1, ESTABLISHED, IKEv2, 1_i* 2_r
  local  'fe01' @ 10.86.1.10[4500]
  remote 'vpn.hsa.example.gov.cn' @ 10.123.0.1[4500]
  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384
  natplat: #1, reqid 1, INSTALLED, TUNNEL, ESP:AES_GCM_16-256
    local  10.86.200.0/28
    remote 10.123.0.0/16
"""


@pytest.fixture
def inv(tmp_path: Path):
    return load_inventory(copy_example(tmp_path))


def good_raw() -> dict:
    route = [{"dst": "10.123.0.1", "dev": "eth1", "prefsrc": "10.86.200.1"}]
    return {
        "dns": [
            {
                "server": "10.123.0.53",
                "name": "hsa.example.gov.cn",
                "rcode": 0,
                "answers": ["10.123.0.80"],
                "error": "",
                "ms": 1.0,
            }
        ],
        "tcp": [{"address": "10.123.0.80", "port": p, "result": "open", "ms": 1.0} for p in (80, 443)],
        "icmp": [{"address": "10.123.0.80", "rc": 0, "output": ""}],
        "routes": {"10.123.0.1": {"rc": 0, "stdout": json.dumps(route), "stderr": ""}},
        "vpn": {"rc": 0, "stdout": SA, "stderr": ""},
        "time": {
            "rc": 0,
            "stdout": "Reference ID    : 0A7B0001 (10.123.0.1)\nLeap status     : Normal\n",
            "stderr": "",
        },
    }


def failed(inv, raw: dict) -> dict[str, pf.Row]:
    rows = pf.judge(inv, "fe01", pf.spec_for(inv, "fe01"), raw)
    return {r.check: r for r in rows if not r.ok}


def test_spec_follows_the_inventory(inv) -> None:
    spec = pf.spec_for(inv, "fe01")
    assert spec["dns_servers"] == ["10.123.0.53"] and spec["names"] == ["hsa.example.gov.cn"]
    assert spec["tcp_ports"] == [80, 443] and spec["vpn"] is True
    # The platform route, and the VPN peer's (a userspace tunnel's carrier).
    assert spec["route_probes"] == ["10.123.0.1", "10.123.0.1"]
    assert pf.preflight_hosts(inv) == ["fe01"]


def test_good_host_passes_every_check(inv) -> None:
    rows = pf.judge(inv, "fe01", pf.spec_for(inv, "fe01"), good_raw())
    assert {r.check for r in rows} == set(pf.TITLES) and all(r.ok for r in rows), [r for r in rows if not r.ok]
    assert all(not r.fix_zh and not r.fix_en for r in rows)


def test_dns_server_down(inv) -> None:
    raw = good_raw()
    raw["dns"][0].update(rcode=None, answers=[], error="timeout")
    bad = failed(inv, raw)
    assert "UDP 53" in bad["dns_server"].fix_en and bad["dns_server"].target == "10.123.0.53"
    assert "no DNS server answered" in bad["name"].observed_en


def test_name_not_resolving(inv) -> None:
    raw = good_raw()
    raw["dns"][0].update(rcode=3, answers=[])
    bad = failed(inv, raw)
    assert set(bad) == {"name"} and "NXDOMAIN" in bad["name"].observed_en and "registered" in bad["name"].fix_en


def test_name_outside_the_platform_network(inv) -> None:
    raw = good_raw()
    raw["dns"][0]["answers"] = ["203.0.113.7"]
    bad = failed(inv, raw)
    assert "outside the platform network: 203.0.113.7" in bad["name"].observed_en


def test_port_blocked_on_the_way(inv) -> None:
    raw = good_raw()
    raw["tcp"][1].update(result="timeout")
    bad = failed(inv, raw)
    assert bad["tcp"].target == "10.123.0.80:443" and "open TCP 443 from 10.86.1.10" in bad["tcp"].fix_en


def test_route_on_the_wrong_nic(inv) -> None:
    raw = good_raw()
    raw["routes"]["10.123.0.1"]["stdout"] = json.dumps([{"dev": "eth0", "prefsrc": "10.86.1.10"}])
    bad = failed(inv, raw)
    assert "via eth0" in bad["route"].observed_en and "leased-line NIC eth1" in bad["route"].fix_en


def test_userspace_tunnel_route_counts_its_carrier(inv) -> None:
    raw = good_raw()
    raw["routes"]["10.123.0.1"]["stdout"] = json.dumps([{"dev": "ipsec0", "prefsrc": "10.86.200.1"}])
    spec = pf.spec_for(inv, "fe01")
    spec["route_probes"] = ["10.123.0.9", "10.123.0.1"]
    raw["routes"]["10.123.0.9"] = {"rc": 0, "stdout": json.dumps([{"dev": "ipsec0", "prefsrc": "10.86.200.1"}])}
    raw["routes"]["10.123.0.1"]["stdout"] = json.dumps([{"dev": "eth1", "prefsrc": "10.86.1.10"}])
    (route,) = [r for r in pf.judge(inv, "fe01", spec, raw) if r.check == "route"]
    assert route.ok and "tunnel over eth1" in route.observed_en


def test_vpn_down(inv) -> None:
    raw = good_raw()
    raw["vpn"]["stdout"] = ""
    bad = failed(inv, raw)
    assert "not established" in bad["vpn"].observed_en and "500/4500" in bad["vpn"].fix_en


def test_time_not_synchronised(inv) -> None:
    raw = good_raw()
    raw["time"]["stdout"] = "Reference ID    : 00000000 ()\nLeap status     : Not synchronised\n"
    assert "Not synchronised" in failed(inv, raw)["time"].observed_en


def test_probe_script_runs_on_plain_python_and_reports_refusals() -> None:
    # The probe as it runs on a host, against loopback: nothing listens on the port, no DNS answers.
    spec = {
        "dns_servers": ["127.0.0.1"],
        "names": ["x.invalid"],
        "tcp_ports": [9],
        "icmp": False,
        "route_probes": ["127.0.0.1"],
        "vpn": False,
        "time": False,
        "timeout": 0.5,
    }
    res = subprocess.run(
        [sys.executable, "-I", str(pf.PROBE_SOURCE), json.dumps(spec)], capture_output=True, text=True, check=True
    )
    raw = json.loads(res.stdout)
    assert raw["dns"][0]["rcode"] is None and raw["dns"][0]["error"] in ("timeout", "ECONNREFUSED")
    assert raw["tcp"] == [] and raw["routes"]["127.0.0.1"]["rc"] == 0


def test_host_that_cannot_be_probed_is_one_failed_row(inv) -> None:
    class Refused:
        def run(self, command: str) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(["ssh"], 255, "", "ssh: connect to host 10.86.1.10 port 22: refused")

    (row,) = pf.probe_host(inv, "fe01", Refused())
    assert (row.check, row.ok, row.target) == ("probe", False, "10.86.1.10")
    assert "port 22: refused" in row.observed_en and "ssh and sudo" in row.fix_en
