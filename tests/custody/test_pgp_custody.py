"""`hipgate custody setup` with custodians' PGP keys, on a real OpenBao (raft) and real GnuPG: nothing a
custodian holds is left in clear on the control node (unseal keys and first passwords are both
encrypted to the custodian's key), and a set where only some custodians gave a key is refused before
anything is initialised."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from test_server_setup import setup

from helpers import CUSTODIANS
from hipgate.custody import vault
from hipgate.errors import UserError


@pytest.fixture
def gpg_homes() -> Iterator[Path]:
    """Short paths (gpg-agent's socket path is limited to 107 bytes); every agent stopped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="hg-gpg-", dir="/tmp"))
    try:
        yield base
    finally:
        for home in base.iterdir():
            if home.is_dir():
                subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def make_key(home: Path, who: str) -> Path:
    """A custodian's key pair in their own GnuPG home; returns the public key file as OpenBao takes it
    (base64 of the binary key)."""
    home.mkdir(mode=0o700)
    params = (
        "Key-Type: RSA\nKey-Length: 2048\nSubkey-Type: RSA\nSubkey-Length: 2048\n"
        f"Name-Real: {who}\nName-Email: {who}@example.org\nExpire-Date: 0\n%no-protection\n%commit\n"
    )
    gpg = ["gpg", "--batch", "--homedir", str(home)]
    subprocess.run([*gpg, "--gen-key"], input=params, text=True, check=True, capture_output=True)
    public = subprocess.run([*gpg, "--export", who], check=True, capture_output=True).stdout
    path = home.parent / f"{who}.pub.b64"
    path.write_text(base64.b64encode(public).decode())
    return path


def decrypt(home: Path, file: Path) -> str:
    data = base64.b64decode(file.read_text().strip())
    res = subprocess.run(["gpg", "--batch", "--homedir", str(home), "-d"], input=data, capture_output=True, check=True)
    return res.stdout.decode().strip()


def with_keys(server: dict, key_dir: Path, keys: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    extra = [f"--pgp-key={c}={p}" for c, p in keys.items()]
    return setup(server, key_dir, extra=extra)


def test_with_pgp_keys_nothing_a_custodian_holds_is_in_clear(bao_server: dict, gpg_homes: Path) -> None:
    homes = {c: gpg_homes / c for c in CUSTODIANS}
    keys = {c: make_key(homes[c], c) for c in CUSTODIANS}
    key_dir = bao_server["dir"] / "custodians"
    first = with_keys(bao_server, key_dir, keys)
    # Initialised sealed: the keys are encrypted, so the custodians unseal it themselves.
    assert first.returncode == 4 and "bao operator unseal" in first.stdout + first.stderr, first.stdout + first.stderr
    client = hvac.Client(url=bao_server["addr"])
    for c in CUSTODIANS[:2]:
        client.sys.submit_unseal_key(decrypt(homes[c], key_dir / f"{c}.unseal-key"))
    assert not client.sys.read_seal_status()["sealed"]
    second = with_keys(bao_server, key_dir, keys)
    assert second.returncode == 0 and json.loads(second.stdout)["enrolled"] == CUSTODIANS, second.stdout + second.stderr
    for c in CUSTODIANS:
        held = (key_dir / f"{c}.login").read_text().strip()
        with pytest.raises(UserError):
            vault.login(bao_server["addr"], c, held)  # the file itself is no password
        vault.login(bao_server["addr"], c, decrypt(homes[c], key_dir / f"{c}.login"))  # its owner decrypts it
        assert "-----BEGIN" not in held and base64.b64decode(held)  # the same form as the unseal keys
    # No other custodian can decrypt someone else's first password.
    with pytest.raises(subprocess.CalledProcessError):
        decrypt(homes["custodian-a"], key_dir / "custodian-b.login")


def test_a_mixed_set_of_custodians_with_and_without_pgp_keys_is_refused(bao_server: dict, gpg_homes: Path) -> None:
    key = make_key(gpg_homes / "custodian-a", "custodian-a")
    key_dir = bao_server["dir"] / "custodians"
    res = with_keys(bao_server, key_dir, {"custodian-a": key})
    out = res.stdout + res.stderr
    assert res.returncode == 2 and "custodian-b" in out and "custodian-c" in out and "PGP" in out, out
    assert "公钥" in out  # bilingual
    assert not hvac.Client(url=bao_server["addr"]).sys.read_seal_status()["initialized"]
    assert not key_dir.exists() or not any(key_dir.iterdir())
