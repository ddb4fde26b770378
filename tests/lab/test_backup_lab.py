"""Backups on the deployed reference lab: three repositories, a restore from an off-site one that
reproduces seeded data, the handover gate, faults (a site down during a backup, a flipped byte, a full
disk) and decommissioning that archives and deletes nothing. Runs real pgBackRest, PostgreSQL, sshd
and OpenBao. The decommissioning test is last: it stops the database and starts it again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hipgate.lab import manager
from lab_reference import INV, LAB, check_from, hipgate, sh

TOKEN = ("--token-file", str(INV.parent / "custody" / "operator.token"))
ROOT = Path(__file__).resolve().parents[2]
SITE_USER = "pgbackrest"
BACKUPS = "/var/lib/pgbackrest/backup/database"
SEED = (
    "drop table if exists hg_seed; "
    "create table hg_seed as select g as id, md5(g::text) as payload, now() as at from generate_series(1, 20000) g"
)
FINGERPRINT = "select count(*) || ' ' || md5(string_agg(t::text, E'\\n' order by t::text)) from public.hg_seed t"


def as_user(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    user = "postgres" if host == "database" else SITE_USER
    return sh(host, f"runuser -u {user} -- /usr/local/bin/hipgate-backup {command}", check=check)


def status(host: str) -> dict:
    return json.loads(as_user(host, "status").stdout)


def labels(host: str) -> list[str]:
    return [b["label"] for b in status(host)["info"]["backup"]]


def gate(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "handover"
    return hipgate("handover", "check", "database", "-i", str(INV), *TOKEN, "--out", str(out), check=False), out


def netns(host: str) -> str:
    lab = manager.load(LAB)
    assert lab is not None
    return next(h.netns for h in lab.hosts if h.name == host)


def link(host: str, state: str) -> None:
    """Cut or restore a site's network from outside it: to its peers the site is gone."""
    subprocess.run(["ip", "netns", "exec", netns(host), "ip", "link", "set", "eth0", state], check=True)


def psql(sql: str, db: str = "exchange") -> str:
    return sh("database", f'runuser -u postgres -- psql -XAt -d {db} -c "{sql}"').stdout.strip()


def wait_archiving_healthy(lab: dict) -> None:
    psql("select pg_switch_wal()", "postgres")
    for _ in range(90):
        if check_from(lab, "backup_wal_archiving", "database").ok:
            return
        time.sleep(2)
    raise AssertionError(check_from(lab, "backup_wal_archiving", "database").en)


def test_seeded_database_in_three_repositories_and_an_offsite_restore_reproduces_it(lab: dict) -> None:
    psql(SEED)
    rows, digest = psql(FINGERPRINT).split(" ")
    before = {h: labels(h) for h in ("database", "backup-a", "backup-b")}
    for host in ("database", "backup-a", "backup-b"):
        ran = json.loads(as_user(host, "run --type full").stdout)
        assert sorted(ran["copied_to"]) == sorted({"backup-a", "backup-b"} - {host}), ran
    for host, old in before.items():
        assert len(set(labels(host)) - set(old)) == 1, host
    res = hipgate("backup", "verify", "database", "-i", str(INV), "--restore-from", "backup-b")
    assert res.stdout.count("通过 / ok") == 4, res.stdout  # three repositories and the restore test
    result = status("backup-b")["last_restore_test"]
    assert result["ok"] and result["page_checksums_ok"] and result["label"] == labels("backup-b")[-1]
    assert result["tables"]["exchange.public.hg_seed"] == {"rows": int(rows), "md5": digest}
    assert sh("backup-b", "ls /var/tmp | grep -c restore-test- || true").stdout.strip() == "0"  # scratch removed


