"""The VPN to the (simulated) national platform on the reference lab, as deployed by site.yml alone:
the tunnel is up with certificates and strong algorithms, the platform's HTTPS endpoint answers the
front-end server through it, and nothing reaches the platform without it."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

from hipgate.conformance.vpn_checks import WEAK, parse_list_sas
from hipgate.lab import manager
from hipgate.lab.artifacts import PLATFORM_NAMES
from hipgate.paths import project_root
from hipgate.runner import ansible_env
from lab_reference import INV, LAB, sh, wait_tunnel

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


def vpn_play(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The vpn_endpoint role on both ends (natplat's responder settings come from the lab inventory)."""
    book = tmp_path / "vpn.yml"
    book.write_text(
        "- hosts: natplat:frontend\n  gather_facts: false\n  roles: [{role: vpn_endpoint}]\n", encoding="utf-8"
    )
    cmd = ["ansible-playbook", "-i", str(INV), str(book), *extra]
    return subprocess.run(cmd, env=ansible_env(), cwd=project_root(), capture_output=True, text=True, check=False)


def reconnect() -> str:
    """A new IKE SA under the configuration now loaded (a reload keeps the SAs it finds); returns how
    charon authenticated the peer for it, from its journal."""
    since = sh("frontend", "date +%s").stdout.strip()
    sh("frontend", "swanctl --terminate --ike natplat >/dev/null 2>&1; true")
    sh("frontend", "swanctl --initiate --child natplat >/dev/null 2>&1; true")
    wait_tunnel()
    log = sh("frontend", f"journalctl -u strongswan --since @{since} --no-pager -o cat").stdout
    lines = [ln for ln in log.splitlines() if "authentication of 'natplat'" in ln and "successful" in ln]
    assert lines, log[-2000:]
    return lines[-1]


def test_psk_fallback_then_back_to_certificates(lab: dict, tmp_path: Path) -> None:
    psk = tmp_path / "vpn.psk"
    secret = "hgpsk-" + secrets.token_urlsafe(32)
    psk.write_text(secret + "\n", encoding="utf-8")
    psk.chmod(0o600)
    res = vpn_play(tmp_path, "-e", "vpn_endpoint_auth=psk", "-e", f"vpn_endpoint_psk_file={psk}")
    try:
        assert res.returncode == 0, res.stdout[-3000:]
        assert secret not in res.stdout + res.stderr, "the pre-shared key reached Ansible's output"
        assert "with pre-shared key successful" in reconnect()
        conns = sh("frontend", "swanctl --list-conns 2>/dev/null").stdout
        assert "pre-shared key authentication" in conns and "public key" not in conns
        assert sh("frontend", "stat -c '%a %U' /etc/swanctl/conf.d/hipgate-secrets.conf").stdout.strip() == "600 root"
        rc, out = health("frontend", platform_https())
        assert rc == 0 and json.loads(out)["status"] == "ok", out
    finally:
        back = vpn_play(tmp_path)
        assert back.returncode == 0, back.stdout[-3000:]
    assert "pre-shared key" not in reconnect()
    assert "public key authentication" in sh("frontend", "swanctl --list-conns 2>/dev/null").stdout
    # With certificates the key file is gone from both ends.
    for host in ("frontend", "natplat"):
        assert sh(host, "test -e /etc/swanctl/conf.d/hipgate-secrets.conf", check=False).returncode != 0


def test_weak_proposal_refused_before_anything_changes(lab: dict, tmp_path: Path) -> None:
    before = sh("frontend", "sha256sum /etc/swanctl/conf.d/hipgate.conf").stdout
    res = vpn_play(tmp_path, "--limit", "frontend", "-e", '{"vpn_endpoint_ike_proposals": ["3des-sha1-modp1024"]}')
    said = " ".join((res.stdout + res.stderr).split())  # Ansible wraps long messages
    assert res.returncode != 0 and "names 3des, sha1, modp1024" in said, said[-3000:]
    assert sh("frontend", "sha256sum /etc/swanctl/conf.d/hipgate.conf").stdout == before
