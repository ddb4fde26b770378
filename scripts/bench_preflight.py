"""Time `hipgate preflight network` on 20 and on 100 lab hosts, in one run of one lab.

node001 stands in for the platform: dnsmasq answers the platform name with its own address; the
lab's subnet is the "platform network" and ssh (22) the platform port, so every check has a real
target. The bare lab nodes have no chrony: the `time` row fails on each, which the results say.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAB = "bench-pf"
SIZES = (20, 100)
NAME = "platform.bench.lab"


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}{res.stderr[-2000:]}")
    return res


def inventory(lab_inventory: Path, target: Path) -> tuple[Path, list[str], str]:
    """node001 is the platform; the other 100 are front-end servers (the groups the schema requires
    are given to node002/node003; only `frontend` is checked)."""
    shutil.copytree(lab_inventory, target)
    doc = yaml.safe_load((target / "hosts.yml").read_text(encoding="utf-8"))
    hosts = {n: v for g in doc["all"]["children"].values() for n, v in g["hosts"].items()}
    names = sorted(hosts)
    platform_host, checked = names[0], names[1:]
    layout = {
        "natplat": [platform_host],
        "frontend": checked,
        **{g: checked[:1] for g in ("database", "middleware", "bastion", "vault")},
        "backup_sites": checked[:2],
    }
    doc["all"]["children"] = {g: {"hosts": {n: hosts[n] for n in ns}} for g, ns in layout.items()}
    (target / "hosts.yml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    path = target / "group_vars" / "all" / "hipgate.yml"
    conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    subnet = ".".join(hosts[platform_host]["ansible_host"].split(".")[:3]) + ".0/24"
    conf["hipgate"]["network"].update(
        platform_cidr=subnet,
        dns_servers=[hosts[platform_host]["ansible_host"]],
        platform_names=[NAME],
        platform_ports=[22],
        leased_line_interface="eth0",
    )
    path.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")
    return target, checked, platform_host


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-preflight.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab) / 需要 root 权限")
    hipgate = str(BIN / "hipgate")
    run([hipgate, "lab", "down", "--name", LAB], check=False)
    work = Path(tempfile.mkdtemp(prefix="hipgate-bench-"))
    results: dict[int, dict] = {}
    try:
        run([hipgate, "lab", "up", "--name", LAB, "--count", str(max(SIZES) + 1)])
        lab_dir = Path(os.environ.get("HIPGATE_STATE", "/var/lib/hipgate")) / "labs" / LAB
        inv, checked, plat = inventory(lab_dir / "inventory", work / "bench")
        address = yaml.safe_load((inv / "hosts.yml").read_text())["all"]["children"]["natplat"]["hosts"][plat]
        dns = f"listen-address={address['ansible_host']}\nbind-interfaces\nno-resolv\nno-hosts\n"
        dns += f"host-record={NAME},{address['ansible_host']}\n"
        ssh = ["ssh", "-F", str(lab_dir / "ssh_config"), plat]
        run(
            [
                *ssh,
                "sudo DEBIAN_FRONTEND=noninteractive sh -c 'apt-get -qq update && "
                "apt-get -qq install -y --no-install-recommends dnsmasq'",
            ]
        )
        subprocess.run([*ssh, "sudo tee /etc/dnsmasq.d/bench.conf >/dev/null"], input=dns, text=True, check=True)
        run([*ssh, "sudo systemctl restart dnsmasq"])
        run([hipgate, "inventory", "check", str(inv)])
        for size in SIZES:
            out = work / f"pf{size}"
            start = time.monotonic()
            res = run(
                [
                    hipgate,
                    "preflight",
                    "network",
                    "-i",
                    str(inv),
                    "--limit",
                    ",".join(checked[:size]),
                    "--out",
                    str(out),
                ],
                check=False,
            )
            wall = time.monotonic() - start
            if res.returncode not in (0, 3):
                raise SystemExit(f"preflight failed to run:\n{res.stdout[-3000:]}{res.stderr[-2000:]}")
            doc = json.loads((out / "preflight-network.json").read_text(encoding="utf-8"))
            failed = sorted({r["check"] for r in doc["rows"] if not r["ok"]})
            results[size] = {
                "wall": wall,
                "probe": doc["seconds"],
                "rows": len(doc["rows"]),
                "failed": failed,
                "failed_rows": doc["failed"],
            }
    finally:
        run([hipgate, "lab", "down", "--name", LAB], check=False)
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Network preflight benchmark / 网络预检基准",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by `scripts/bench-preflight` on "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}: one lab of "
        f"{max(SIZES) + 1} hosts; node001 answers DNS for the platform name, the others are checked "
        "(DNS server, name, TCP 22, ICMP, route, time; no VPN on these hosts). Goal: ≤ 60 s for 100 hosts.",
        "",
        "| hosts | `hipgate preflight network` (wall) | probing | checks | failed checks |",
        "|---|---|---|---|---|",
    ]
    for size, r in results.items():
        lines.append(
            f"| {size} | {r['wall']:.1f} s | {r['probe']:.1f} s | {r['rows']} | "
            f"{r['failed_rows']} ({', '.join(r['failed']) or 'none'}) |"
        )
    lines += [
        "",
        "`time` fails on every bare lab node: they have no chrony (the timesync role is not applied here).",
        "",
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
