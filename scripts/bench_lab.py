"""Measure `hipgate lab up` to ssh-ready, memory per host and `lab down`, for several lab sizes."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HIPGATE = str(Path(sys.executable).parent / "hipgate")


def hipgate(*args: str) -> str:
    res = subprocess.run([HIPGATE, *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"hipgate {' '.join(args)} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def descendants(roots: set[int]) -> set[int]:
    """Every process below the given PIDs (the hosts' systemd and all they started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def pss_kib(pids: set[int]) -> int:
    """Proportional set size summed over the processes: shared pages (the common base image) are
    split fairly, so the sum is what the hosts really cost."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def bench(n: int) -> dict[str, float | int]:
    name = f"bench-{n}"
    subprocess.run([HIPGATE, "lab", "down", "--name", name], capture_output=True, check=False)
    avail_before = mem_available_kib()
    t0 = time.monotonic()
    hipgate("lab", "up", "--name", name, "--count", str(n))
    t_up = time.monotonic() - t0
    info = json.loads(hipgate("lab", "status", "--name", name, "--json"))
    assert all(h["ssh_ready"] for h in info["hosts"]) and len(info["hosts"]) == n
    time.sleep(5)  # let boot-time jobs settle before reading memory
    inside = descendants({h["pid"] for h in info["hosts"]})
    pss, procs = pss_kib(inside), len(inside)
    avail_after = mem_available_kib()
    t1 = time.monotonic()
    hipgate("lab", "up", "--name", name, "--count", str(n))
    t_again = time.monotonic() - t1
    t2 = time.monotonic()
    hipgate("lab", "down", "--name", name)
    t_down = time.monotonic() - t2
    return {
        "hosts": n,
        "up_to_ssh_ready_s": round(t_up, 1),
        "second_up_s": round(t_again, 1),
        "down_s": round(t_down, 1),
        "pss_per_host_mib": round(pss / n / 1024, 1),
        "processes_per_host": round(procs / n, 1),
        "memavailable_drop_per_host_mib": round((avail_before - avail_after) / n / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="8,20,100")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-lab.md"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench-lab needs root / 需要 root")
    hipgate("lab", "up", "--name", "bench-warm", "--count", "1")  # base rootfs built outside the timings
    hipgate("lab", "down", "--name", "bench-warm")
    rows = [bench(int(n)) for n in args.sizes.split(",")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = list(rows[0])
    lines = [
        "# Lab benchmark / 实验环境基准",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}",
        "- up_to_ssh_ready_s: `hipgate lab up --count N` wall time until every host's sshd answers "
        "(base rootfs already cached)",
        "- second_up_s: the same command again (idempotent, nothing changes)",
        "- pss_per_host_mib: proportional set size of every process inside the hosts (below their systemd-nspawn) / N",
        "- memavailable_drop_per_host_mib: drop of MemAvailable / N (includes page cache, noisy)",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
        *("| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows),
        "",
    ]
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
