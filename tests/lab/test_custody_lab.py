"""Split custody end to end on the reference lab (OpenBao deployed by site.yml, the superuser
password put in custody by the session fixture): a quorum opens a break-glass session from the
bastion, rotation retires a recovered password, a sealed OpenBao stops every custody command and
changes nothing, and no secret lands in any log, journal, output, process list or git."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import hvac

from helpers import on_terminal
from hipgate.custody import journal, vault
from lab_reference import HIPGATE, INV, LAB_DIR, hipgate, sh, unseal

CUSTODY = LAB_DIR / "custody"
TOKEN = ["--token-file", str(CUSTODY / "operator.token")]
CA = str(LAB_DIR / "pki" / "ca.crt")
ROOT = Path(__file__).resolve().parents[2]


def first_password(custodian: str) -> str:
    return (CUSTODY / f"{custodian}.login").read_text().strip()


def recover(custodians: tuple[str, ...], *use: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Custodians type their passwords (stdin, no terminal: the session is a new one without a
    controlling terminal, so getpass reads stdin); extra stdin goes to the break-glass psql."""
    argv = [HIPGATE, "custody", "recover", "database", "-i", str(INV), *use]
    argv += [a for c in custodians for a in ("--custodian", c)]
    typed = "".join(first_password(c) + "\n" for c in custodians) + stdin
    return subprocess.run(argv, input=typed, capture_output=True, text=True, start_new_session=True, check=False)


def recover_on_terminal(custodians: tuple[str, ...]) -> str:
    argv = [HIPGATE, "custody", "recover", "database", "-i", str(INV), "--print"]
    argv += [a for c in custodians for a in ("--custodian", c)]
    rc, screen = on_terminal(argv, [first_password(c) for c in custodians])
    assert rc == 0, screen
    shown = [line.strip() for line in screen.splitlines() if line.startswith("hg1-")]
    assert len(shown) == 1, screen
    return shown[0]


def superuser_from_bastion(lab: dict, password: str) -> subprocess.CompletedProcess[str]:
    """psql as postgres from the bastion; the password reaches it in a 0600 file over ssh's stdin."""
    db = lab["addr"]["database"]
    conn = f"host={db} dbname=postgres user=postgres sslmode=verify-full sslrootcert=/etc/hipgate/pki/ca.crt"
    return sh(
        "bastion",
        'f=$(mktemp) && cat > "$f" && PGPASSFILE="$f" psql -XAt -w '
        f"'{conn}' -c 'select current_user'; rc=$?; rm -f \"$f\"; exit $rc",
        stdin=f"{db}:5432:postgres:postgres:{password}\n",
        check=False,
    )


def test_quorum_opens_a_break_glass_session_from_the_bastion(lab: dict) -> None:
    assert "generation" in lab["custody_init"]
    status = hipgate("custody", "status", "database", "-i", str(INV), *TOKEN)
    assert "2/3" in status.stdout
    alone = recover(("custodian-b",), "--session", "5", stdin="select current_user;\n")
    assert alone.returncode == 4 and "not enough custodians" in alone.stderr, alone.stdout + alone.stderr
    session = recover(("custodian-a", "custodian-b"), "--session", "5", stdin="select current_user;\n")
    assert session.returncode == 0, session.stdout + session.stderr
    shown = [line.strip() for line in session.stdout.splitlines()]
    assert shown[shown.index("current_user") + 2] == "postgres", session.stdout  # header, rule, value
    assert "custody rotate must follow" in session.stderr
    # The session's password file on the bastion is gone with the session.
    left = sh("bastion", "grep -ls ':postgres:' /tmp/tmp.* 2>/dev/null || true").stdout.strip()
    assert left == ""
    steps = [(e["step"], e["who"]) for e in journal.entries(CUSTODY / "journal.jsonl")]
    assert ("share-read", "custodian-a") in steps and ("recovered", "custodian-a+custodian-b") in steps
    # The superuser cannot log in from anywhere but the bastion (pg_hba), whatever the password.
    from_mw = sh(
        "middleware",
        f"psql -XAt -w 'host={lab['addr']['database']} user=postgres dbname=postgres sslmode=require' -c 'select 1'",
        check=False,
    )
    assert from_mw.returncode != 0 and "pg_hba.conf" in from_mw.stderr, from_mw.stderr


