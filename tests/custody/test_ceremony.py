"""Custody ceremonies against a real OpenBao and a real PostgreSQL: init splits a new superuser
password among the custodians, a quorum recovers it and logs in, rotation retires it, and no secret
lands in the journal, the audit log, the database log or a process's command line."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import hvac
import pytest

from helpers import CUSTODIANS, pg_login
from hipgate.custody import ceremony, journal, postgres, shares, vault
from hipgate.errors import UserError


def superuser(pg: dict) -> postgres.Superuser:
    return postgres.Superuser(pg["superuser"], "test cluster")


def custodian(bao: dict, name: str) -> hvac.Client:
    return vault.login(bao["addr"], name, bao["passwords"][name])


def init(bao: dict, pg: dict, log: Path) -> str:
    return ceremony.init("db01", bao["writer"], CUSTODIANS, 2, superuser(pg), "postgres", log, "operator-1")


def test_quorum_recovers_a_password_that_logs_in_and_one_custodian_cannot(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    generation = init(bao, pg, log)
    state = ceremony.status(bao["writer"], "db01")
    assert state["in_custody"] and state["generation"] == generation and state["threshold"] == 2
    # One custodian alone: refused before any share is combined.
    with pytest.raises(UserError, match="not enough custodians"):
        ceremony.recover("db01", {"custodian-a": custodian(bao, "custodian-a")}, log)
    # Even with their share in hand, one share does not give the password.
    alone = shares.Share.decode(vault.read_share(custodian(bao, "custodian-a"), "db01", generation, "custodian-a"))
    assert pg_login(pg["port"], shares.password_of(shares.combine([alone]))).returncode != 0
    # A quorum: the password logs in to PostgreSQL.
    quorum = {c: custodian(bao, c) for c in ("custodian-b", "custodian-c")}
    password = ceremony.recover("db01", quorum, log)
    assert pg_login(pg["port"], password).returncode == 0
    steps = [(e["step"], e["who"]) for e in journal.entries(log)]
    assert ("share-read", "custodian-b") in steps and ("recovered", "custodian-b+custodian-c") in steps
    assert log.stat().st_mode & 0o777 == 0o600


def test_rotation_retires_the_old_password(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    first = init(bao, pg, log)
    old = ceremony.recover("db01", {c: custodian(bao, c) for c in CUSTODIANS[:2]}, log)
    second = init(bao, pg, log)  # custody rotate: a new generation replaces the burned one
    assert second != first
    new = ceremony.recover("db01", {c: custodian(bao, c) for c in CUSTODIANS[1:]}, log)
    assert pg_login(pg["port"], old).returncode != 0
    assert pg_login(pg["port"], new).returncode == 0
    assert journal.entries(log)[-1]["step"] == "recovered"
    assert any(e["step"] == "in-force" and e.get("replaced") == first for e in journal.entries(log))


def test_no_secret_in_journal_audit_database_log_or_process_list(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # every command line on the machine while the ceremonies run
        while not stop.is_set():
            seen.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        generation = init(bao, pg, log)
        password = ceremony.recover("db01", {c: custodian(bao, c) for c in CUSTODIANS[:2]}, log)
    finally:
        stop.set()
        watcher.join()
    share_values = [vault.read_share(custodian(bao, c), "db01", generation, c).split(":", 1)[1] for c in CUSTODIANS]
    db_log = "".join(p.read_text(errors="replace") for p in pg["log_dir"].glob("*"))
    assert "ALTER ROLE" in db_log and "SCRAM-SHA-256$" in db_log  # the statement was logged: as a verifier
    for name, text in [
        ("journal", log.read_text()),
        ("audit", bao["audit"].read_text()),
        ("database log", db_log),
        ("process list", "".join(seen)),
    ]:
        assert password not in text, name
        for value in share_values:
            assert value not in text, name


def test_sealed_vault_changes_nothing(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    init(bao, pg, log)
    password = ceremony.recover("db01", {c: custodian(bao, c) for c in CUSTODIANS[:2]}, log)
    before = len(journal.entries(log))
    bao["admin"].sys.seal()
    with pytest.raises(UserError) as caught:
        init(bao, pg, log)
    assert "sealed" in str(caught.value) and "已封存" in str(caught.value)
    assert pg_login(pg["port"], password).returncode == 0  # the password in force still works
    assert len(journal.entries(log)) == before
    with pytest.raises(UserError, match="sealed"):
        custodian(bao, "custodian-a")


def test_database_refusing_the_new_password_keeps_the_old_generation(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    first = init(bao, pg, log)
    password = ceremony.recover("db01", {c: custodian(bao, c) for c in CUSTODIANS[:2]}, log)
    with pytest.raises(UserError, match="the database refused"):
        ceremony.init("db01", bao["writer"], CUSTODIANS, 2, superuser(pg), "no_such_role", log, "operator-1")
    assert ceremony.status(bao["writer"], "db01")["generation"] == first
    assert ceremony.recover("db01", {c: custodian(bao, c) for c in CUSTODIANS[1:]}, log) == password
