"""Encrypting a secret to a custodian's PGP public key with GnuPG (`gpg`, argv only, the secret on
stdin), in the form OpenBao uses for PGP-encrypted unseal keys: base64 of the binary message, so a
custodian decrypts every file they get the same way (`base64 -d FILE | gpg -d`)."""

from __future__ import annotations

import base64
import binascii
import shutil
import subprocess
import tempfile
from pathlib import Path

from hipgate.errors import fail


def _key_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    try:  # OpenBao's form: base64 of the binary key
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        return raw  # an armored or binary key file, as gpg --export writes it


def encrypt(public_key_file: Path, secret: str) -> str:
    gpg = shutil.which("gpg")
    if gpg is None:
        raise fail(
            "gpg",
            "控制节点上没有 gpg，无法用保管人的公钥加密。",
            "gpg is not installed on the control node; cannot encrypt to the custodians' keys.",
            "安装 gnupg（apt-get install gnupg）。",
            "install gnupg (apt-get install gnupg).",
        )
    with tempfile.TemporaryDirectory(prefix="hipgate-gpg-") as home:
        base = [gpg, "--batch", "--quiet", "--no-tty", "--homedir", home]
        imported = subprocess.run([*base, "--import"], input=_key_bytes(public_key_file), capture_output=True)
        listed = subprocess.run([*base, "--with-colons", "--list-keys"], capture_output=True, text=True)
        fprs = [line.split(":")[9] for line in listed.stdout.splitlines() if line.startswith("fpr:")]
        if imported.returncode != 0 or not fprs:
            raise fail(
                str(public_key_file),
                "不是可用的 PGP 公钥。",
                "not a usable PGP public key.",
                "提供 gpg --export 导出的公钥（可 base64 编码）。",
                "give the public key as gpg --export writes it (base64 encoded or not).",
            )
        res = subprocess.run(
            [*base, "--trust-model", "always", "--recipient", fprs[0], "--encrypt"],
            input=secret.encode(),
            capture_output=True,
        )
    if res.returncode != 0 or not res.stdout:
        raise fail(
            str(public_key_file),
            "无法用该公钥加密（没有加密子密钥？）。",
            "could not encrypt to this key (no encryption subkey?).",
            "提供带加密子密钥的公钥。",
            "give a public key with an encryption subkey.",
        )
    return base64.b64encode(res.stdout).decode()
