"""Attacks on the deployed backups, as each adversary of the threat model would make them (issue 16):
a database superuser who reached the OS `postgres` account, a hostile backup site (its `pgbackrest`
account), and an unprivileged account forging restore-test records. Each attack runs for real on the
reference lab (real sshd, pgBackRest 2.45, PostgreSQL); each test leaves the lab as it found it."""

from __future__ import annotations

import json
import shlex
import time

import pytest

from lab_reference import check_from, sh

SITES = ("backup-a", "backup-b")
SITE_USER = "pgbackrest"
PG_PATH = "/var/lib/postgresql/15/main"
REPO = "/var/lib/pgbackrest"
RECORDS = "/var/lib/pgbackrest-restore-tests"
SEED = "drop table if exists hg_attack_seed; create table hg_attack_seed as select g from generate_series(1, 2000) g"
# What pgBackRest 2.45 runs as ssh (cmd-ssh): `ssh -o ... user@host "<remote command line>"`. This one
# turns any client command's remote into the one the database host's key is allowed to start
# (archive-push:remote, with the options archive-push sends), so the session below is an ALLOWED one
# while the client drives expire / stanza-delete / repo-rm / repo-put storage operations through it.
EVIL_SSH = r"""#!/usr/bin/python3
import os, sys
args = sys.argv[1:]
words = args[-1].split(" ")
keep = ("--exec-id=", "--log-level-stderr=", "--process=", "--remote-type=", "--repo=", "--stanza=")
out = [words[0]] + [w for w in words[1:-1] if w.startswith(keep)]
out += ["--log-level-console=off", "--log-level-file=off", "archive-push:remote"]
with open("/tmp/hg-evil-ssh.log", "a") as fh:
    fh.write(args[-1] + "\n => " + " ".join(out) + "\n")
os.execv("/usr/bin/ssh", ["ssh"] + args[:-1] + [" ".join(out)])
""".replace("PG_PATH", PG_PATH)


def as_postgres(command: str, check: bool = False):
    return sh("database", f"runuser -u postgres -- sh -c {shlex.quote(command)}", check=check)


def as_site(site: str, command: str, check: bool = False):
    return sh(site, f"runuser -u {SITE_USER} -- sh -c {shlex.quote(command)}", check=check)


def fingerprint(site: str) -> dict[str, str]:
    """sha256 of every file of the site's repository (backups and archived WAL). A pgBackRest temporary
    file (NAME.pgbackrest.tmp, left when a rename over a sealed file was refused) is the WAL account's
    own until the seal removes it; it is no part of the repository and not counted."""
    out = sh(
        site,
        f"cd {REPO} && find backup archive -type f ! -name '*.pgbackrest.tmp' -print0 | sort -z | xargs -0 sha256sum",
    ).stdout
    return {line[66:]: line[:64] for line in out.splitlines()}


def labels(site: str) -> list[str]:
    doc = json.loads(as_site(site, "pgbackrest --stanza=database --output=json info", check=True).stdout)
    return [b["label"] for b in doc[0]["backup"]]


def no_marker(host: str, marker: str) -> bool:
    return sh(host, f"test ! -e {marker}", check=False).returncode == 0


