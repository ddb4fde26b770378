"""Split custody end to end on the reference lab (OpenBao deployed by site.yml, the superuser
password put in custody by the session fixture): a quorum opens a break-glass session from the
bastion, rotation retires a recovered password, a sealed OpenBao stops every custody command and
changes nothing, and no secret lands in any log, journal, output, process list or git."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import hvac

from helpers import on_terminal
from hipgate.custody import journal, vault
from lab_reference import HIPGATE, INV, LAB_DIR, custodian_password, hipgate, sh, unseal

CUSTODY = LAB_DIR / "custody"
TOKEN = ["--token-file", str(CUSTODY / "operator.token")]
CA = str(LAB_DIR / "pki" / "ca.crt")
ROOT = Path(__file__).resolve().parents[2]


def first_password(custodian: str) -> str:
    return custodian_password(custodian)


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
    secrets |= {p.name: p.read_text().strip() for p in CUSTODY.glob("*.password")}
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


# What someone inside a break-glass session tries, from psql's own `\!` shell: psql's environment,
# command line, open files and memory, and every file the session could have used.
PEEK = r"""
import os, re
sh = os.getppid()  # `\\!` runs sh -c, whose parent is psql
p = int(open(f"/proc/{sh}/stat").read().rsplit(")", 1)[1].split()[1])
print("account", os.getuid(), "psql", open(f"/proc/{p}/comm").read().strip())
for name in ("environ", "cmdline"):
    try:
        print(name, open(f"/proc/{p}/{name}", "rb").read().replace(b"\0", b"\n").decode(errors="replace"))
    except OSError as e:
        print(name, "denied", e.errno)
try:
    for fd in os.listdir(f"/proc/{p}/fd"):
        target = os.readlink(f"/proc/{p}/fd/{fd}")
        if target.startswith(("pipe:", "/tmp", "/run", "/var", "/home")):
            f = os.open(f"/proc/{p}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
            print("fd", fd, target, os.read(f, 65536))
except OSError as e:
    print("fd denied", e.errno)
try:
    mem = open(f"/proc/{p}/mem", "rb")
    for line in open(f"/proc/{p}/maps"):
        rng, perms = line.split()[:2]
        if perms.startswith("r"):
            a, b = (int(x, 16) for x in rng.split("-"))
            try:
                mem.seek(a)
                for m in re.findall(rb"hg1-[A-Za-z0-9_-]{22}", mem.read(b - a)):
                    print("mem", m.decode())
            except (OSError, OverflowError, ValueError):
                pass
    print("mem readable")
except OSError as e:
    print("mem denied", e.errno)
"""


def test_the_recovered_password_cannot_be_read_inside_the_break_glass_session(lab: dict) -> None:
    sh("bastion", "cat > /tmp/hg-peek.py && chmod 0755 /tmp/hg-peek.py", stdin=PEEK)
    attempts = "\n".join(
        [
            r"\! env; cat ${PGPASSFILE:-/dev/null}; cat /dev/fd/3 </dev/null; python3 /tmp/hg-peek.py",
            r"\! for f in /tmp/* /run/hipgate-breakglass/* /run/user/*/*; do [ -f $f ] && cat $f; done 2>&1",
            r"\! sudo -n true && echo SUDO-WORKS",
            "select current_user;",
        ]
    )
    session = recover(("custodian-a", "custodian-b"), "--session", "5", stdin=attempts + "\n")
    out = session.stdout + session.stderr
    assert session.returncode == 0 and "postgres" in out.split("current_user")[-1], out
    password = recover_on_terminal(("custodian-a", "custodian-b"))
    assert password not in out, "the recovered password was readable inside the session"
    # No password of hipgate's form anywhere (the peek script's own pattern has a bracket after hg1-).
    assert not re.search(r"hg1-[A-Za-z0-9_-]{22}", out) and "SUDO-WORKS" not in out, out
    assert "mem denied" in out, out  # psql is non-dumpable: its memory is closed to its own account


def test_the_whole_break_glass_session_ends_at_its_deadline(lab: dict) -> None:
    started = time.monotonic()
    lingering = "\n".join([r"\! setsid sleep 900 >/dev/null 2>&1 < /dev/null &", "select pg_sleep(900);"])
    session = recover(("custodian-b", "custodian-c"), "--session", "1", stdin=lingering + "\n")
    elapsed = time.monotonic() - started
    assert elapsed < 120, f"the session outlived its 60 s deadline: {elapsed:.0f} s"
    time.sleep(3)
    left = sh("bastion", "ps -eo user:32,args | grep -E 'sleep 900|psql' | grep -v grep || true").stdout
    assert "sleep 900" not in left and "psql" not in left, left
    backends = sh(
        "database",
        'runuser -u postgres -- psql -XAtc "select count(*) from pg_stat_activity '
        "where query like '%pg_sleep(900)%' and pid <> pg_backend_pid()\"",
    ).stdout.strip()
    assert backends == "0", f"the session's database backend is still running ({session.returncode})"


def test_the_operators_token_cannot_alter_or_delete_a_share_in_force(lab: dict) -> None:
    addr = f"https://{lab['addr']['vault']}:8200"
    writer = hvac.Client(url=addr, token=operator_token(), verify=CA)
    generation = vault.current(writer, "database")["generation"]
    path = vault.share_path("database", generation, "custodian-a")
    before = vault.read_share(
        vault.login(addr, "custodian-a", first_password("custodian-a"), CA), "database", generation, "custodian-a"
    )
    kv, m = writer.secrets.kv.v2, vault.KV_MOUNT
    assert writer.sys.get_capabilities(paths=[f"{m}/data/{path}"])["data"][f"{m}/data/{path}"] == ["create"]
    attacks = {
        "overwrite": lambda: kv.create_or_update_secret(path=path, secret={"share": "1:00"}, mount_point=m),
        "overwrite cas=1": lambda: kv.create_or_update_secret(
            path=path, secret={"share": "1:00"}, cas=1, mount_point=m
        ),
        "delete": lambda: kv.delete_latest_version_of_secret(path=path, mount_point=m),
        "destroy": lambda: kv.destroy_secret_versions(path=path, versions=[1], mount_point=m),
        "metadata": lambda: kv.delete_metadata_and_all_versions(path=path, mount_point=m),
        "expire": lambda: kv.update_metadata(path=path, delete_version_after="1s", mount_point=m),
    }
    for name, attack in attacks.items():
        try:
            attack()
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            continue
        raise AssertionError(f"the operator's token could: {name}")
    after = vault.read_share(
        vault.login(addr, "custodian-a", first_password("custodian-a"), CA), "database", generation, "custodian-a"
    )
    assert after == before
