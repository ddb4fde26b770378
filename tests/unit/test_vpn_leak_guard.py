"""The leak guard's nft file for both IPsec backends is accepted by nft (the lab runs only the
userspace backend, so the kernel backend's rule is proved here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from hipgate.paths import project_root

TEMPLATE = project_root() / "roles" / "vpn_endpoint" / "templates" / "hipgate-vpn.nft.j2"


def render(backend: str) -> str:
    text = TEMPLATE.read_text(encoding="utf-8").replace("table inet hipgate_vpn", "table inet hipgate_vpn_unit")
    return jinja2.Template(text, undefined=jinja2.StrictUndefined).render(
        vpn_endpoint_backend=backend,
        vpn_endpoint_remote_subnets=["10.123.0.0/16", "10.124.0.0/24"],
        vpn_endpoint_leak_log_prefix="hipgate-vpn-leak: ",
    )


@pytest.mark.parametrize("backend", ["kernel-netlink", "kernel-libipsec"])
def test_guard_refuses_what_bypasses_the_tunnel(backend: str, tmp_path: Path) -> None:
    text = render(backend)
    rules = [ln.strip() for ln in text.splitlines() if "ip daddr @platform" in ln]
    tunnel = "rt ipsec exists accept" if backend == "kernel-netlink" else 'oifname "ipsec*" accept'
    assert tunnel in rules[0] and "reject" in rules[-1] and len(rules) == 3
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("nft -c needs root and nft (CI has both)")
    path = tmp_path / "guard.nft"
    path.write_text(text, encoding="utf-8")
    # -c: parsed and checked by the kernel, nothing applied.
    res = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