@pytest.mark.parametrize("payload", ["id", "sh -c id", "touch /tmp/hg-pwned", "rm -rf /var/lib/pgbackrest"])
def test_no_backup_key_gives_a_shell_in_either_direction(lab: dict, payload: str) -> None:
    marker = "/tmp/hg-pwned"
    for host in ("database", *SITES):
        sh(host, f"rm -f {marker}")
    db, sites = lab["addr"]["database"], {s: lab["addr"][s] for s in SITES}
    probes = []
    # postgres on the database host (a superuser's COPY ... TO PROGRAM lands here): every key it has.
    for site, addr in sites.items():
        probes += [
            ("database", site, as_postgres(f"ssh {addr} {payload}")),  # its pgBackRest key to the site
            ("database", site, as_postgres(f"ssh log-{site} {payload}")),  # its backup-log key
            ("database", site, as_postgres(f"ssh -i ~/.ssh/id_hipgate_repo2 {SITE_USER}@{addr} {payload}")),
        ]
    # A site's pgbackrest account: its key to the database host and its log keys to the other site.
    for site in SITES:
        other = next(s for s in SITES if s != site)
        probes += [
            (site, "database", as_site(site, f"ssh {db} {payload}")),
            (site, other, as_site(site, f"ssh log-{other} {payload}")),
            (site, other, as_site(site, f"ssh -i ~/.ssh/id_hipgate_pg {SITE_USER}@{lab['addr'][other]} {payload}")),
        ]
    for src, dst, res in probes:
        assert res.returncode != 0, f"{src} -> {dst}: `{payload}` ran: {res.stdout}{res.stderr}"
        assert "uid=" not in res.stdout, f"{src} -> {dst}: {res.stdout}"
    for host in ("database", *SITES):
        assert no_marker(host, marker), f"{payload} ran on {host}"
    assert sh("backup-a", f"test -d {REPO}/backup/database").returncode == 0


def test_postgres_cannot_let_itself_in_by_adding_a_key(lab: dict) -> None:
    """A superuser's COPY ... TO PROGRAM runs as postgres, which owns its home: a key it adds there
    must not open a login (sshd reads the backup accounts' keys from root's files only)."""
    db = lab["addr"]["database"]
    as_postgres(
        "rm -f /tmp/hg-k /tmp/hg-k.pub && ssh-keygen -q -t ed25519 -N '' -C hg-attack-key -f /tmp/hg-k", check=True
    )
    as_postgres("mkdir -p ~/.ssh && cat /tmp/hg-k.pub >> ~/.ssh/authorized_keys", check=True)
    try:
        res = as_postgres(
            f"ssh -i /tmp/hg-k -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o BatchMode=yes postgres@{db} id"
        )
        assert res.returncode != 0 and "uid=" not in res.stdout, res.stdout + res.stderr
    finally:
        as_postgres(
            "rm -f /tmp/hg-k /tmp/hg-k.pub; sed -i /hg-attack-key/d ~/.ssh/authorized_keys; "
            "[ -s ~/.ssh/authorized_keys ] || rm -f ~/.ssh/authorized_keys"
        )


