"""`hipgate preflight network` on the reference lab: passes as deployed, and names each injected fault
precisely - DNS server down, a name not resolving, a port blocked by the peer's firewall, the platform
route on the wrong NIC, the VPN down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_vpn_lab import wait_tunnel

from hipgate.lab import manager
from lab_reference import INV, LAB, hipgate, sh

DNS_CONF = "/etc/dnsmasq.d/hipgate-platform.conf"


def preflight(out: Path) -> tuple[int, list[dict]]:
    res = hipgate("preflight", "network", "-i", str(INV), "--out", str(out), check=False)
    assert res.returncode in (0, 3), res.stdout[-3000:] + res.stderr[-3000:]
    doc = json.loads((out / "preflight-network.json").read_text(encoding="utf-8"))
    assert (out / "preflight-network.html").is_file() and doc["hosts"] == ["frontend"]
    return res.returncode, doc["rows"]


def failures(rows: list[dict]) -> set[tuple[str, str]]:
    return {(r["check"], r["target"]) for r in rows if not r["ok"]}


@contextmanager
def injected(host: str, breaking: str, undo: str) -> Iterator[None]:
    sh(host, breaking)
    try:
        yield
    finally:
        sh(host, undo)


@pytest.fixture(scope="module")
def net(lab: dict) -> dict:
    lab_obj = manager.load(LAB)
    assert lab_obj is not None
    return {
        "cidr": str(lab_obj.platform_cidr),
        "dns": lab_obj.platform_address(53),
        "platform": lab_obj.platform_address(10),
        "sftp": lab_obj.platform_address(11),
        "gateway": lab_obj.gateway,
    }


def test_preflight_passes_on_the_deployed_lab(net: dict, tmp_path: Path) -> None:
    rc, rows = preflight(tmp_path)
    assert rc == 0 and not failures(rows), [r for r in rows if not r["ok"]]
    checks = {r["check"] for r in rows}
    assert checks == {"dns_server", "name", "tcp", "icmp", "route", "vpn", "time"}
    names = {r["target"]: r["observed_en"] for r in rows if r["check"] == "name"}
    assert names["platform.natplat.lab"] == f"resolves to {net['platform']}"
    route = next(r for r in rows if r["check"] == "route")
    assert "tunnel over eth1" in route["observed_en"]


def test_dns_server_down(net: dict, tmp_path: Path) -> None:
    with injected("natplat", "systemctl stop dnsmasq", "systemctl start dnsmasq"):
        rc, rows = preflight(tmp_path)
    assert rc == 3
    bad = failures(rows)
    assert ("dns_server", net["dns"]) in bad
    assert {("name", "platform.natplat.lab"), ("name", "sftp.natplat.lab")} <= bad
    # Nothing resolved, so no address to probe: the route, VPN and time still pass.
    assert {c for c, _ in bad} == {"dns_server", "name"}
    dns = next(r for r in rows if r["check"] == "dns_server")
    assert "UDP 53" in dns["fix_en"] and "UDP 53" in dns["fix_zh"]


def test_name_not_resolving(net: dict, tmp_path: Path) -> None:
    breaking = f"cp {DNS_CONF} /root/hgcase-dns && sed -i '/sftp.natplat.lab/d' {DNS_CONF} && systemctl restart dnsmasq"
    with injected("natplat", breaking, f"mv /root/hgcase-dns {DNS_CONF} && systemctl restart dnsmasq"):
        _, rows = preflight(tmp_path)
    assert failures(rows) == {("name", "sftp.natplat.lab")}
    row = next(r for r in rows if r["target"] == "sftp.natplat.lab")
    assert "NXDOMAIN" in row["observed_en"] and "sftp.natplat.lab" in row["fix_en"]


def test_port_blocked_by_the_peers_firewall(net: dict, tmp_path: Path) -> None:
    breaking = (
        "nft add table inet hgcase && nft add chain inet hgcase input "
        "'{ type filter hook input priority filter; }' && nft add rule inet hgcase input tcp dport 443 drop"
    )
    with injected("natplat", breaking, "nft delete table inet hgcase"):
        _, rows = preflight(tmp_path)
    assert failures(rows) == {("tcp", f"{net['platform']}:443"), ("tcp", f"{net['sftp']}:443")}
    row = next(r for r in rows if not r["ok"])
    assert "dropped on the way" in row["observed_en"] and "open TCP 443" in row["fix_en"]


def test_route_on_the_wrong_nic(net: dict, tmp_path: Path) -> None:
    # A more specific policy route sends the platform network out of eth0 instead of the tunnel.
    breaking = (
        f"ip route add {net['cidr']} via {net['gateway']} dev eth0 table 77 && "
        f"ip rule add to {net['cidr']} lookup 77 pref 77"
    )
    with injected("frontend", breaking, "ip rule del pref 77 && ip route flush table 77"):
        _, rows = preflight(tmp_path)
    route = next(r for r in rows if r["check"] == "route")
    assert not route["ok"] and "via eth0" in route["observed_en"] and "eth1" in route["fix_en"]
    # The leak guard refuses what would now leave in cleartext: the ports fail too, the VPN is still up.
    bad = {c for c, _ in failures(rows)}
    assert "route" in bad and "vpn" not in bad and "dns_server" in bad


def test_vpn_down(net: dict, tmp_path: Path) -> None:
    with injected("frontend", "systemctl stop strongswan", "systemctl start strongswan"):
        _, rows = preflight(tmp_path)
    vpn = next(r for r in rows if r["check"] == "vpn")
    assert not vpn["ok"] and "not established" in vpn["observed_en"] and "500/4500" in vpn["fix_en"]
    # Without the tunnel nothing of the platform is reachable, and the route no longer uses the leased line.
    assert {c for c, _ in failures(rows)} == {"vpn", "dns_server", "name", "route"}
    wait_tunnel()


def test_terminal_check_on_a_lab_host(lab: dict, tmp_path: Path) -> None:
    res = hipgate("preflight", "terminal", "-i", str(INV), "--limit", "outsider", "--out", str(tmp_path), check=False)
    assert res.returncode in (0, 3), res.stderr[-2000:]
    doc = json.loads((tmp_path / "preflight-terminal.json").read_text(encoding="utf-8"))
    got = {r["check"]: r for r in doc["rows"]}
    assert got["os"]["ok"] and "Debian" in got["os"]["target"]
    # What the host itself reports, judged against 2/8 GiB and 50/100 GiB.
    kib = int(sh("outsider", "awk '/^MemTotal:/ {print $2}' /proc/meminfo").stdout)
    assert got["ram"]["ok"] == (kib * 1024 >= 2 * 1024**3)
    free = int(sh("outsider", "df -B1 --output=avail / | tail -1").stdout)
    assert got["disk"]["ok"] == (free >= 50 * 1024**3)
    # The lab hosts have no browser: a real failure, with what to install.
    assert not got["browser"]["ok"] and "Chromium" in got["browser"]["fix_en"]
    assert res.returncode == 3 and (tmp_path / "preflight-terminal.html").is_file()
