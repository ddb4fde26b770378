"""Verify the tunnel for real: certificate-authenticated IKEv2 with the strong suite, traffic through
it, and no platform traffic without it (the leak guard)."""

import json
import time

import pytest

testinfra_hosts = ["ansible://frontend"]


def _platform_address(host, offset: int = 10) -> str:
    out = host.run("sudo swanctl --list-sas --child natplat 2>/dev/null").stdout
    remote = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("remote 10."))
    return remote.rsplit(".", 1)[0] + f".{offset}"


def _tcp(host, address: str, port: int) -> int:
    return host.run(f'timeout 3 bash -c "</dev/tcp/{address}/{port}"').rc


def _wait_sa(host, seconds: int = 40) -> str:
    for _ in range(seconds):
        out = host.run("sudo swanctl --list-sas --child natplat 2>/dev/null").stdout
        if "INSTALLED" in out:
            return out
        time.sleep(1)
    pytest.fail(f"no CHILD_SA within {seconds} s")


def test_strongswan_enabled(host):
    svc = host.service("strongswan")
    assert svc.is_running and svc.is_enabled


def test_sa_uses_certificates_and_the_strong_suite(host):
    out = _wait_sa(host)
    assert "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384" in out
    assert "ESP:AES_GCM_16-256" in out
    conns = host.run("sudo swanctl --list-conns 2>/dev/null").stdout
    assert "public key authentication" in conns and "pre-shared key" not in conns


def test_secrets_and_config_are_private(host):
    for path in ("/etc/swanctl/private/hipgate-host.pem", "/etc/swanctl/conf.d/hipgate.conf"):
        assert host.check_output(f"sudo stat -c '%a %U' {path}") == "600 root", path


def test_traffic_reaches_the_platform_through_the_tunnel(host):
    _wait_sa(host)
    target = _platform_address(host)
    route = json.loads(host.run(f"ip -j route get {target}").stdout)[0]
    assert route["dev"].startswith("ipsec"), route
    assert _tcp(host, target, 22) == 0


def test_no_platform_traffic_without_the_tunnel(host):
    target = _platform_address(host)
    counter = "sudo nft list table inet hipgate_vpn | grep -o 'counter packets [0-9]*'"
    before = int(host.run(counter).stdout.split()[-1])
    host.run("sudo systemctl stop strongswan")
    try:
        assert _tcp(host, target, 22) != 0
        assert int(host.run(counter).stdout.split()[-1]) > before, "refused by the leak guard, not by chance"
    finally:
        host.run("sudo systemctl start strongswan")
    _wait_sa(host)
    assert _tcp(host, target, 22) == 0
