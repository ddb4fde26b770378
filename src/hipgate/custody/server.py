"""Bringing a new OpenBao server into service for custody, once: initialise it with one unseal key
per custodian, configure custody with the root token, hand the operator a writer-only token, and
revoke the root token. A later run with no root token changes nothing.

Files on the control node (key_dir, 0700; every file 0600). Each custodian's files are to be
handed to that custodian and removed: whoever holds a quorum of unseal keys can make a new root
token (`bao operator generate-root`), which is how the configuration is changed later.
  <custodian>.unseal-key    the custodian's unseal key (PGP-encrypted when they gave a key)
  <custodian>.login         their first password for auth/hipgate-custodians (they change it)
  operator.token            writer-only token for `custody init/rotate/status`
  root-token.pending        only between initialisation and the end of configuration
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import hvac
import requests

from hipgate.custody import pgp as pgp_module
from hipgate.custody import vault
from hipgate.errors import fail

PENDING_ROOT = "root-token.pending"
OPERATOR_TOKEN = "operator.token"
OPERATOR_PERIOD = "768h"  # renewable; expires if unused for a month


def _exists(path: Path) -> Exception:
    return fail(
        str(path),
        "该文件已存在，拒绝覆盖（可能属于另一个省份或上一次初始化）。未做任何更改。",
        "this file already exists; refusing to overwrite it (it may belong to another province or an earlier "
        "initialisation). Nothing was changed.",
        "确认 hipgate.province_id 与 HIPGATE_STATE_DIR 正确；如确属废弃文件，先移走再重试。",
        "check hipgate.province_id and HIPGATE_STATE_DIR; if the file is truly obsolete, move it away and retry.",
        exit_code=4,
    )


def _write_private(path: Path, text: str) -> None:
    """Write-once: an existing key, token or password file is never overwritten (O_EXCL)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise _exists(path) from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def pgp_keys(custodians: list[dict[str, Any]]) -> dict[str, Path]:
    """Each custodian's PGP key file; all or none: with some keys missing, the unseal keys and first
    passwords of those without would be written in clear next to the others' encrypted ones."""
    keys = {c["id"]: Path(str(c["pgp_public_key_file"])) for c in custodians if c.get("pgp_public_key_file")}
    missing = [c["id"] for c in custodians if c["id"] not in keys]
    if keys and missing:
        raise fail(
            "pgp_public_key_file",
            f"只有部分保管人提供了 PGP 公钥；缺少：{', '.join(missing)}。拒绝把其中任何人的密钥以明文写出。",
            f"only some custodians gave a PGP key; missing: {', '.join(missing)}. Refusing to write anyone's "
            "keys in clear.",
            "为每名保管人提供 PGP 公钥（hipgate.custodians[].pgp_public_key_file），或都不提供。",
            "give every custodian a PGP key (hipgate.custodians[].pgp_public_key_file), or none.",
        )
    unreadable = [str(p) for p in keys.values() if not p.is_file()]
    if unreadable:
        raise fail(
            ", ".join(unreadable),
            "PGP 公钥文件不存在。",
            "the PGP public key file does not exist.",
            "检查 pgp_public_key_file 路径。",
            "check the pgp_public_key_file path.",
        )
    return keys


def _status(client: hvac.Client) -> dict[str, Any]:
    try:
        return dict(client.sys.read_seal_status())
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
        vault.ready(client)  # raises the bilingual "cannot connect"
        raise