def test_rotation_retires_a_recovered_password_and_no_secret_lands_anywhere(lab: dict) -> None:
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:  # every command line on the control node while the ceremonies run
        while not stop.is_set():
            seen.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        old = recover_on_terminal(("custodian-a", "custodian-c"))
        assert superuser_from_bastion(lab, old).stdout.strip() == "postgres"
        rotated = hipgate("custody", "rotate", "database", "-i", str(INV), *TOKEN)
        new = recover_on_terminal(("custodian-b", "custodian-c"))
    finally:
        stop.set()
        watcher.join()
    assert new != old
    refused = superuser_from_bastion(lab, old)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr, refused.stderr
    assert superuser_from_bastion(lab, new).stdout.strip() == "postgres"

    # Every secret of this deployment...
    addr = f"https://{lab['addr']['vault']}:8200"
    state = vault.current(hvac.Client(url=addr, token=operator_token(), verify=CA), "database")
    shares = [
        vault.read_share(vault.login(addr, c, first_password(c), CA), "database", state["generation"], c)
        for c in ("custodian-a", "custodian-b", "custodian-c")
    ]
    secrets = {"old password": old, "new password": new, "operator token": operator_token()}
    secrets |= {f"share {i}": s.split(":", 1)[1] for i, s in enumerate(shares)}
    secrets |= {p.name: p.read_text().strip() for p in CUSTODY.glob("*.unseal-key")}
    secrets |= {p.name: p.read_text().strip() for p in CUSTODY.glob("*.login")}
    # ... against everything the run produced or logged.
    logs = "journalctl -q -o cat --since -2h; cat /var/log/syslog* /var/log/hipgate* 2>/dev/null; true"
    artifacts = {
        "ansible output": lab["deploy"],
        "custody output": lab["custody_init"] + rotated.stdout + rotated.stderr,
        "custody journal": (CUSTODY / "journal.jsonl").read_text(),
        "openbao audit log": sh("vault", "cat /var/log/openbao/audit.log").stdout,
        "postgresql logs": sh("database", "cat /var/log/postgresql/*.log").stdout,
        "process list": "".join(seen),
        **{f"{h} logs": sh(h, logs).stdout for h in ("vault", "database", "bastion", "middleware")},
    }
    assert "ALTER ROLE" in artifacts["postgresql logs"] or "alter role" in artifacts["postgresql logs"].lower()
    for name, text in artifacts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} found in {name}"
    for what, secret in secrets.items():
        grep = subprocess.run(["git", "grep", "-qF", "-e", secret], cwd=ROOT, check=False)
        assert grep.returncode == 1, f"{what} found in git"


def operator_token() -> str:  # read when needed: the file appears once OpenBao is set up
    return (CUSTODY / "operator.token").read_text().strip()


def test_sealed_openbao_stops_every_custody_command_and_changes_nothing(lab: dict) -> None:
    password = recover_on_terminal(("custodian-a", "custodian-b"))
    before = hipgate("custody", "status", "database", "-i", str(INV), *TOKEN).stdout
    sh("vault", "systemctl restart openbao")
    try:
        for args in (["rotate", "database"], ["status", "database"]):
            res = hipgate("custody", *args, "-i", str(INV), *TOKEN, check=False)
            out = res.stdout + res.stderr
            assert res.returncode == 4 and "sealed" in out and "已封存" in out and "Nothing was changed" in out, out
        argv = [HIPGATE, "custody", "recover", "database", "-i", str(INV), "--print"]
        rc, screen = on_terminal([*argv, "--custodian", "custodian-a", "--custodian", "custodian-b"], [])
        assert rc == 4 and "sealed" in screen and "password of custodian" not in screen, screen
        app = sh("middleware", "hipgate-db-login exchange_app -c 'select 1'", check=False)
        assert app.returncode == 4 and "sealed" in app.stderr, app.stderr
        # The password in force still works: nothing was changed.
        assert superuser_from_bastion(lab, password).stdout.strip() == "postgres"
    finally:
        unseal(lab)
    assert hipgate("custody", "status", "database", "-i", str(INV), *TOKEN).stdout == before
    assert sh("middleware", "hipgate-db-login exchange_app -XAt -c 'select 1'").stdout.strip() == "1"
