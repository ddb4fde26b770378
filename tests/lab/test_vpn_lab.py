"""The VPN to the (simulated) national platform on the reference lab, as deployed by site.yml alone:
the tunnel is up with certificates and strong algorithms, the platform's HTTPS endpoint answers the
front-end server through it, and nothing reaches the platform without it."""

from __future__ import annotations

import json

from hipgate.conformance.vpn_checks import WEAK, parse_list_sas
from hipgate.lab import manager
from hipgate.lab.artifacts import PLATFORM_NAMES
from lab_reference import LAB, sh, wait_tunnel

LEAK_COUNTER = "nft list table inet hipgate_vpn | grep -o 'counter packets [0-9]*' | grep -o '[0-9]*$'"


def platform_https() -> str:
    """The simulated platform's HTTPS address (platform.natplat.lab)."""
    lab = manager.load(LAB)
    assert lab is not None
    return lab.platform_address(PLATFORM_NAMES[0][1])


def health(src: str, address: str) -> tuple[int, str]:
    """GET /api/health over HTTPS, the certificate verified against the lab CA (it names the address)."""
    script = (
        "import http.client, ssl, sys\n"
        "ctx = ssl.create_default_context(cafile='/etc/hipgate/pki/ca.crt')\n"
        f"c = http.client.HTTPSConnection('{address}', 443, context=ctx, timeout=5)\n"
        "c.request('GET', '/api/health')\n"
        "print(c.getresponse().read().decode())\n"
    )
    res = sh(src, "python3 -", stdin=script, check=False)
    return res.returncode, res.stdout + res.stderr


def test_tunnel_up_with_certificates_and_strong_algorithms(lab: dict) -> None:
    sas = parse_list_sas(wait_tunnel())
    assert [sa.state for sa in sas] == ["ESTABLISHED"], sas
    (sa,) = sas
    (child,) = sa.children
    assert child.state == "INSTALLED" and child.remote_ts == [lab["inv"].settings["network"]["platform_cidr"]]
    assert not WEAK.search(f"{sa.suite} {child.esp}"), (sa.suite, child.esp)
    conns = sh("frontend", "swanctl --list-conns 2>/dev/null").stdout
    assert "public key authentication" in conns and "pre-shared key" not in conns


def test_platform_reached_only_through_the_tunnel(lab: dict) -> None:
    target = platform_https()
    wait_tunnel()
    rc, out = health("frontend", target)
    assert rc == 0 and json.loads(out)["status"] == "ok", out
    route = json.loads(sh("frontend", f"ip -j route get {target}").stdout)[0]
    assert route["dev"].startswith("ipsec"), route
    before = int(sh("frontend", LEAK_COUNTER).stdout)
    sh("frontend", "systemctl stop strongswan")
    try:
        rc, out = health("frontend", target)
        assert rc != 0, f"reached the platform with the VPN stopped: {out}"
        # Refused on the host by the leak guard, not merely lost on the way.
        assert int(sh("frontend", LEAK_COUNTER).stdout) > before
    finally:
        sh("frontend", "systemctl start strongswan")
    wait_tunnel()
    rc, out = health("frontend", target)
    assert rc == 0 and json.loads(out)["status"] == "ok", out


def test_hosts_outside_the_protected_subnet_do_not_reach_the_platform(lab: dict) -> None:
    target = platform_https()
    for src in ("middleware", "outsider"):
        rc, out = health(src, target)
        assert rc != 0, f"{src} reached the platform: {out}"