def test_an_allowed_session_from_the_database_host_cannot_delete_or_overwrite_offsite_backups(lab: dict) -> None:
    before = {s: (labels(s), fingerprint(s)) for s in SITES}
    assert all(lbl for lbl, _ in before.values()), before
    sh("database", "cat > /tmp/hg-evil-ssh && chmod 755 /tmp/hg-evil-ssh && rm -f /tmp/hg-evil-ssh.log", stdin=EVIL_SSH)
    # The host's own settings (postgres can read them) plus the evil ssh and the attacker's own lock
    # directory, so the real archiving on the host is not stopped by this test's `stop`.
    sh(
        "database",
        "(cat /etc/pgbackrest.conf; printf '[global]\\ncmd-ssh=/tmp/hg-evil-ssh\\nlock-path=/tmp/hg-attack-lock\\n')"
        " > /tmp/hg-attack.conf && chown postgres /tmp/hg-attack.conf && chmod 600 /tmp/hg-attack.conf",
    )
    base = "pgbackrest --config=/tmp/hg-attack.conf --stanza=database --log-level-console=info"
    attempts = []
    for repo, site in ((2, "backup-a"), (3, "backup-b")):
        files = before[site][1]
        segment = next(p for p in files if p.startswith("archive/database/") and p.count("/") == 4)
        manifest = next(p for p in files if p.endswith("/backup.manifest"))
        for attack in (
            # pgBackRest's own removal commands (2.45's internal repo-rm fails on a remote repository
            # with an assertion; stanza-delete removes every path of the stanza through the session).
            f"{base} --repo={repo} --repo{repo}-retention-full=1 expire",
            f"{base} stop; {base} --repo={repo} --force stanza-delete; {base} start",
            # Overwrites through the session's storage writes (atomic: a temporary file renamed over).
            f"echo forged | {base} --repo={repo} repo-put {segment}",
            f"echo forged | {base} --repo={repo} repo-put backup/database/backup.info",
            f"echo forged | {base} --repo={repo} repo-put {manifest}",
            f"echo forged | {base} --repo={repo} repo-put backup/database/hg-new-file",
        ):
            attempts.append((site, attack, as_postgres(attack)))
    log = sh("database", "cat /tmp/hg-evil-ssh.log", check=False).stdout
    sh("database", "rm -rf /tmp/hg-evil-ssh /tmp/hg-evil-ssh.log /tmp/hg-attack-lock /tmp/hg-attack.conf")
    # Every off-site backup and every archived WAL file is still there, unchanged.
    for site, (old_labels, old_files) in before.items():
        assert labels(site) == old_labels, (site, [(a, r.stdout[-800:] + r.stderr[-800:]) for _, a, r in attempts])
        now = fingerprint(site)
        changed = {p for p, digest in old_files.items() if now.get(p) != digest}
        assert not changed, (site, sorted(changed)[:10], [(a, r.stderr[-300:]) for _, a, r in attempts])
        added = {p for p in now if p.startswith("backup/") and p not in old_files}
        assert not added, (site, sorted(added))
        verify = as_site(site, "pgbackrest --stanza=database --log-level-console=warn verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    # The storage operations reached the sites and the file permissions refused them.
    errors = " ".join(r.stdout + r.stderr for _, _, r in attempts)
    assert "Operation not permitted" in errors and "Permission denied" in errors, errors[-3000:]
    # The sessions were ones the gate allows (archive-push remotes of each site's repository).
    assert log.count(" => ") >= 8 and "--repo=2" in log and "--repo=3" in log, log
    for site in SITES:
        journal = sh(site, "journalctl -t hipgate-backup-ssh-gate --since '-15min' -o cat", check=False).stdout
        assert "allowed repo remote" in journal and "archive-push:remote" in journal, journal[-2000:]
    # Archiving to the sites still works (the attacker's lock path never stopped it).
    sh("database", "runuser -u postgres -- pgbackrest --stanza=database --archive-timeout=60 check")


def test_a_forged_restore_record_runs_nothing_as_root_and_does_not_pass_the_check_or_gate(lab: dict) -> None:
    forged = json.dumps(
        {"finished": "@0;touch /root/pwn;", "ok": True, "page_checksums_ok": True, "steps": [], "tables": {}}
    )
    name = f"{RECORDS}/2099-01-01T000000Z.json"
    # The repository account cannot write a record at all: the directory is root's.
    res = sh("backup-b", f"runuser -u {SITE_USER} -- sh -c 'cat > {name}'", stdin=forged, check=False)
    assert res.returncode != 0 and sh("backup-b", f"test ! -e {name}", check=False).returncode == 0
    assert sh("backup-b", f"stat -c %U:%a {RECORDS}").stdout.strip() == "root:755"
    # Had it got one there by another way (written as the account, planted), nothing trusts it.
    sh("backup-b", f"cat > {name} && chown {SITE_USER} {name}", stdin=forged)
    try:
        out = check_from(lab, "backup_restore_tested", "backup-b")
        assert not out.ok and "2099-01-01T000000Z.json" in out.en, out.en
        assert no_marker("backup-b", "/root/pwn")
        # As root-owned content with a forged timestamp it is still refused (the format is checked).
        sh("backup-b", f"chown root {name}")
        out = check_from(lab, "backup_restore_tested", "backup-b")
        assert not out.ok and no_marker("backup-b", "/root/pwn"), out.en
    finally:
        sh("backup-b", f"rm -f {name} /root/pwn")
    assert check_from(lab, "backup_restore_tested", "backup-b").ok


def test_restore_test_records_are_written_by_root_while_the_restore_runs_unprivileged(lab: dict) -> None:
    # Data of its own, in a backup of this site's repository, so the file passes alone.
    sh("database", "runuser -u postgres -- psql -XAtq -d exchange -c " + shlex.quote(SEED))
    sh("backup-a", f"runuser -u {SITE_USER} -- /usr/local/bin/hipgate-backup run --type full")
    started = time.time()
    sh("backup-a", "systemctl start hipgate-backup-restore-test.service")
    newest = sh("backup-a", f"ls -1 {RECORDS} | tail -1").stdout.strip()
    meta = sh("backup-a", f"stat -c '%U %a %Y' {RECORDS}/{newest}").stdout.split()
    assert meta[:2] == ["root", "644"] and int(meta[2]) >= started - 5, meta
    record = json.loads(sh("backup-a", f"cat {RECORDS}/{newest}").stdout)
    assert record["ok"] is True and record["page_checksums_ok"] is True
    assert record["tables"]["exchange.public.hg_attack_seed"]["rows"] == 2000, record["tables"]
    # The account that ran the restore can neither change nor remove it.
    assert as_site("backup-a", f"echo x >> {RECORDS}/{newest}").returncode != 0
    assert as_site("backup-a", f"rm -f {RECORDS}/{newest}").returncode != 0
    sh("database", "runuser -u postgres -- psql -XAtq -d exchange -c 'drop table hg_attack_seed'")


# The allowed session a site's key exists for: a pg remote of the stanza, exactly as pgBackRest 2.45's
# backup sends it (tests/unit/test_backup_hardening.py). The site then speaks the protocol itself.
PG_REMOTE = (
    "pgbackrest --exec-id=4242-0badcafe --log-level-console=off --log-level-file=off --log-level-stderr=error "
    f"--pg1-path={PG_PATH} --pg1-port=5432 --process=0 --remote-type=pg --stanza=database backup:remote"
)
SITE_MARK = "/tmp/hg-site-pwned"
# What a hostile site tries through that session (name -> how). Each must be refused.
SITE_ATTACKS = {
    "copy_to_program": ("sql", f"copy (select 1) to program 'touch {SITE_MARK}'"),
    "alter_system": ("sql", f"alter system set archive_command = 'touch {SITE_MARK}'"),
    "create_superuser": ("sql", "create role hg_site_evil superuser login"),
    "read_server_file": ("sql", "select pg_read_file('/etc/shadow')"),
    "grant_itself": ("sql", "grant pg_execute_server_program to current_user"),
    "write_data_file": ("write", f"{PG_PATH}/hg-site-evil"),
    "rewrite_auto_conf": ("write", f"{PG_PATH}/postgresql.auto.conf"),
    "remove_data_file": ("remove", f"{PG_PATH}/PG_VERSION"),
    "rewrite_repo1_settings": ("write", "/etc/pgbackrest.conf"),
    "plant_a_key": ("write", "/home/hipgate_backup/.ssh/authorized_keys"),
}
SITE_DRIVER = r"""
import json, sys
sys.path.insert(0, "/tmp/hg-proto")
from pgbackrest_protocol import Remote, RemoteError
db, command, attacks = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {}
with Remote(["ssh", db, command]) as remote:
    def attempt(name, kind, arg):
        try:
            if kind == "sql":
                value = remote.db_query(arg)
            elif kind == "write":
                value = remote.storage_write(arg, b"archive_command = 'touch /tmp/hg-site-pwned'\n")
            else:
                value = remote.storage_remove(arg)
            out[name] = {"refused": False, "value": repr(value)[:300]}
        except RemoteError as e:
            out[name] = {"refused": True, "error": str(e)[:300]}
    who = "select current_user || ' ' || (select rolsuper::text from pg_roles where rolname = current_user)"
    attempt("whoami", "sql", who)
    for name, (kind, arg) in attacks.items():
        attempt(name, kind, arg)
print(json.dumps(out))
"""


def data_fingerprint() -> str:
    return sh("database", f"cd {PG_PATH} && sha256sum PG_VERSION postgresql.auto.conf && ls -A | sort").stdout


def test_a_hostile_sites_allowed_session_runs_no_superuser_sql_and_writes_no_database_file(lab: dict) -> None:
    """A site's backup key may start `backup:remote` on the database host; pgBackRest's protocol lets the
    client run any SQL and ask for any storage operation in it. A hostile site driving the protocol itself
    (tests/lab/pgbackrest_protocol.py) gets a session as the reader, no superuser, and can change nothing."""
    from pathlib import Path

    site = "backup-a"
    module = (Path(__file__).parent / "pgbackrest_protocol.py").read_text()
    sh(
        site,
        "rm -rf /tmp/hg-proto && install -d -m 0755 /tmp/hg-proto && cat > /tmp/hg-proto/pgbackrest_protocol.py",
        stdin=module,
    )
    sh(site, "cat > /tmp/hg-proto/driver.py", stdin=SITE_DRIVER)
    sh("database", f"rm -f {SITE_MARK}")
    before = data_fingerprint()
    try:
        res = as_site(
            site,
            "python3 /tmp/hg-proto/driver.py "
            + " ".join(shlex.quote(a) for a in (lab["addr"]["database"], PG_REMOTE, json.dumps(SITE_ATTACKS))),
        )
        assert res.returncode == 0, res.stdout + res.stderr
        out = json.loads(res.stdout)
        # The session is a real, allowed one (the SQL ran), as the reader's role and no superuser.
        assert not out["whoami"]["refused"] and "hipgate_backup false" in out["whoami"]["value"], out["whoami"]
        for name in SITE_ATTACKS:
            assert out[name]["refused"], (name, out[name])
        errors = " ".join(out[n]["error"] for n in SITE_ATTACKS)
        assert "permission denied" in errors.lower(), errors
        assert no_marker("database", SITE_MARK)
        assert data_fingerprint() == before
        roles = sh(
            "database",
            "runuser -u postgres -- psql -XAtc \"select count(*) from pg_roles where rolname = 'hg_site_evil'\"",
        )
        assert roles.stdout.strip() == "0"
        setting = sh("database", "runuser -u postgres -- psql -XAtc 'show archive_command'").stdout
        assert "hg-site-pwned" not in setting
        journal = sh("database", "journalctl -t hipgate-backup-ssh-gate --since '-10min' -o cat", check=False).stdout
        assert "allowed pg remote" in journal and "--pg1-user=hipgate_backup" in journal, journal[-2000:]
    finally:
        sh(site, "rm -rf /tmp/hg-proto")
        sh("database", f"rm -f {SITE_MARK} {PG_PATH}/hg-site-evil")


def test_only_the_reader_may_read_pgdata(lab: dict) -> None:
    """PGDATA is postgres's to write; its read group holds the backup reader alone. Anyone else who joins it
    fails the database's access-rules check (GB/T 22239 8.1.4.2-e)."""
    mode = sh("database", f"stat -c '%a %U %G' {PG_PATH}").stdout.split()
    assert mode == ["2750", "postgres", "hipgate_pgdata"], mode
    files = sh("database", f"find {PG_PATH} -type f -perm /g+w,o+rwx -print -quit").stdout
    assert not files.strip(), files
    assert check_from(lab, "postgresql_access_rules", "database").ok
    sh("database", "useradd -M -s /usr/sbin/nologin hg-reader && usermod -aG hipgate_pgdata hg-reader")
    try:
        failed = check_from(lab, "postgresql_access_rules", "database")
        assert not failed.ok and "hg-reader" in failed.en, failed.en
    finally:
        sh("database", "userdel hg-reader")
    assert check_from(lab, "postgresql_access_rules", "database").ok


def test_the_reader_is_a_login_without_password_that_nothing_else_may_copy(lab: dict) -> None:
    """The reader's database role logs in by peer on the local socket only (no password, no superuser):
    given a password it would be a static login, and check database_no_static_passwords says so."""
    run = "runuser -u postgres -- psql -XAtc"
    row = sh(
        "database", f"{run} \"select rolsuper, rolpassword is null from pg_authid where rolname = 'hipgate_backup'\""
    )
    assert row.stdout.strip() == "f|t", row.stdout
    assert check_from(lab, "database_no_static_passwords", "database").ok
    sh("database", f"{run} \"alter role hipgate_backup password 'hg-case-not-a-secret'\"")
    try:
        failed = check_from(lab, "database_no_static_passwords", "database")
        assert not failed.ok and "hipgate_backup" in failed.en, failed.en
    finally:
        sh("database", f"{run} 'alter role hipgate_backup password null'")
    assert check_from(lab, "database_no_static_passwords", "database").ok
