"""Time the real site.yml converge, its re-run, a no-op floor and `hipgate verify` on 1 and 20 hosts.

The no-op floor is a playbook with the same number of tasks per host as the re-run executed, each an
`ansible.builtin.ping` on the same hosts: the re-run's cost above it is what the baseline's own
checks for drift cost.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

import yaml
from benchlib import BIN, HIPGATE, ROOT, lab_inventory, measured_by, regroup, run, update_settings, write_results

from hipgate.lab.artifacts import reference_access
from hipgate.verify import run_verify

LAB = "bench-conf"
MANAGED = 20
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def layout(names: list[str]) -> dict[str, list[str]]:
    """The roles of a province: 20 managed hosts and the simulated platform."""
    return {
        "bastion": names[0:1],
        "log_collector": names[0:1],
        "database": names[1:2],
        "middleware": names[2:3],
        "vault": names[3:4],
        "backup_sites": names[4:6],
        "frontend": names[6:MANAGED],
        "natplat": names[MANAGED : MANAGED + 1],
        "simulated_peers": names[MANAGED : MANAGED + 1],
    }


def provincial_inventory(target: Path) -> Path:
    hosts = regroup(lab_inventory(LAB), target, layout)
    # The lab writes the simulated platform's time-service vars for every lab (group simulated_peers).
    assert (target / "group_vars" / "simulated_peers" / "lab.yml").is_file()
    natplat = hosts[layout(sorted(hosts))["natplat"][0]]["ansible_host"]

    def bench_settings(hip: dict) -> None:
        """Time and DNS from the simulated platform, as in the reference lab; the reference flow matrix
        and database clients, so the firewall and PostgreSQL do real work."""
        hip["time"]["ntp_servers"] = [natplat]
        hip["network"]["dns_servers"] = [natplat]
        hip.update(reference_access())

    update_settings(target, bench_settings)
    return target


def playbook(inv: Path, book: Path) -> tuple[float, str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    start = time.monotonic()
    out = run([str(BIN / "ansible-playbook"), "-i", str(inv), str(book)], env=env).stdout
    return time.monotonic() - start, out


def slowest(junit: Path, n: int = 5) -> list[tuple[float, str]]:
    """The n longest test cases of a verify run, from its JUnit file."""
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    return sorted(((float(c.get("time", 0)), c.get("name", "?")) for c in cases), reverse=True)[:n]


def recap(out: str) -> dict[str, tuple[int, int, int]]:
    return {m[0]: (int(m[1]), int(m[2]), int(m[5])) for m in RECAP.findall(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-conformance.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab) / 需要 root 权限")
    run([HIPGATE, "lab", "down", "--name", LAB], check=False)
    work = Path(tempfile.mkdtemp(prefix="hipgate-bench-"))
    try:
        run([HIPGATE, "lab", "up", "--name", LAB, "--count", str(MANAGED + 1)])
        inv = provincial_inventory(work / "bench")
        run([HIPGATE, "inventory", "check", str(inv)])
        site = ROOT / "playbooks" / "site.yml"

        t_converge, _ = playbook(inv, site)
        t_rerun, second = playbook(inv, site)
        rerun = recap(second)
        changed = sum(c for _, c, _ in rerun.values())
        frontends = sorted(yaml.safe_load((inv / "hosts.yml").read_text())["all"]["children"]["frontend"]["hosts"])
        # Tasks a front-end host executed on the re-run (ok + skipped); the floor gets as many pings.
        tasks = max(ok + skipped for h, (ok, _, skipped) in rerun.items() if h in frontends)
        noop = work / "noop.yml"
        noop.write_text(
            yaml.safe_dump(
                [
                    {
                        "name": "No-op floor",
                        "hosts": "all:!natplat",
                        "gather_facts": True,
                        "tasks": [{"name": f"no-op {i}", "ansible.builtin.ping": None} for i in range(tasks - 1)],
                    }
                ]
            ),
            encoding="utf-8",
        )
        t_noop, _ = playbook(inv, noop)

        first_host = frontends[0]
        start = time.monotonic()
        _, one = run_verify(inv, work / "v1", limit=[first_host])
        t_verify_1 = time.monotonic() - start
        slow_1 = slowest(work / "v1" / "junit.xml")
        start = time.monotonic()
        _, all_counts = run_verify(inv, work / "v20")
        t_verify_20 = time.monotonic() - start
    finally:
        run([HIPGATE, "lab", "down", "--name", LAB], check=False)
        shutil.rmtree(work, ignore_errors=True)

    checks_20 = sum(all_counts.values())
    lines = [
        "# Conformance benchmark / 基线与合规检查基准",
        "",
        f"{measured_by('bench-conformance')}: one run, a lab of "
        f"{MANAGED} managed hosts plus the simulated national platform, real `playbooks/site.yml` "
        "(every play but the VPN and the simulated platform services, which need the reference lab's leased "
        "line) over SSH with the project's ansible.cfg.",
        "",
        "| what | time | notes |",
        "|---|---|---|",
        f"| converge, {MANAGED} hosts (from bare) | {t_converge:.1f} s | includes apt installs through the lab's NAT |",
        f"| re-run, {MANAGED} hosts | {t_rerun:.1f} s | changed={changed} |",
        f"| no-op floor, {MANAGED} hosts | {t_noop:.1f} s | facts + {tasks - 1} `ping` tasks per host "
        "(as many as the re-run ran) |",
        f"| re-run above the floor | {t_rerun - t_noop:.1f} s | what the roles' drift checks cost |",
        f"| `hipgate verify`, 1 host | {t_verify_1:.1f} s | {sum(one.values())} check results |",
        f"| `hipgate verify`, {MANAGED} hosts | {t_verify_20:.1f} s | {checks_20} check results, 8 workers |",
        "",
        f"Slowest checks of `hipgate verify` on {first_host} (a front-end server):",
        "",
        "| check | time |",
        "|---|---|",
        *(f"| `{name}` | {secs:.1f} s |" for secs, name in slow_1),
        "",
    ]
    write_results(Path(args.out), lines)


if __name__ == "__main__":
    main()
