"""Database access for the middleware: psycopg 3, with a short-lived login from OpenBao on the real host
(the host's certificate logs in, as roles/db_credentials/files/hipgate-db-login does; no stored secret)
or a plain conninfo in the tests."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from hipgate.errors import fail


@dataclass(frozen=True)
class OpenBaoLogin:
    """Where and how this host gets its database login (the db_credentials role's /etc/hipgate/db-login.json)."""

    vault_addr: str
    ca: Path
    cert: Path
    key: Path
    host_name: str  # the cert auth role named after the host
    system: str  # hipgate-db/creds/<system>-<role>
    role: str
    address: str  # the database server
    port: int
    database: str


def _call(login: OpenBaoLogin, path: str, token: str = "", body: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = ssl.create_default_context(cafile=str(login.ca))
    ctx.load_cert_chain(str(login.cert), str(login.key))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{login.vault_addr}/v1/{path}", data=data, method="POST" if data else "GET")
    if token:
        req.add_header("X-Vault-Token", token)
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return json.load(resp)


def openbao_credentials(login: OpenBaoLogin) -> tuple[str, str]:
    """(username, password) of a fresh, expiring database login; a UserError (zh/en) when OpenBao refuses."""
    fix = (
        "检查 OpenBao 是否已解封、本机证书是否有效、db_credentials 角色是否授予该角色。",
        "check that OpenBao is unsealed, this host's certificate is valid and db_credentials grants the role.",
    )
    try:
        token = _call(login, "auth/hipgate-hosts/login", body={"name": login.host_name})["auth"]["client_token"]
        creds = _call(login, f"hipgate-db/creds/{login.system}-{login.role}", token)["data"]
    except urllib.error.HTTPError as exc:
        sealed = exc.code == 503
        raise fail(
            login.vault_addr,
            "OpenBao 已封存，需保管人解封。" if sealed else f"OpenBao 拒绝了请求（HTTP {exc.code}）。",
            "OpenBao is sealed; the custodians must unseal it." if sealed else f"OpenBao refused (HTTP {exc.code}).",
            *fix,
            exit_code=4,
        ) from None
    except (urllib.error.URLError, OSError, KeyError, ValueError) as exc:
        raise fail(
            login.vault_addr,
            f"无法从 OpenBao 取得数据库登录：{exc}",
            f"cannot get a database login from OpenBao: {exc}",
            *fix,
            exit_code=4,
        ) from None
    return creds["username"], creds["password"]


def login_conninfo(login: OpenBaoLogin) -> str:
    """A conninfo with a fresh OpenBao login over verified TLS (the password lives in memory only)."""
    user, password = openbao_credentials(login)
    return make_conninfo(
        host=login.address, port=login.port, dbname=login.database, user=user, password=password,
        sslmode="verify-full", sslrootcert=str(login.ca), application_name="hipgate-exchange",
    )  # fmt: skip


def connect(conninfo: str) -> psycopg.Connection[Any]:
    """A connection in explicit transactions (autocommit off): each step commits what it did, and a crash
    rolls back only the step it was in."""
    try:
        return psycopg.connect(conninfo, autocommit=False)
    except psycopg.OperationalError as exc:
        raise fail(
            "database",
            f"无法连接交换库：{exc}",
            f"cannot connect to the exchange database: {exc}",
            "检查数据库地址、端口与登录。",
            "check the database address, port and login.",
            exit_code=4,
        ) from None
