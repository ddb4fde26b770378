"""Reading `swanctl --list-sas` as the VPN checks and the lab tests do (output captured on the lab)."""

from __future__ import annotations

from hipgate.conformance.vpn_checks import WEAK, _covers, parse_list_sas

STRONG = """\
natplat: #2, ESTABLISHED, IKEv2, c2aacf324dbaa081_i* 29102e673a1b04bd_r
  local  'frontend' @ 10.233.1.10[4500]
  remote 'natplat' @ 10.233.1.11[4500]
  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384
  established 0s ago, rekeying in 14352s
  natplat: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256
    installed 0s ago, rekeying in 3434s, expires in 3960s
    in  0e4764e0,      0 bytes,     0 packets
    out 5834652c,      0 bytes,     0 packets
    local  10.234.1.0/24
    remote 10.232.1.0/24
"""

WEAK_SA = """\
natplat: #1, ESTABLISHED, IKEv2, 8d6a78627f2c6f37_i* e641d5c5a72dbd90_r
  local  'frontend' @ 10.233.1.10[500]
  remote 'natplat' @ 10.233.1.11[500]
  3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024
  natplat: #1, reqid 1, INSTALLED, TUNNEL, ESP:AES_CBC-128/HMAC_SHA1_96
    local  10.234.1.10/32
    remote 10.232.1.0/25 10.232.1.128/25
"""


def test_strong_sa_is_read_with_its_suite_and_selectors() -> None:
    (sa,) = parse_list_sas(STRONG)
    assert (sa.name, sa.state, sa.suite) == ("natplat", "ESTABLISHED", "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384")
    assert sa.local == "'frontend' @ 10.233.1.10[4500]"
    (child,) = sa.children
    assert (child.state, child.esp) == ("INSTALLED", "ESP:AES_GCM_16-256")
    assert child.local_ts == ["10.234.1.0/24"] and child.remote_ts == ["10.232.1.0/24"]
    assert not WEAK.search(f"{sa.suite} {child.esp}")


def test_weak_algorithms_are_named() -> None:
    (sa,) = parse_list_sas(WEAK_SA)
    found = {m.group(0) for m in WEAK.finditer(f"{sa.suite} {sa.children[0].esp}")}
    assert found == {"3DES", "SHA1", "MODP_1024"}


def test_selectors_cover_a_subnet_only_as_a_whole() -> None:
    (sa,) = parse_list_sas(WEAK_SA)
    remote = sa.children[0].remote_ts
    assert _covers(remote, "10.232.1.0/25") and not _covers(remote, "10.232.1.0/24")
    assert _covers(["10.232.0.0/16"], "10.232.1.0/24")


def test_nothing_up_reads_as_no_sa() -> None:
    assert parse_list_sas("") == []
    (sa,) = parse_list_sas("natplat: #3, CONNECTING, IKEv2, 1_i* 0_r\n  local  'frontend' @ 10.233.1.10[500]\n")
    assert sa.state == "CONNECTING" and sa.children == []
