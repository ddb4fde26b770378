"""Time `hipgate preflight network` on 20 and on 100 lab hosts, in one run of one lab.

node001 stands in for the platform: dnsmasq answers the platform name with its own address; the
lab's subnet is the "platform network" and ssh (22) the platform port, so every check has a real
target. The bare lab nodes have no chrony: the `time` row fails on each, which the results say.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import HIPGATE, ROOT, lab_inventory, measured_by, regroup, run, update_settings, write_results

LAB = "bench-pf"
SIZES = (20, 100)
NAME = "platform.bench.lab"


def layout(names: list[str]) -> dict[str, list[str]]:
    """node001 is the platform; the other 100 are front-end servers (the groups the schema requires
    are given to node002/node003; only `frontend` is checked)."""
    checked = names[1:]
    return {
        "natplat": names[:1],
        "frontend": checked,
        **{g: checked[:1] for g in ("database", "middleware", "bastion", "vault")},
        "backup_sites": checked[:2],
    }


def inventory(target: Path) -> tuple[list[str], str, str]:
    hosts = regroup(lab_inventory(LAB), target, layout)
    platform_host, *checked = sorted(hosts)
    address = hosts[platform_host]["ansible_host"]

    def bench_network(hip: dict) -> None:
        hip["network"].update(
            platform_cidr=".".join(address.split(".")[:3]) + ".0/24",
            dns_servers=[address],
            platform_names=[NAME],
            platform_ports=[22],
            leased_line_interface="eth0",
        )

    update_settings(target, bench_network)
    return checked, platform_host, address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-preflight.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab) / 需要 root 权限")
    run([HIPGATE, "lab", "down", "--name", LAB], check=False)
    work = Path(tempfile.mkdtemp(prefix="hipgate-bench-"))
    results: dict[int, dict] = {}
    try:
        run([HIPGATE, "lab", "up", "--name", LAB, "--count", str(max(SIZES) + 1)])
        inv = work / "bench"
        checked, plat, address = inventory(inv)
        dns = f"listen-address={address}\nbind-interfaces\nno-resolv\nno-hosts\n"
        dns += f"host-record={NAME},{address}\n"
        ssh = ["ssh", "-F", str(lab_inventory(LAB).parent / "ssh_config"), plat]
        run(
            [
                *ssh,
                "sudo DEBIAN_FRONTEND=noninteractive sh -c 'apt-get -qq update && "
                "apt-get -qq install -y --no-install-recommends dnsmasq'",
            ]
        )
        subprocess.run([*ssh, "sudo tee /etc/dnsmasq.d/bench.conf >/dev/null"], input=dns, text=True, check=True)
        run([*ssh, "sudo systemctl restart dnsmasq"])
        run([HIPGATE, "inventory", "check", str(inv)])
        for size in SIZES:
            out = work / f"pf{size}"
            start = time.monotonic()
            res = run(
                [
                    HIPGATE,
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
        run([HIPGATE, "lab", "down", "--name", LAB], check=False)
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "# Network preflight benchmark / 网络预检基准",
        "",
        f"{measured_by('bench-preflight')}: one lab of "
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
    write_results(Path(args.out), lines)


if __name__ == "__main__":
    main()