def test_handover_gate_passes_when_every_condition_holds_and_its_report_is_hashed(lab: dict, tmp_path: Path) -> None:
    res, out = gate(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (record,) = out.glob("handover-database-*.json")
    doc = json.loads(record.read_text(encoding="utf-8"))
    assert doc["passed"] and [c["id"] for c in doc["conditions"]] == [
        "offsite_full_backups",
        "every_repository_verifies",
        "restore_test_passed",
        "backup_logs_everywhere",
        "custody_quorum",
    ]
    assert all(c["ok"] and c["evidence"] for c in doc["conditions"])
    logs = next(c for c in doc["conditions"] if c["id"] == "backup_logs_everywhere")["evidence"]["logs"]
    assert len(logs) == 3 and all(set(row["at"].values()) == {row["sha256"]} for row in logs)
    assert subprocess.run(["sha256sum", "-c", f"{record.name}.sha256"], cwd=out, check=False).returncode == 0
    html = record.with_suffix(".html").read_text(encoding="utf-8")
    assert all(c["id"] in html for c in doc["conditions"]) and doc["system"] in html


def test_site_down_during_a_backup_fails_that_repository_loudly_and_the_gate_refuses(lab: dict, tmp_path: Path) -> None:
    psql(SEED)  # enough new data that the backups take a moment
    before_a = labels("backup-a")
    sh("backup-b", "systemctl reset-failed hipgate-backup@full.service || true")
    sh("backup-b", "systemctl start --no-block hipgate-backup@full.service")
    time.sleep(1)
    link("backup-b", "down")
    cut = time.monotonic()
    try:
        ran_a = as_user("backup-a", "run --type full", check=False)
        refused, _ = gate(tmp_path)
        # Long enough for ssh's keep-alives (15 s x 2) to give up on the lost connections: a site that
        # came back within seconds would only have been a network blip.
        time.sleep(max(0.0, 75 - (time.monotonic() - cut)))
    finally:
        link("backup-b", "up")
    # Repository A: a new backup; its log could not reach site B, which the run says and exits 2 for.
    assert len(set(labels("backup-a")) - set(before_a)) == 1
    assert ran_a.returncode == 2 and "backup-b" in ran_a.stderr
    assert refused.returncode != 0 and "every_repository_verifies" in refused.stderr
    assert "UNMET" in refused.stdout and "不满足" in refused.stdout
    # Site B's own backup failed, in its journal and unit state (waits for ssh to notice the cut).
    for _ in range(60):
        state = sh("backup-b", "systemctl is-active hipgate-backup@full.service", check=False).stdout.strip()
        if state in ("failed", "inactive"):
            break
        time.sleep(2)
    assert state == "failed"
    journal = sh("backup-b", "journalctl -u hipgate-backup@full.service -n 30 -o cat").stdout
    assert "error" in journal.lower()
    # Back to normal for the tests after this one: WAL catches up, site B gets a good backup.
    wait_archiving_healthy(lab)
    assert json.loads(as_user("backup-b", "run --type full").stdout)["log"]


def test_a_flipped_byte_fails_verify_and_names_the_file(lab: dict) -> None:
    label = labels("backup-a")[-1]
    # The largest file of the newest backup: a table's data, not a small catalogue file.
    target = sh(
        "backup-a",
        f"find /var/lib/pgbackrest/backup/database/{label}/pg_data -type f -printf '%s %p\\n' | sort -n | tail -1",
    ).stdout.split()[1]
    flip = f"python3 -c \"f=open('{target}','r+b'); f.seek(100); b=f.read(1); f.seek(100); f.write(bytes([b[0]^1]))\""
    sh("backup-a", flip)
    try:
        res = as_user("backup-a", "verify", check=False)
    finally:
        sh("backup-a", flip)  # flip it back
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert not out["ok"] and target.split(f"{label}/")[1].replace(".zst", "") in out["output"]
    assert as_user("backup-a", "verify").returncode == 0


def test_full_disk_on_a_site_is_a_clear_error_and_earlier_backups_stay(lab: dict) -> None:
    before = labels("backup-b")
    # The site's backups on a filesystem just big enough for what they hold now. (WAL archiving keeps
    # going to the real disk, so the repository's archive has no gap afterwards.)
    fill = (
        f"used=$(du -sm {BACKUPS} | cut -f1) && mkdir -p /mnt/hg-full && "
        "mount -t tmpfs -o size=$((used + 1))M,mode=0750 tmpfs /mnt/hg-full && "
        f"cp -a {BACKUPS}/. /mnt/hg-full/ && chown pgbackrest:pgbackrest /mnt/hg-full && "
        f"mount --bind /mnt/hg-full {BACKUPS}"
    )
    sh("backup-b", fill)
    try:
        psql(SEED)
        res = as_user("backup-b", "run --type full", check=False)
        after_fail = labels("backup-b")
        verified = as_user("backup-b", "verify", check=False)
    finally:
        sh("backup-b", f"umount {BACKUPS} && umount /mnt/hg-full && rmdir /mnt/hg-full")
    assert res.returncode != 0
    assert "No space left on device" in res.stderr and "错误" in res.stderr
    assert after_fail == before  # nothing lost, nothing half-written counted as a backup
    assert json.loads(verified.stdout)["ok"], verified.stdout
    assert labels("backup-b") == before


def test_decommissioning_archives_and_deletes_nothing(lab: dict) -> None:
    before = {h: labels(h) for h in ("database", "backup-a", "backup-b")}
    seeded = psql(FINGERPRINT)
    res = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(INV),
            str(ROOT / "playbooks" / "decommission.yml"),
            "-e",
            "decommission_confirm=database",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
    )
    try:
        assert res.returncode == 0, res.stdout[-4000:]
        for host, old in before.items():
            now = labels(host)
            assert now[: len(old)] == old and len(now) == len(old) + 1, host  # kept all, added the final one
        assert sh("database", "systemctl is-active postgresql@15-main", check=False).stdout.strip() != "active"
        assert sh("database", "test -s /var/lib/postgresql/15/main/PG_VERSION").returncode == 0
        assert sh("database", "cd /var/lib/hipgate-archive && sha256sum -c *.sha256").returncode == 0
        record = json.loads(sh("database", "cat /etc/hipgate/decommissioned.json").stdout)
        assert record["system"] == "database" and record["data_directory_kept"]
        assert (
            sh("backup-a", "systemctl is-enabled hipgate-backup-full.timer", check=False).stdout.strip() == "disabled"
        )
    finally:
        sh("database", "systemctl enable --now postgresql@15-main")
        for h in ("database", "backup-a", "backup-b"):
            sh(
                h,
                "systemctl enable --now "
                + " ".join(f"hipgate-backup-{t}.timer" for t in ("full", "diff", "freshness")),
            )
        for h in ("backup-a", "backup-b"):
            sh(h, "systemctl enable --now hipgate-backup-restore-test.timer")
        sh("database", "rm -f /etc/hipgate/decommissioned.json")
    assert psql(FINGERPRINT) == seeded
