"""Custodians' first passwords (made by `custody setup`, so whoever ran it may know them): `custody
status` and the handover gate name every custodian who never replaced theirs, and `custody passwd`
replaces it, on a real OpenBao and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from test_custody_cli import HIPGATE, init, inventory, run

from helpers import CUSTODIANS, on_terminal
from hipgate.custody import vault
from hipgate.handover import custody_quorum
from hipgate.inventory import load_inventory


def test_status_and_handover_name_custodians_who_kept_their_first_password(bao: dict, pg: dict, tmp_path: Path) -> None:
    inv_dir = inventory(tmp_path, bao)
    init(bao, pg, tmp_path / "journal.jsonl")
    token = {"BAO_TOKEN": bao["writer"].token}
    status = ["custody", "status", "db01", "-i", str(inv_dir)]
    res = run(status, token)
    out = res.stdout + res.stderr
    assert "first password never changed" in out and "初始口令" in out, out
    assert all(c in out.split("first password never changed")[1] for c in CUSTODIANS), out
    gate = custody_quorum(load_inventory(inv_dir), "db01", bao["writer"].token, [])
    assert not gate.ok and all(c in gate.en for c in CUSTODIANS), gate.en
    # Each custodian replaces theirs (typed at a prompt, old then new twice).
    new = {}
    for c in CUSTODIANS:
        new[c] = f"{c}-own-password-2026"
        rc, screen = on_terminal(
            [HIPGATE, "custody", "passwd", "-i", str(inv_dir), "--custodian", c],
            [bao["passwords"][c], new[c], new[c]],
        )
        assert rc == 0, screen
        assert new[c] not in screen and bao["passwords"][c] not in screen
        vault.login(bao["addr"], c, new[c])  # the new one works
        if c == CUSTODIANS[0]:
            res = run(status, token)
            assert c not in (res.stdout + res.stderr).split("first password never changed")[1], res.stdout
    res = run(status, token)
    assert res.returncode == 0 and "first password never changed" not in res.stdout + res.stderr, res.stdout
    gate = custody_quorum(load_inventory(inv_dir), "db01", bao["writer"].token, [])
    assert gate.ok, gate.en


def test_a_wrong_current_password_or_a_short_new_one_changes_nothing(bao: dict, tmp_path: Path) -> None:
    inv_dir = inventory(tmp_path, bao)
    c = CUSTODIANS[1]
    argv = [HIPGATE, "custody", "passwd", "-i", str(inv_dir), "--custodian", c]
    rc, screen = on_terminal(argv, ["not-the-password", "whatever-password-1", "whatever-password-1"])
    assert rc == 4 and "could not log in" in screen, screen
    rc, screen = on_terminal(argv, [bao["passwords"][c], "short", "short"])
    assert rc == 2 and "12" in screen, screen
    rc, screen = on_terminal(argv, [bao["passwords"][c], "a-long-password-1", "a-long-password-2"])
    assert rc == 2 and "do not match" in screen, screen
    vault.login(bao["addr"], c, bao["passwords"][c])  # unchanged
