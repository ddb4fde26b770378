"""The backup role's defences that need no lab: the SSH gate's allow-list of pgBackRest remote command
lines, the seal of arrived WAL on a real filesystem, the parsers of backup logs and restore-test
records (host side and control-node side), and the restore-test check, which must never hand a value
from the host to a shell. The lab tests (tests/lab/test_backup_attacks.py) attack the deployed ones."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from hipgate import backups, handover
from hipgate.backups import Repo
from hipgate.conformance import backup_checks

FILES = Path(__file__).resolve().parents[2] / "roles" / "backup" / "files"


def script(name: str) -> ModuleType:
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(FILES / name))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


GATE_CONF = {
    "stanza": "database",
    "repo": 2,
    "pg_path": "/var/lib/postgresql/15/main",
    "pg_port": 5432,
    "pg_remote_user": "hipgate_backup",
    "pg_remote_config_path": "/etc/hipgate/backup-pg-remote",
}
# Exactly as pgBackRest 2.45 sent them on the lab (SSH_ORIGINAL_COMMAND captured by a logging forced
# command: the database host archiving and checking, a site backing up with process-max 2, stanza-create).
COMMON = "pgbackrest --exec-id=6736-6b0bd82f --log-level-console=off --log-level-file=off --log-level-stderr=error "
ARCHIVE_PUSH = COMMON + "--process=0 --remote-type=repo --repo=2 --stanza=database archive-push:remote"
CHECK_REPO = (
    COMMON
    + "--pg1-path=/var/lib/postgresql/15/main --process=0 --remote-type=repo --repo=2 --stanza=database check:remote"
)
PG = (
    COMMON
    + "--pg1-path=/var/lib/postgresql/15/main --pg1-port=5432 --process={p} --remote-type=pg --stanza=database {c}"
)
BACKUP_PG = PG.format(p=0, c="backup:remote")
# A site whose settings name the reader's database role sends it too (pgBackRest sorts the options).
PG_USER = PG.replace("--pg1-port=5432", "--pg1-port=5432 --pg1-user=hipgate_backup")
SENT = (
    [("repo", ARCHIVE_PUSH), ("repo", CHECK_REPO)]
    + [("pg", PG.format(p=p, c="backup:remote")) for p in (0, 1, 2)]
    + [("pg", PG.format(p=0, c="stanza-create:remote"))]
    + [("pg", PG_USER.format(p=p, c=c)) for p, c in ((0, "backup:remote"), (1, "backup:remote"), (0, "check:remote"))]
)


def gate(role: str, command: str) -> list[str]:
    return script("hipgate-backup-ssh-gate").check(role, command, GATE_CONF)


@pytest.mark.parametrize(("role", "command"), SENT)
def test_gate_allows_the_remotes_pgbackrest_sends_and_runs_them_without_a_shell(role: str, command: str) -> None:
    argv = gate(role, command)
    assert argv[0] == "pgbackrest" and argv[-1] == command.split(" ")[-1]
    assert argv[1:-1][: len(command.split(" ")) - 2] == command.split(" ")[1:-1]
    if command.endswith("archive-push:remote"):
        assert argv[-2].startswith("--lock-path=")  # the WAL account's own locks
    if role == "pg":
        # Whatever the site sent, the session logs in as the reader's role with the reader's settings.
        assert argv.count("--pg1-user=hipgate_backup") == 1, argv
        assert "--config-path=/etc/hipgate/backup-pg-remote" in argv, argv
        locks = [a for a in argv if a.startswith("--lock-path=")]
        assert len(locks) == (0 if command.endswith("check:remote") else 1), argv  # check takes no lock path
        assert not [a for a in argv if a.startswith("--pg1-user=") and a != "--pg1-user=hipgate_backup"]


@pytest.mark.parametrize(
    ("role", "command"),
    [
        ("repo", "sh"),
        ("repo", "id"),
        ("repo", "rm -rf /var/lib/pgbackrest"),
        ("repo", ARCHIVE_PUSH + "; id"),
        ("repo", ARCHIVE_PUSH.replace("archive-push:remote", "repo-rm:remote")),
        ("repo", ARCHIVE_PUSH.replace("archive-push:remote", "expire")),
        ("repo", ARCHIVE_PUSH.replace("archive-push:remote", "stanza-delete:remote")),
        ("repo", ARCHIVE_PUSH.replace("--repo=2", "--repo=3")),  # another site's repository index
        ("repo", ARCHIVE_PUSH.replace("--remote-type=repo", "--remote-type=pg")),
        ("repo", ARCHIVE_PUSH.replace("--stanza=database", "--stanza=other")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0 --config=/tmp/evil.conf")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0 --repo2-path=/")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0 --lock-path=/tmp")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0 --cmd-ssh=/bin/sh")),
        ("repo", ARCHIVE_PUSH.replace("--log-level-file=off", "--log-level-file=debug")),
        ("repo", CHECK_REPO.replace("--pg1-path=/var/lib/postgresql/15/main", "--pg1-path=/")),
        ("repo", ARCHIVE_PUSH.replace("pgbackrest ", "/tmp/pgbackrest ")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=$(id)")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0\nid")),
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0 --process=1")),
        ("pg", BACKUP_PG.replace("backup:remote", "restore:remote")),
        ("pg", BACKUP_PG.replace("--remote-type=pg", "--remote-type=repo")),
        ("pg", ARCHIVE_PUSH),
        ("pg", BACKUP_PG.replace("--process=0", "--process=0 --repo=2")),  # never sent to a pg remote
        ("repo", ARCHIVE_PUSH.replace("--process=0", "--process=0 --buffer-size=1MiB")),  # not sent: refused
        ("pg", BACKUP_PG.replace("--process=0", "--process=0 --pg1-host=10.0.0.1")),
        # A hostile site asking for the superuser, another role, or settings of its own choosing.
        ("pg", BACKUP_PG.replace("--pg1-port=5432", "--pg1-port=5432 --pg1-user=postgres")),
        ("pg", BACKUP_PG.replace("--pg1-port=5432", "--pg1-port=5432 --pg1-user=hipgate_vault")),
        ("pg", BACKUP_PG.replace("--process=0", "--process=0 --config-path=/tmp")),
        ("pg", BACKUP_PG.replace("--process=0", "--process=0 --pg1-socket-path=/tmp")),
        ("pg", BACKUP_PG.replace("--process=0", "--process=0 --pg1-database=exchange")),
    ],
)
def test_gate_refuses_shells_other_commands_and_options_that_point_elsewhere(role: str, command: str) -> None:
    with pytest.raises(SystemExit) as refused:
        gate(role, command)
    assert refused.value.code == 2


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to other accounts needs root")


def as_user(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", user, "--", *argv], capture_output=True, text=True, check=False)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory other accounts can traverse (pytest's own tmp_path is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hipgate-seal-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@needs_root
def test_seal_gives_arrived_wal_to_the_repository_account_and_the_wal_account_can_then_only_add(
    open_dir: Path,
) -> None:
    tmp_path = open_dir
    # Real accounts of the test host stand in for the site's: daemon owns the repository, nobody is
    # the WAL account (group daemon, as the role makes pgbackrest-wal a member of pgbackrest).
    owner, wal = pwd.getpwnam("daemon"), pwd.getpwnam("nobody")
    repo = tmp_path / "repo"
    stanza = repo / "archive" / "database"
    (repo / "backup" / "database").mkdir(parents=True)
    stanza.mkdir(parents=True)
    for p in (repo, repo / "archive", repo / "backup", repo / "backup" / "database", stanza):
        os.chown(p, owner.pw_uid, owner.pw_gid)
    (stanza / "archive.info").write_text("x")
    os.chown(stanza / "archive.info", owner.pw_uid, owner.pw_gid)
    mod = script("hipgate-backup")
    conf = {"repo_path": str(repo), "stanza": "database", "run_user": "daemon"}
    mod.cmd_seal(conf)
    assert oct((stanza.stat()).st_mode & 0o7777) == oct(mod.ARCHIVE_DIR_MODE)
    # The WAL account (group member) adds a timeline directory and a segment, as archive-push does.
    seg_dir = stanza / "15-1" / "0000000100000000"
    gid = owner.pw_gid
    env_wal = ["setpriv", f"--reuid={wal.pw_uid}", f"--regid={wal.pw_gid}", f"--groups={gid}", "--"]
    run = lambda *a: subprocess.run([*env_wal, *a], capture_output=True, text=True, check=False)  # noqa: E731
    assert run("mkdir", "-p", str(seg_dir)).returncode == 0
    seg = seg_dir / "000000010000000000000001-abc.zst"
    assert run("sh", "-c", f"echo wal > {seg}").returncode == 0
    assert run("ln", "-s", "/etc/shadow", str(seg_dir / "link")).returncode == 0
    mod.cmd_seal(conf)
    assert (seg.stat().st_uid, seg.stat().st_mode & 0o777) == (owner.pw_uid, 0o640)
    assert seg_dir.stat().st_uid == owner.pw_uid and not (seg_dir / "link").is_symlink()
    # Sealed: the WAL account can neither remove, overwrite, nor replace by rename; nor touch backup/.
    assert run("rm", "-f", str(seg)).returncode != 0 and seg.exists()
    assert run("sh", "-c", f"echo evil > {seg}").returncode != 0
    assert run("sh", "-c", f"echo evil > {seg_dir}/x && mv -f {seg_dir}/x {seg}").returncode != 0
    assert seg.read_text() == "wal\n"
    assert run("rm", "-f", str(stanza / "archive.info")).returncode != 0
    assert run("rm", "-rf", str(stanza / "15-1")).returncode != 0 and seg.exists()
    assert run("touch", str(repo / "backup" / "database" / "x")).returncode != 0
    # ...but can still add the next segment.
    assert run("sh", "-c", f"echo wal2 > {seg_dir}/000000010000000000000002-def.zst").returncode == 0


# --- backup logs and restore-test records on the host (hipgate-backup status) ----------------------


def test_malformed_backup_logs_are_reported_not_trusted_and_do_not_crash(tmp_path: Path) -> None:
    mod = script("hipgate-backup")
    folder = tmp_path / "logs" / "database"
    folder.mkdir(parents=True)
    good = {"stanza": "database", "repo": 2, "label": "20261123-011000F", "type": "full", "backup_stop": 1}
    (folder / "database-repo2-20261123-011000F.json").write_text(json.dumps(good))
    (folder / "database-repo3-20261123-011000F.json").write_text("{not json")
    (folder / "database-repo1-20261123-011000F.json").write_text("[1, 2]")
    (folder / "database-repo1-20261124-011000F.json").write_text(json.dumps({**good, "label": 5}))
    logs, bad = mod.logs_here({"log_dir": str(tmp_path / "logs"), "stanza": "database"})
    assert [lg["label"] for lg in logs] == ["20261123-011000F"]
    assert len(bad) == 3 and all(b["kind"] == "backup-log" and "/" in b["error"] for b in bad)


@needs_root
def test_a_restore_record_not_written_by_root_is_a_forgery(tmp_path: Path) -> None:
    mod = script("hipgate-backup")
    folder = tmp_path / "restore-tests"
    folder.mkdir(mode=0o755)
    real = {"finished": "2026-11-23T03:00:00Z", "ok": True, "page_checksums_ok": True}
    (folder / "2026-11-23T030000Z.json").write_text(json.dumps(real))
    forged = {"finished": "@0;touch /root/pwn;", "ok": True, "page_checksums_ok": True}
    (folder / "2026-11-24T030000Z.json").write_text(json.dumps(forged))
    later = {"finished": "2026-11-25T03:00:00Z", "ok": True, "page_checksums_ok": True}
    (folder / "2026-11-25T030000Z.json").write_text(json.dumps(later))
    os.chown(folder / "2026-11-25T030000Z.json", pwd.getpwnam("nobody").pw_uid, -1)
    results, bad = mod.restore_results({"restore_test_dir": str(folder)})
    assert [r["finished"] for r in results] == ["2026-11-23T03:00:00Z"]
    assert sorted(Path(b["file"]).name for b in bad) == ["2026-11-24T030000Z.json", "2026-11-25T030000Z.json"]
    assert all(b["kind"] == "restore-test" for b in bad)
    os.chown(folder, pwd.getpwnam("nobody").pw_uid, -1)  # a directory the account could write into
    results, bad = mod.restore_results({"restore_test_dir": str(folder)})
    assert results == [] and bad[0]["file"] == str(folder)


def test_the_restore_child_can_only_report_typed_findings() -> None:
    clean = script("hipgate-backup")._clean_restore
    assert clean("x")["ok"] is False
    assert clean({"ok": "yes", "page_checksums_ok": True})["ok"] is False
    assert clean({"ok": True})["ok"] is False  # no page checksum verdict: not a pass
    out = clean({"ok": True, "page_checksums_ok": True, "finished": "@0;id;", "host": "evil", "label": "x;y"})
    assert out["ok"] is True and "finished" not in out and "host" not in out and "label" not in out


# --- the control node: hipgate backup status, the handover gate, the check ----------------------


REPOS = [Repo("db", 1, "postgres", False), Repo("site-a", 2, "pgbackrest", True), Repo("site-b", 3, "pgbackrest", True)]


def host_status(repo: int, **over: Any) -> dict[str, Any]:
    label = f"20261123-01{repo}000F"
    doc = {
        "repo": repo,
        "now": 1795000000.0,
        "full_max_age_hours": 26,
        "newest_full_age_hours": 2.0,
        "info": {"backup": [{"type": "full", "label": label}], "cipher": "aes-256-cbc"},
        "logs": [
            {"name": f"db-repo{i}-20261123-01{i}000F.json", "sha256": f"{i:064d}", "repo": i, "label": "x"}
            for i in (1, 2, 3)
        ],
        "last_restore_test": {
            "ok": True,
            "page_checksums_ok": True,
            "finished": "2026-11-23T03:00:00Z",
            "repo": repo,
            "host": "site-b",
            "tables": {},
            "steps": [],
        }
        if repo == 3
        else None,
        "malformed": [],
    }
    doc.update(over)
    return doc


def statuses(monkeypatch: pytest.MonkeyPatch, docs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """backups.status as the gate calls it, on the JSON a host printed (the ssh transport replaced)."""

    def fake_run(_inv: Any, repo: Repo, command: str, **_: Any) -> subprocess.CompletedProcess[str]:
        out = docs[repo.host] if isinstance(docs[repo.host], str) else json.dumps(docs[repo.host])
        return subprocess.CompletedProcess([command], 0, out, "")

    monkeypatch.setattr(backups, "run", fake_run)
    return {r.host: backups.status(None, r) for r in REPOS}


@pytest.mark.parametrize(
    "broken",
    [
        {"last_restore_test": "garbage"},
        {"last_restore_test": {"ok": True, "page_checksums_ok": True, "finished": "@0;touch /root/pwn;"}},
        {"last_restore_test": {"ok": "true", "page_checksums_ok": True, "finished": "2026-11-23T03:00:00Z"}},
        {"logs": "garbage"},
        {"logs": [{"name": 1}]},
        {"info": {"backup": [{"label": None}]}},
        {"malformed": [{"kind": "restore-test", "file": "/x/2026.json", "error": "不是 root 写入的 / not by root"}]},
    ],
)
def test_a_malformed_status_fails_the_gate_explained_never_a_crash(
    monkeypatch: pytest.MonkeyPatch, broken: dict[str, Any]
) -> None:
    docs = {r.host: host_status(r.index) for r in REPOS}
    docs["site-b"] = host_status(3, **broken)
    st = statuses(monkeypatch, docs)
    conds = [handover.restore_test_passed(REPOS, st), handover.backup_logs_everywhere(REPOS, st, "db")]
    assert not all(c.ok for c in conds)
    failed = [c for c in conds if not c.ok]
    assert st["site-b"]["malformed"] and any("site-b" in c.en and "/" in c.zh for c in failed)


def test_the_good_status_passes_the_backup_conditions(monkeypatch: pytest.MonkeyPatch) -> None:
    st = statuses(monkeypatch, {r.host: host_status(r.index) for r in REPOS})
    assert handover.restore_test_passed(REPOS, st).ok
    assert all(not s["malformed"] for s in st.values())


def test_backup_status_cli_names_a_malformed_record_and_exits_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from hipgate import cli_backup

    docs = {r.host: host_status(r.index) for r in REPOS}
    docs["site-b"] = host_status(3, last_restore_test={"finished": "@0;id;", "ok": True})
    statuses(monkeypatch, docs)
    monkeypatch.setattr(cli_backup, "load_inventory", lambda _p: SimpleNamespace())
    monkeypatch.setattr(backups, "repositories", lambda _inv, _system: REPOS)
    res = CliRunner().invoke(cli_backup.backup_app, ["status", "db", "-i", "."])
    assert res.exit_code == 1, res.output
    assert "site-b" in res.output and "invalid" in res.output and "无效" in res.output


class RecordingHost:
    """A host that answers hipgate-backup status with a forged record and records every command."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status, self.commands = status, []

    def run(self, command: str) -> SimpleNamespace:
        self.commands.append(command)
        out = json.dumps(self.status) if "hipgate-backup status" in command else "0"
        return SimpleNamespace(rc=0, stdout=out, stderr="")


