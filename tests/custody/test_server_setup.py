"""`hipgate custody setup` on a real OpenBao with raft storage: initialised once with one unseal
key per custodian, configured, root token revoked; a second run changes nothing; after a restart
it takes a quorum of custodians' keys to unseal; no secret reaches the audit log or the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hvac
import pytest
from hvac import exceptions as hv

from helpers import CUSTODIANS
from hipgate.custody import vault

HIPGATE = str(Path(sys.executable).parent / "hipgate")


def setup(
    server: dict, key_dir: Path, env: dict[str, str] | None = None, extra: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [HIPGATE, "custody", "setup", "--addr", server["addr"], "--threshold", "2", "--key-dir", str(key_dir)]
    argv += [a for c in CUSTODIANS for a in ("--custodian", c)] + (extra or [])
    clean = {k: v for k, v in os.environ.items() if k not in ("BAO_TOKEN", "VAULT_TOKEN")}
    return subprocess.run(argv, env={**clean, **(env or {})}, capture_output=True, text=True, check=False)


def test_initialised_once_configured_and_root_revoked(bao_server: dict) -> None:
    key_dir = bao_server["dir"] / "custodians"
    first = setup(bao_server, key_dir)
    assert first.returncode == 0, first.stdout + first.stderr
    report = json.loads(first.stdout)
    assert report["initialised"] and report["configured"] and report["enrolled"] == CUSTODIANS
    files = sorted(p.name for p in key_dir.iterdir())
    assert files == sorted(
        [f"{c}.unseal-key" for c in CUSTODIANS] + [f"{c}.login" for c in CUSTODIANS] + ["operator.token"]
    )
    assert key_dir.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in key_dir.iterdir())
    # Nobody holds a root token: the only one made was revoked.
    assert not (key_dir / "root-token.pending").exists()
    # Each custodian logs in with their own first password and can change it.
    a = vault.login(bao_server["addr"], "custodian-a", (key_dir / "custodian-a.login").read_text().strip())
    a.auth.userpass.update_password_on_user("custodian-a", "a-new-password-1", mount_point=vault.AUTH_MOUNT)
    vault.login(bao_server["addr"], "custodian-a", "a-new-password-1")
    with pytest.raises(hv.Forbidden):  # but not someone else's
        a.auth.userpass.update_password_on_user("custodian-b", "x-password-123", mount_point=vault.AUTH_MOUNT)
    # The operator's token writes shares and cannot read them.
    operator = hvac.Client(url=bao_server["addr"], token=(key_dir / "operator.token").read_text().strip())
    vault.write_share(operator, "db01", "g1", "custodian-a", "hg1-share")
    with pytest.raises(hv.Forbidden):
        vault.read_share(operator, "db01", "g1", "custodian-a")
    with pytest.raises(hv.Forbidden):
        operator.sys.create_or_update_policy("mine", 'path "*" { capabilities = ["read"] }')
    # Second run: nothing to do, nothing changed, no new files.
    again = setup(bao_server, key_dir)
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False
    assert sorted(p.name for p in key_dir.iterdir()) == files
    # No unseal key, first password or token in the audit log or in what the command printed.
    audit = bao_server["audit"].read_text()
    for p in key_dir.iterdir():
        secret = p.read_text().strip()
        assert secret not in audit and secret not in first.stdout + first.stderr, p.name


def test_restart_needs_a_quorum_of_custodians_keys(bao_server: dict) -> None:
    key_dir = bao_server["dir"] / "custodians"
    assert setup(bao_server, key_dir).returncode == 0
    bao_server["restart"]()
    client = hvac.Client(url=bao_server["addr"])
    assert client.sys.read_seal_status()["sealed"]
    sealed = setup(bao_server, key_dir)
    assert sealed.returncode == 4 and "sealed" in sealed.stdout + sealed.stderr
    client.sys.submit_unseal_key((key_dir / "custodian-c.unseal-key").read_text().strip())
    assert client.sys.read_seal_status()["sealed"]  # one custodian is not enough
    client.sys.submit_unseal_key((key_dir / "custodian-a.unseal-key").read_text().strip())
    assert not client.sys.read_seal_status()["sealed"]
    assert json.loads(setup(bao_server, key_dir).stdout)["changed"] is False
