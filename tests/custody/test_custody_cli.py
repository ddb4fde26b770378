"""`hipgate custody` as custodians and operators use it, against a real OpenBao and PostgreSQL:
tokens from the environment or a 0600 file, custodians' passwords typed at a prompt (a pty here),
the recovered password shown only on a terminal and only on request."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import CUSTODIANS, copy_example, edit_yaml, on_terminal, pg_login
from hipgate.custody import ceremony, journal, postgres

HIPGATE = str(Path(sys.executable).parent / "hipgate")


def inventory(tmp_path: Path, bao: dict) -> Path:
    inv = copy_example(tmp_path)

    def point_to_bao(d: dict) -> None:
        d["hipgate"]["custody"]["vault_addr"] = bao["addr"]
        # The dev server speaks plain HTTP on loopback: accepted, as a province would have to, with a reason.
        d["hipgate"]["acknowledge"] = [
            {"risk": "plaintext_vault_addr", "reason": "test OpenBao dev server on loopback"}
        ]
        d["hipgate"]["custodians"] = [{"id": c, "name": c, "organisation": "test"} for c in CUSTODIANS]

    edit_yaml(inv / "group_vars" / "all" / "hipgate.yml", point_to_bao)
    return inv


def run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("BAO_TOKEN", "VAULT_TOKEN")}
    return subprocess.run([HIPGATE, *args], env={**clean, **env}, input=stdin, capture_output=True, text=True)


def init(bao: dict, pg: dict, log: Path) -> str:
    su = postgres.Superuser(pg["superuser"], "test cluster")
    return ceremony.init("db01", bao["writer"], CUSTODIANS, 2, su, "postgres", log, "operator-1")


def test_status_reads_custody_from_the_inventorys_vault(bao: dict, pg: dict, tmp_path: Path) -> None:
    inv = inventory(tmp_path, bao)
    token = {"BAO_TOKEN": bao["writer"].token}
    status = ["custody", "status", "db01", "-i", str(inv)]
    assert run(status, token).returncode == 5  # nothing in custody yet
    generation = init(bao, pg, tmp_path / "journal.jsonl")
    res = run(status, token)
    assert res.returncode == 0 and generation in res.stdout and "2/3" in res.stdout, res.stdout + res.stderr
    missing = run(status, {})
    assert missing.returncode == 2 and "BAO_TOKEN" in missing.stdout + missing.stderr
    loose = tmp_path / "token"
    loose.write_text(bao["writer"].token)
    loose.chmod(0o644)
    res = run([*status, "--token-file", str(loose)], {})
    assert res.returncode == 2 and "chmod 600" in res.stderr
    loose.chmod(0o600)
    assert run([*status, "--token-file", str(loose)], {}).returncode == 0


def test_quorum_recovers_on_a_terminal_only_and_typed_passwords_stay_off_the_record(
    bao: dict, pg: dict, tmp_path: Path
) -> None:
    inv = inventory(tmp_path, bao)
    log = tmp_path / "journal.jsonl"
    init(bao, pg, log)
    typed = [bao["passwords"][c] for c in CUSTODIANS[:2]]
    recover = ["custody", "recover", "db01", "-i", str(inv), "--journal", str(log)]
    recover += [a for c in CUSTODIANS[:2] for a in ("--custodian", c)]
    # Into a pipe: refused before any prompt, nothing read.
    piped = run([*recover, "--print"], {}, "".join(p + "\n" for p in typed))
    assert piped.returncode == 2 and "not a terminal" in piped.stderr
    assert not any(e["step"] == "share-read" for e in journal.entries(log))
    # Neither use chosen: refused.
    assert on_terminal([HIPGATE, *recover], typed)[0] == 2
    # On a terminal with --print: shown once, and it logs in; what custodians typed is not echoed.
    rc, screen = on_terminal([HIPGATE, *recover, "--print"], typed)
    assert rc == 0, screen
    password = [line.strip() for line in screen.splitlines() if line.startswith("hg1-")]
    assert len(password) == 1 and pg_login(pg["port"], password[0]).returncode == 0
    assert not any(p in screen for p in typed)
    # One custodian's wrong password: refused, nothing recovered.
    rc, screen = on_terminal([HIPGATE, *recover, "--print"], [typed[0], "not-their-password"])
    assert rc == 4 and "hg1-" not in screen and "could not log in" in screen
    assert sum(e["step"] == "recovered" for e in journal.entries(log)) == 1


def test_unknown_custodian_and_sealed_vault_are_refused_before_any_prompt(bao: dict, pg: dict, tmp_path: Path) -> None:
    inv = inventory(tmp_path, bao)
    init(bao, pg, tmp_path / "journal.jsonl")
    base = ["custody", "recover", "db01", "-i", str(inv), "--print"]
    rc, screen = on_terminal([HIPGATE, *base, "--custodian", "custodian-a", "--custodian", "mallory"], [])
    assert rc == 2 and "mallory" in screen
    bao["admin"].sys.seal()
    rc, screen = on_terminal([HIPGATE, *base, "--custodian", "custodian-a", "--custodian", "custodian-b"], [])
    assert rc == 4 and "sealed" in screen and "已封存" in screen
    assert "password of custodian" not in screen  # nobody was asked to type anything
    res = run(["custody", "rotate", "db01", "-i", str(inv)], {"BAO_TOKEN": bao["writer"].token})
    assert res.returncode == 4 and "sealed" in res.stdout + res.stderr