def test_a_forged_restore_record_runs_nothing_and_fails_the_check() -> None:
    record = {"finished": "@0;touch /root/pwn;", "ok": True, "page_checksums_ok": True}
    forged = host_status(3, last_restore_test=record)
    host = RecordingHost(forged)
    ctx = SimpleNamespace(host="site-b", inventory=None)
    out = backup_checks.backup_restore_tested(host, {}, ctx)
    assert not out.ok
    assert not any("touch" in c or "pwn" in c for c in host.commands), host.commands


def test_a_recent_root_written_record_passes_the_check() -> None:
    host = RecordingHost(
        host_status(
            3,
            now=1795000000.0 - 0,
            last_restore_test={
                "finished": "2026-11-18T00:00:00Z",
                "ok": True,
                "page_checksums_ok": True,
                "tables": {},
                "steps": [],
            },
        )
    )
    out = backup_checks.backup_restore_tested(host, {"max_days": 8}, SimpleNamespace(host="site-b"))
    assert out.ok, out.en


def test_the_repository_check_never_reads_the_key_into_evidence() -> None:
    class Host(RecordingHost):
        def run(self, command: str) -> SimpleNamespace:
            self.commands.append(command)
            if "hipgate-backup status" in command:
                return SimpleNamespace(rc=0, stdout=json.dumps(self.status), stderr="")
            return SimpleNamespace(rc=0, stdout="enabled\nenabled\nenabled\nenabled", stderr="")

    claimed = host_status(2)
    claimed["repo"] = "2; id"
    host = Host(claimed)
    ctx = SimpleNamespace(host="site-a", inventory=SimpleNamespace(group_hosts=lambda g: ["site-a"]))
    out = backup_checks.backup_repository_current(host, {}, ctx)
    assert not out.ok  # a repository index that is not a number is malformed
    assert not any("cat " in c or "id" in c.split("status")[-1] for c in host.commands), host.commands


