"""Verify the three repositories, the SSH trust between their hosts, the backup logs at every site,
and that a restore from an off-site repository reproduces the database's data."""

import json
import os

import pytest
import testinfra

testinfra_hosts = ["ansible://all"]
REPO = {"db": 1, "site-a": 2, "site-b": 3}
RUN_USER = {"db": "postgres", "site-a": "pgbackrest", "site-b": "pgbackrest"}
FINGERPRINT = "select count(*) || ' ' || md5(string_agg(t::text, E'\\\\n' order by t::text)) from public.settlement t"


def name(host):
    return host.backend.get_hostname()


def other(host_name):
    return testinfra.get_host(f"ansible://{host_name}?ansible_inventory={os.environ['MOLECULE_INVENTORY_FILE']}")


def status(host):
    with host.sudo(RUN_USER[name(host)]):
        return json.loads(host.check_output("/usr/local/bin/hipgate-backup status"))


def test_each_host_holds_its_repository_with_a_full_encrypted_backup(host):
    st = status(host)
    assert st["repo"] == REPO[name(host)]
    backups = st["info"]["backup"]
    assert any(b["type"] == "full" for b in backups), backups
    assert st["info"]["cipher"] == "aes-256-cbc"
    conf = host.file("/etc/pgbackrest.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", RUN_USER[name(host)], 0o640)
    assert "cipher-pass" not in host.file("/etc/hipgate/backup.json").content_string


def test_wal_is_archived_to_every_repository(host):
    if name(host) != "db":
        pytest.skip("db only")
    with host.sudo("postgres"):
        assert host.check_output("psql -XAtc 'show archive_mode'") == "on"
        host.check_output("pgbackrest --stanza=db check")  # raises unless all three repos got the WAL
        archived = host.check_output("psql -XAtc 'select last_archived_wal from pg_stat_archiver'")
    assert archived


def test_backup_logs_reach_every_site_unchanged(host):
    if name(host) == "db":
        pytest.skip("sites only")
    here = {entry["name"]: entry["sha256"] for entry in status(host)["logs"]}
    for producer in ("db", "site-a", "site-b"):
        for entry in status(other(producer))["logs"]:
            if entry["repo"] == REPO[producer]:
                assert here.get(entry["name"]) == entry["sha256"], (producer, entry["name"])


def test_keys_are_pinned_restricted_and_forced(host):
    # On the database host the sites' keys land on the reader, and postgres accepts none.
    user = "hipgate_backup" if name(host) == "db" else RUN_USER[name(host)]
    if name(host) == "db":
        own = host.file("/etc/ssh/hipgate-backup-keys/postgres")
        assert own.user == "root" and not [k for k in own.content_string.splitlines() if k.startswith("from=")]
        reader = host.user("hipgate_backup")
        assert sorted(reader.groups) == ["hipgate_backup", "hipgate_pgdata"], reader.groups
    keyfile = host.file(f"/etc/ssh/hipgate-backup-keys/{user}")
    assert (keyfile.user, keyfile.mode) == ("root", 0o644)  # the account cannot add a key
    keys = [k for k in keyfile.content_string.splitlines() if k.startswith("from=")]
    wal = (
        []
        if name(host) == "db"
        else [
            k
            for k in host.file("/etc/ssh/hipgate-backup-keys/pgbackrest-wal").content_string.splitlines()
            if k.startswith("from=")
        ]
    )
    # Every key has a forced command: none gives a shell.
    assert keys and all(",restrict,command=" in k.split(" ")[0] for k in keys + wal)
    if name(host) == "db":
        assert all('command="/usr/local/bin/hipgate-backup-ssh-gate pg"' in k for k in keys)
    else:
        # The repository's owner takes only backup logs, each key for its sender's repository only.
        assert len(keys) == 2 and all('command="/usr/local/bin/hipgate-backup receive-log ' in k for k in keys)
        # The database host reaches only the WAL account, through the gate.
        assert len(wal) == 1 and 'command="/usr/local/bin/hipgate-backup-ssh-gate repo"' in wal[0]


def test_a_log_key_runs_nothing_but_receive_log(host):
    if name(host) != "db":
        pytest.skip("db only")
    with host.sudo("postgres"):
        res = host.run("ssh log-site-a id")
    assert res.rc != 0 and "uid=" not in res.stdout
    assert "invalid backup log name" in res.stderr


def test_restore_from_an_off_site_repository_reproduces_the_data(host):
    if name(host) != "site-b":
        pytest.skip("site-b only")
    with other("db").sudo("postgres"):
        expected = other("db").check_output(f'psql -XAt -d exchange -c "{FINGERPRINT}"')
    with host.sudo():  # root writes the record; the restore itself runs as pgbackrest
        result = json.loads(host.check_output("/usr/local/bin/hipgate-backup restore-test"))
    assert result["ok"] and result["page_checksums_ok"], result
    count, digest = expected.split(" ")
    assert result["tables"]["exchange.public.settlement"] == {"rows": int(count), "md5": digest}
    assert not host.run("ls /var/tmp | grep restore-test-").stdout  # scratch copy removed


def test_timers_are_enabled(host):
    names = ["hipgate-backup-full", "hipgate-backup-diff", "hipgate-backup-freshness"]
    if name(host) != "db":
        names += ["hipgate-backup-restore-test", "hipgate-backup-seal"]
    for timer in names:
        assert host.service(f"{timer}.timer").is_enabled, timer
