"""The handover gate's custody condition and the backup role's repository keys, against a real
OpenBao: the quorum is reachable only with the password in custody and OpenBao answering; a backup
key is created once by the operator's token and can never be overwritten."""

from __future__ import annotations

from pathlib import Path

import hvac
import pytest
from test_custody_cli import init, inventory

from helpers import CUSTODIANS
from hipgate.custody import vault
from hipgate.handover import custody_quorum
from hipgate.inventory import load_inventory


def audit(bao: dict) -> list[str]:
    return bao["audit"].read_text().splitlines()


def test_custody_quorum_holds_only_with_the_password_in_custody(bao: dict, pg: dict, tmp_path: Path) -> None:
    inv = load_inventory(inventory(tmp_path, bao))
    token = bao["writer"].token
    before = custody_quorum(inv, "db01", token, audit(bao))
    assert not before.ok  # nothing in custody yet
    assert not custody_quorum(inv, "db01", None, []).ok
    init(bao, pg, tmp_path / "journal.jsonl")
    for c in CUSTODIANS:  # first passwords replaced (see test_first_passwords)
        vault.change_password(vault.login(bao["addr"], c, bao["passwords"][c]), c, f"{c}-own-password-1")
    held = custody_quorum(inv, "db01", token, audit(bao))
    assert held.ok and held.evidence["threshold"] == 2 and len(held.evidence["custodians"]) == 3, held.en
    bao["proc"].terminate()
    bao["proc"].wait(timeout=10)
    gone = custody_quorum(inv, "db01", token, audit(bao))
    assert not gone.ok and gone.zh and gone.en


def test_a_backup_key_is_written_once_and_never_overwritten(bao: dict) -> None:
    writer: hvac.Client = bao["writer"]
    path = f"db01/{vault.BACKUP_KEYS}/repo2"
    kv = writer.secrets.kv.v2
    kv.create_or_update_secret(path=path, secret={"cipher_pass": "first"}, cas=0, mount_point=vault.KV_MOUNT)
    # The key exists: writing it again is an update, which the operator's token does not have (with or
    # without check-and-set).
    for cas in (0, None):
        with pytest.raises(hvac.exceptions.Forbidden):
            kv.create_or_update_secret(path=path, secret={"cipher_pass": "second"}, cas=cas, mount_point=vault.KV_MOUNT)
    assert kv.read_secret_version(path=path, mount_point=vault.KV_MOUNT)["data"]["data"]["cipher_pass"] == "first"
    # Custodians cannot read repository keys.
    custodian = vault.login(bao["addr"], "custodian-a", bao["passwords"]["custodian-a"], None)
    with pytest.raises(hvac.exceptions.Forbidden):
        custodian.secrets.kv.v2.read_secret_version(path=path, mount_point=vault.KV_MOUNT)