def test_check_reads_retention_in_python_whatever_repo_the_host_claims() -> None:
    assert backup_checks._retention("repo2-retention-full=2\n", 2) == "repo2-retention-full=2"
    assert backup_checks._retention("repo2-retention-full=2\n", "2' /etc/shadow; id; '") == ""


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# --- roles/backup/tasks/cipher.yml: the repository key generated on the host ----------------------


def key_task_script(key: Path) -> tuple[str, str]:
    """The shell of the key-generation task, pointed at a scratch key file, and its interpreter."""
    import yaml

    tasks = yaml.safe_load((FILES.parent / "tasks" / "cipher.yml").read_text(encoding="utf-8"))
    task = next(t for t in tasks if "Key generated on the repository host" in t["name"])
    shell = task["ansible.builtin.shell"]
    cmd = shell["cmd"] if isinstance(shell, dict) else shell
    return cmd.replace("/etc/pgbackrest/repo-cipher.key", str(key)), (shell.get("executable") or "/bin/sh")


def run_key_task(tmp_path: Path, openssl_fails: bool) -> subprocess.CompletedProcess[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    if openssl_fails:  # openssl that dies (no entropy, missing library): nothing on stdout
        (bindir / "openssl").write_text("#!/bin/sh\nexit 1\n")
        (bindir / "openssl").chmod(0o755)
    cmd, shell = key_task_script(tmp_path / "repo-cipher.key")
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    return subprocess.run([shell, "-c", cmd], capture_output=True, text=True, env=env, check=False)


def test_a_failing_openssl_leaves_no_empty_key(tmp_path: Path) -> None:
    res = run_key_task(tmp_path, openssl_fails=True)
    key = tmp_path / "repo-cipher.key"
    assert res.returncode != 0  # the task fails loudly...
    assert not key.exists() or key.stat().st_size > 0  # ...and no empty key is left for later runs to keep


def test_an_empty_key_left_by_an_earlier_failure_is_replaced_and_a_good_one_kept(tmp_path: Path) -> None:
    key = tmp_path / "repo-cipher.key"
    key.write_text("")
    assert run_key_task(tmp_path, openssl_fails=False).returncode == 0
    first = key.read_text()
    assert len(first) == 64 and (key.stat().st_mode & 0o777) == 0o600
    assert run_key_task(tmp_path, openssl_fails=False).returncode == 0
    assert key.read_text() == first  # never regenerated once it exists