def initialise(client: hvac.Client, custodians: list[dict[str, Any]], threshold: int, key_dir: Path) -> bool:
    """Initialise once; returns False when the server already was. The root token goes to a pending
    file at once, so an interrupted run resumes instead of leaving a server nobody can configure."""
    if _status(client).get("initialized"):
        return False
    by_id = pgp_keys(custodians)
    use_pgp = bool(by_id)
    keys = [by_id[c["id"]].read_text().strip() for c in custodians] if use_pgp else None
    taken = [
        p for p in [key_dir / PENDING_ROOT, *(key_dir / f"{c['id']}.unseal-key" for c in custodians)] if p.exists()
    ]
    if taken:  # before initialising: nothing is lost when we refuse
        raise _exists(taken[0])
    result = client.sys.initialize(secret_shares=len(custodians), secret_threshold=threshold, pgp_keys=keys)
    _write_private(key_dir / PENDING_ROOT, result["root_token"])
    for c, key in zip(custodians, result["keys_base64"], strict=True):
        _write_private(key_dir / f"{c['id']}.unseal-key", key + "\n")
    if not use_pgp:  # the keys are in this process anyway: unseal once so configuration can go on
        for key in result["keys_base64"][:threshold]:
            client.sys.submit_unseal_key(key)
    return True


def wait_active(client: hvac.Client, seconds: float = 60.0) -> None:
    """Wait until the node is unsealed and active: just after an unseal, raft elects its leader first
    and the API answers 500 ("active cluster node not found") until then."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            # /v1/sys/health: 200 only when initialised, unsealed and active.
            if client.sys.read_health_status(method="HEAD").status_code == 200:
                return
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            pass
        if time.monotonic() > deadline:
            vault.ready(client)  # the bilingual "not ready" when it cannot connect or is sealed
            raise vault.unavailable(str(client.url), "未成为活动节点", "it did not become the active node")
        time.sleep(0.5)


def pending_root(key_dir: Path) -> str | None:
    path = key_dir / PENDING_ROOT
    return path.read_text().strip() if path.is_file() else None


def configure(root: hvac.Client, custodians: list[str], key_dir: Path, pgp: dict[str, Path] | None = None) -> list[str]:
    """Mounts and policies, a login for every custodian not yet enrolled (first password to their
    file, encrypted to their PGP key when they gave one), a writer-only operator token if there is
    none. Returns the newly enrolled custodians."""
    wait_active(root)
    vault.provision(root, custodians)
    enrolled = []
    for c in custodians:
        if _user_exists(root, c):
            continue
        if (key_dir / f"{c}.login").exists():
            raise _exists(key_dir / f"{c}.login")
        password = secrets.token_urlsafe(18)
        held = pgp_module.encrypt(pgp[c], password) if pgp else password
        vault.enrol(root, c, password)
        _write_private(key_dir / f"{c}.login", held + "\n")
        enrolled.append(c)
    if not (key_dir / OPERATOR_TOKEN).is_file():
        token = root.auth.token.create_orphan(policies=[vault.WRITER_POLICY], period=OPERATOR_PERIOD)
        _write_private(key_dir / OPERATOR_TOKEN, token["auth"]["client_token"] + "\n")
    return enrolled


def _user_exists(root: hvac.Client, custodian: str) -> bool:
    try:
        root.auth.userpass.read_user(custodian, mount_point=vault.AUTH_MOUNT)
    except hvac.exceptions.InvalidPath:
        return False
    return True


def finish(root: hvac.Client, key_dir: Path) -> None:
    """Revoke the root token; nobody holds one from here on."""
    root.auth.token.revoke_self()
    (key_dir / PENDING_ROOT).unlink(missing_ok=True)


def sealed_after_pgp_init(addr: str, threshold: int) -> Exception:
    return fail(
        addr,
        f"OpenBao 已初始化，解封密钥已用保管人的 PGP 公钥加密。需 {threshold} 名保管人各自解密并执行 "
        "bao operator unseal，然后重新运行本剧本完成配置。",
        f"OpenBao is initialised; the unseal keys are encrypted to the custodians' PGP keys. {threshold} "
        "custodians must each decrypt theirs and run bao operator unseal; then run this playbook again.",
        "保管人：base64 -d <id>.unseal-key | gpg -d，再执行 bao operator unseal",
        "custodians: base64 -d <id>.unseal-key | gpg -d, then bao operator unseal",
        exit_code=4,
    )
