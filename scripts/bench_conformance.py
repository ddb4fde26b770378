"""Time the real site.yml converge, its re-run, a no-op floor and `hipgate verify` on 1 and 20 hosts.

The no-op floor is a playbook with the same number of tasks per host as the re-run executed, each an
`ansible.builtin.ping` on the same hosts: the re-run's cost above it is what the baseline's own
checks for drift cost.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))

from hipgate.lab.artifacts import reference_access  # noqa: E402
from hipgate.verify import run_verify  # noqa: E402

LAB = "bench-conf"
MANAGED = 20
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)


def run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout[-4000:]}{res.stderr[-2000:]}")
    return res.stdout


def provincial_inventory(lab_inventory: Path, target: Path) -> Path:
    """Give the numbered lab hosts the roles of a province: 20 managed hosts and the simulated platform."""
    shutil.copytree(lab_inventory, target)
    doc = yaml.safe_load((target / "hosts.yml").read_text(encoding="utf-8"))
    hosts = {n: v for g in doc["all"]["children"].values() for n, v in g["hosts"].items()}
    names = sorted(hosts)
    layout = {
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
    doc["all"]["children"] = {g: {"hosts": {n: hosts[n] for n in ns}} for g, ns in layout.items()}
    (target / "hosts.yml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    # The lab writes the simulated platform's time-service vars for every lab (group simulated_peers).
    assert (target / "group_vars" / "simulated_peers" / "lab.yml").is_file()
    return target


def settings(inv: Path) -> None:
    """hipgate.yml for the bench: time from the simulated platform, as in the reference lab."""
    doc = yaml.safe_load((inv / "hosts.yml").read_text(encoding="utf-8"))
    natplat = next(iter(doc["all"]["children"]["natplat"]["hosts"].values()))["ansible_host"]
    path = inv / "group_vars" / "all" / "hipgate.yml"
    conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    conf["hipgate"]["time"]["ntp_servers"] = [natplat]
    conf["hipgate"]["network"]["dns_servers"] = [natplat]
    # The reference flow matrix and database clients, so the firewall and PostgreSQL do real work.
    conf["hipgate"].update(reference_access())
    path.write_text(yaml.safe_dump(conf, allow_unicode=True), encoding="utf-8")


def playbook(inv: Path, book: Path) -> tuple[float, str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    start = time.monotonic()
    out = run([str(BIN / "ansible-playbook"), "-i", str(inv), str(book)], env=env)
    return time.monotonic() - start, out


def recap(out: str) -> dict[str, tuple[int, int, int]]:
    return {m[0]: (int(m[1]), int(m[2]), int(m[5])) for m in RECAP.findall(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-conformance.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (the lab) / 需要 root 权限")
    hipgate = str(BIN / "hipgate")
    subprocess.run([hipgate, "lab", "down", "--name", LAB], capture_output=True, check=False)
    work = Path(tempfile.mkdtemp(prefix="hipgate-bench-"))
    try:
        run([hipgate, "lab", "up", "--name", LAB, "--count", str(MANAGED + 1)])
        lab_inv = Path(os.environ.get("HIPGATE_STATE", "/var/lib/hipgate")) / "labs" / LAB / "inventory"
        inv = provincial_inventory(lab_inv, work / "bench")
        settings(inv)
        run([hipgate, "inventory", "check", str(inv)])
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
        start = time.monotonic()
        _, all_counts = run_verify(inv, work / "v20")
        t_verify_20 = time.monotonic() - start
    finally:
        subprocess.run([hipgate, "lab", "down", "--name", LAB], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)

    checks_20 = sum(all_counts.values())
    lines = [
        "# Conformance benchmark / 基线与合规检查基准",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by `scripts/bench-conformance` on "
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}: one run, a lab of "
        f"{MANAGED} managed hosts plus the simulated national platform, real `playbooks/site.yml` "
        "(timesync, pki, baseline) over SSH with the project's ansible.cfg.",
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
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
