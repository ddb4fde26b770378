"""OpenBao/Vault side of custody: where shares live, who may read them, and clear errors when the
server is unreachable or sealed.

Layout (one KV v2 mount, one userpass mount):
  hipgate-custody/<system>/current                          which generation of shares is in force
  hipgate-custody/<system>/<generation>/shares/<custodian>  one share, readable only by that custodian
  hipgate-custody/<system>/<generation>/burned              set when a recovery exposed that password
A new password gets a new generation; `current` moves only once the database has the new password,
so a ceremony that fails half-way leaves the old password and its shares in force.
Policies, generated from the inventory's custodians:
  hipgate-custodian-<id>   read its own share of every system, and `current`; change its password
  hipgate-custody-writer   write shares, never read them; move `current`; mark generations burned
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import hvac
import requests
from hvac import exceptions as hv

from hipgate.errors import fail

KV_MOUNT = "hipgate-custody"
AUTH_MOUNT = "hipgate-custodians"
WRITER_POLICY = "hipgate-custody-writer"
BACKUP_KEYS = "backup-keys"
# _custodians/<id>/password-changed: written once by the custodian after replacing the first password
# (never a host name: those start with a letter or digit).
CUSTODIANS_PREFIX = "_custodians"
PASSWORD_CHANGED = "password-changed"  # <system>/backup-keys/repo<N>, also in roles/backup/tasks/cipher.yml


def custodian_policy(custodian: str) -> str:
    return f"hipgate-custodian-{custodian}"


def share_path(system: str, generation: str, custodian: str) -> str:
    return f"{system}/{generation}/shares/{custodian}"


def current_path(system: str) -> str:
    return f"{system}/current"


def unavailable(addr: str, zh: str, en: str) -> Exception:
    return fail(
        addr,
        f"密钥服务不可用：{zh}。未做任何更改。",
        f"the secrets service is not available: {en}. Nothing was changed.",
        "确认 OpenBao/Vault 已启动并已解封（bao status），再重试。",
        "make sure OpenBao/Vault is running and unsealed (bao status), then retry.",
        exit_code=4,
    )


def ready(client: hvac.Client) -> hvac.Client:
    """Fail with a bilingual error, before any change, unless the server answers and is unsealed."""
    addr = str(client.url)
    try:
        status = client.sys.read_seal_status()
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        kind = type(exc).__name__
        raise unavailable(addr, f"无法连接（{kind}）", f"cannot connect ({kind})") from None
    if not status.get("initialized"):
        raise unavailable(addr, "尚未初始化", "it is not initialised")
    if status.get("sealed"):
        raise unavailable(addr, "已封存（sealed）", "it is sealed")
    return client


def address(inv: Any) -> tuple[str, str | None]:
    """Vault address and CA file of an inventory: hipgate.custody.vault_addr, else the first vault host."""
    custody = inv.settings.get("custody") or {}
    hosts = inv.group_hosts("vault")
    addr = custody.get("vault_addr") or (f"https://{inv.address(hosts[0])}:8200" if hosts else "")
    return str(addr).rstrip("/"), custody.get("ca_file")


def connect(addr: str, token: str | None = None, ca: str | None = None, timeout: int = 10) -> hvac.Client:
    return ready(hvac.Client(url=addr, token=token, verify=ca or True, timeout=timeout))


def provision(admin: hvac.Client, custodians: list[str]) -> None:
    """Mounts and policies for the custodians (idempotent). Needs a token allowed to manage them."""
    ready(admin)
    mounts = admin.sys.list_mounted_secrets_engines()
    if f"{KV_MOUNT}/" not in mounts.get("data", mounts):
        admin.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
    auths = admin.sys.list_auth_methods()
    if f"{AUTH_MOUNT}/" not in auths.get("data", auths):
        admin.sys.enable_auth_method("userpass", path=AUTH_MOUNT)
    # Every write on the mount must say which version it replaces (check-and-set): a share is
    # written with cas=0, so it is created or refused, never silently replaced.
    for attempt in range(60):  # a new KV v2 mount answers "upgrading" for a moment
        try:
            admin.secrets.kv.v2.configure(cas_required=True, delete_version_after="0s", mount_point=KV_MOUNT)
            break
        except hv.InvalidRequest as exc:
            if "pgrading" not in str(exc) or attempt == 59:
                raise
            time.sleep(0.5)
    admin.sys.create_or_update_policy(WRITER_POLICY, writer_policy())
    for c in custodians:
        admin.sys.create_or_update_policy(
            custodian_policy(c),
            f'path "{KV_MOUNT}/data/+/+/shares/{c}" {{ capabilities = ["read"] }}\n'
            f'path "{KV_MOUNT}/data/+/current" {{ capabilities = ["read"] }}\n'
            f'path "{KV_MOUNT}/data/{CUSTODIANS_PREFIX}/{c}/{PASSWORD_CHANGED}" '
            '{ capabilities = ["create", "read"] }\n'
            # Custodians replace the first password they were given; nobody else learns the new one.
            f'path "auth/{AUTH_MOUNT}/users/{c}/password" {{ capabilities = ["update"] }}\n',
        )


def writer_policy() -> str:
    """The operator's token: it may create a new generation (`create` only: a write to an existing
    share is an update, refused) and move `current`, never read, alter or delete a share, and no
    access at all to delete/, destroy/, undelete/ or metadata/ (where versions are removed or made to
    expire). A lone operator can therefore not destroy the shares of the generation in force."""
    return (
        f'path "{KV_MOUNT}/data/+/+/shares/*" {{ capabilities = ["create"] }}\n'
        f'path "{KV_MOUNT}/data/+/current" {{ capabilities = ["create", "update", "read"] }}\n'
        f'path "{KV_MOUNT}/data/+/+/burned" {{ capabilities = ["create"] }}\n'
        # Backup repositories' encryption keys (backup role): written once, never overwritten.
        f'path "{KV_MOUNT}/data/+/{BACKUP_KEYS}/*" {{ capabilities = ["create", "read"] }}\n'
        # Whether each custodian replaced the first password they were given (custody status).
        f'path "{KV_MOUNT}/data/{CUSTODIANS_PREFIX}/+/{PASSWORD_CHANGED}" {{ capabilities = ["read"] }}\n'
    )


def enrol(admin: hvac.Client, custodian: str, password: str) -> None:
    """Give a custodian a userpass login bound to their own policy only."""
    admin.auth.userpass.create_or_update_user(
        custodian, password=password, policies=[custodian_policy(custodian)], mount_point=AUTH_MOUNT
    )


def login(addr: str, custodian: str, password: str, ca: str | None = None) -> hvac.Client:
    client = connect(addr, ca=ca)
    try:
        client.auth.userpass.login(custodian, password, mount_point=AUTH_MOUNT)
    except (hv.InvalidRequest, hv.Forbidden):
        raise fail(
            custodian,
            "保管人登录失败（用户名或口令错误）。",
            "the custodian could not log in (wrong name or password).",
            "由该保管人本人重新输入口令。",
            "let the custodian type their own password again.",
            exit_code=4,
        ) from None
    return client


def _write(client: hvac.Client, path: str, data: dict[str, Any], cas: int = 0) -> None:
    """cas=0: create only (refused when the path exists); cas=N: replace version N only."""
    ready(client).secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas, mount_point=KV_MOUNT)


def _read_versioned(client: hvac.Client, path: str) -> tuple[dict[str, Any] | None, int]:
    """(data, version); (None, 0) when the path holds nothing."""
    try:
        doc = ready(client).secrets.kv.v2.read_secret_version(
            path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
    except hv.InvalidPath:
        return None, 0
    return dict(doc["data"]["data"]), int(doc["data"]["metadata"]["version"])


def _read(client: hvac.Client, path: str) -> dict[str, Any] | None:
    return _read_versioned(client, path)[0]


def write_share(writer: hvac.Client, system: str, generation: str, custodian: str, share: str) -> None:
    _write(writer, share_path(system, generation, custodian), {"share": share})


def read_share(client: hvac.Client, system: str, generation: str, custodian: str) -> str:
    data = _read(client, share_path(system, generation, custodian))
    if data is None:
        raise fail(
            f"{system}/{generation}",
            f"保管人 {custodian} 在该代中没有分段。",
            f"custodian {custodian} holds no share of this generation.",
            "检查 custody status 中的保管人与代次。",
            "check the custodians and generation in custody status.",
            exit_code=4,
        )
    return str(data["share"])


def current(client: hvac.Client, system: str) -> dict[str, Any] | None:
    """{"generation", "threshold", "custodians", "set_at"} of the password in force, or None."""
    return _read(client, current_path(system))


def set_current(writer: hvac.Client, system: str, state: dict[str, Any]) -> None:
    _, version = _read_versioned(writer, current_path(system))
    _write(writer, current_path(system), state, cas=version)


def burn(writer: hvac.Client, system: str, generation: str, reason: str) -> None:
    """Mark a generation burned, once (the mark is write-once too: a second burn changes nothing)."""
    with contextlib.suppress(hv.Forbidden, hv.InvalidRequest):  # already marked: the first reason stands
        _write(writer, f"{system}/{generation}/burned", {"reason": reason})


def _changed_path(custodian: str) -> str:
    return f"{CUSTODIANS_PREFIX}/{custodian}/{PASSWORD_CHANGED}"


def change_password(client: hvac.Client, custodian: str, new_password: str) -> None:
    """A logged-in custodian replaces their password, then records (once) that the first one is gone."""
    ready(client).auth.userpass.update_password_on_user(custodian, new_password, mount_point=AUTH_MOUNT)
    with contextlib.suppress(hv.Forbidden, hv.InvalidRequest):  # already recorded by an earlier change
        _write(client, _changed_path(custodian), {"changed": True})


def first_password_kept(reader: hvac.Client, custodians: list[str]) -> list[str]:
    """Custodians who never replaced the first password `custody setup` made for them."""
    return [c for c in custodians if _read(reader, _changed_path(c)) is None]
