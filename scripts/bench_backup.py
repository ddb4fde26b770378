"""Measure pgBackRest on the lab: one ~1 GB database (pgbench), a full backup to the local repository,
full backups to the two off-site repositories at once, and a restore test from an off-site one.

Deploys the backup role's molecule playbook (PostgreSQL, three repositories) on a lab of its own,
writes benchmarks/results-backup.md, and takes the lab down unless --keep."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LAB = "bench-backup"
HOSTS = ("db", "site-a", "site-b")
CATCH_UP = (
    "w=$(runuser -u postgres -- psql -XAtc 'select pg_walfile_name(pg_switch_wal())'); "
    "until [ \"$(runuser -u postgres -- psql -XAtc \"select coalesce(last_archived_wal >= '$w', false) "
    'from pg_stat_archiver")" = t ]; do sleep 1; done'
)
USER = {"db": "postgres", "site-a": "pgbackrest", "site-b": "pgbackrest"}


def run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return res


def ssh_argv(lab: dict, host: str, command: str) -> list[str]:
    addr = next(h["address"] for h in lab["hosts"] if h["name"] == host)
    opts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=error"]
    return ["ssh", "-i", lab["identity_file"], *opts, f"hipgate@{addr}", "sudo", "-n", "sh", "-c", shlex.quote(command)]


def on(lab: dict, host: str, command: str) -> str:
    return run(ssh_argv(lab, host, command)).stdout


def timed(fn) -> tuple[float, object]:
    start = time.monotonic()
    value = fn()
    return time.monotonic() - start, value


def inventory(lab: dict, folder: Path) -> Path:
    scenario = yaml.safe_load((ROOT / "roles/backup/molecule/default/molecule.yml").read_text())
    group_vars = scenario["provisioner"]["inventory"]["group_vars"]["all"]
    group_vars["pki_dir"] = str(folder / "pki")
    hosts = {h["name"]: {"ansible_host": h["address"]} for h in lab["hosts"]}
    doc = {
        "all": {
            "hosts": hosts,
            "vars": {
                **group_vars,
                "ansible_user": "hipgate",
                "ansible_become": True,
                "ansible_ssh_private_key_file": lab["identity_file"],
                "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
        }
    }
    path = folder / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GB)")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    args = ap.parse_args()
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    run([str(BIN / "hipgate"), "lab", "up", "--name", LAB, *[f"--host={h}" for h in HOSTS]])
    try:
        lab = json.loads(run([str(BIN / "hipgate"), "lab", "status", "--name", LAB, "--json"]).stdout)
        with tempfile.TemporaryDirectory() as tmp:
            inv = inventory(lab, Path(tmp))
            deploy_s, _ = timed(
                lambda: run(
                    [
                        str(BIN / "ansible-playbook"),
                        "-i",
                        str(inv),
                        str(ROOT / "roles/backup/molecule/default/converge.yml"),
                    ],
                    env=env,
                )
            )
        load_s, _ = timed(
            lambda: on(
                lab, "db", f"runuser -u postgres -- /usr/lib/postgresql/15/bin/pgbench -q -i -s {args.scale} exchange"
            )
        )
        # Flush the load first: otherwise the first backup's checkpoint writes the whole load out.
        on(lab, "db", "runuser -u postgres -- psql -XAtc checkpoint")
        # ...and let archiving catch up: PostgreSQL archives in order, so a backup started now would
        # wait behind the load's WAL for its own last segment.
        wal_s, _ = timed(lambda: on(lab, "db", CATCH_UP))
        size = on(lab, "db", "runuser -u postgres -- psql -XAtc \"select pg_database_size('exchange')\"").strip()
        backup = "runuser -u {u} -- /usr/local/bin/hipgate-backup run --type full"
        one_s, _ = timed(lambda: on(lab, "db", backup.format(u=USER["db"])))
        # pgBackRest backs up a stanza one repository at a time (its lock is on the database host): one
        # site after the other.
        site_s = {
            site: timed(lambda site=site: on(lab, site, backup.format(u=USER[site])))[0]
            for site in ("site-a", "site-b")
        }
        repo_mb = {h: on(lab, h, "du -sm /var/lib/pgbackrest | cut -f1").strip() for h in HOSTS}
        restore = json.loads(on(lab, "site-a", "runuser -u pgbackrest -- /usr/local/bin/hipgate-backup restore-test"))
        if not restore["ok"]:
            raise SystemExit(f"restore test failed: {restore.get('error')}")
    finally:
        if not args.keep:
            subprocess.run([str(BIN / "hipgate"), "lab", "down", "--name", LAB], check=False)
    out = ROOT / "benchmarks" / "results-backup.md"
    steps = restore["step_seconds"]
    out.write_text(
        "# Backup benchmark / 备份性能基准\n\n"
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC} by `scripts/bench-backup` on "
        f"{platform.node()} ({os.cpu_count()} cores); lab hosts share this machine's cores and disk.\n"
        f"pgBackRest from Debian, zstd, process-max 2, aes-256-cbc; database `exchange` = pgbench scale "
        f"{args.scale}, {int(size) / 1e9:.2f} GB.\n\n"
        "| step / 步骤 | seconds / 秒 |\n|---|---|\n"
        f"| deploy PostgreSQL + three repositories (molecule playbook) | {deploy_s:.0f} |\n"
        f"| load data (pgbench -i) | {load_s:.0f} |\n"
        f"| archive the load's WAL to all three repositories (archiving catches up) | {wal_s:.0f} |\n"
        f"| full backup to one repository (repo1, local on the database host) | {one_s:.1f} |\n"
        f"| full backup to off-site repo2 (site-a, over ssh) | {site_s['site-a']:.1f} |\n"
        f"| full backup to off-site repo3 (site-b, over ssh) | {site_s['site-b']:.1f} |\n"
        f"| both off-site repositories, one after the other | {sum(site_s.values()):.1f} |\n"
        f"| restore from an off-site repository (repo2) into a scratch cluster | {steps.get('restored', 0):.1f} |\n"
        f"| start it and finish recovery | {steps.get('started', 0):.1f} |\n"
        f"| fingerprint every table (row counts, md5) | {steps.get('queried', 0):.1f} |\n"
        f"| stop and check every page checksum | {steps.get('page checksums verified', 0):.1f} |\n\n"
        f"Repository sizes (MB): " + ", ".join(f"{h} {mb}" for h, mb in repo_mb.items()) + "\n",
        encoding="utf-8",
    )
    print(out.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
