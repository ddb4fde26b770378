"""A throwaway PostgreSQL 15 cluster from Debian's binaries: initdb as `postgres` in a temporary
directory, trust logins on a loopback port, stopped by its PID afterwards. Skips the test where the
binaries or root (to run the cluster as `postgres`) are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
AS_POSTGRES = ["runuser", "-u", "postgres", "--"]


@contextmanager
def cluster(prefix: str, ready: Callable[[int], bool], *options: str) -> Iterator[int]:
    """The cluster's port once `ready(port)` holds; `options` are extra `-c name=value` settings."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("postgresql-15 not installed: scripts/setup --with-test-tools / 未安装 postgresql-15")
    if os.geteuid() != 0:
        pytest.skip("needs root to run the cluster as the postgres user / 需要 root")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    subprocess.run(["chown", "postgres:postgres", str(base)], check=True)
    subprocess.run([*AS_POSTGRES, str(PG_BIN / "initdb"), "-D", str(base / "d"), "-A", "trust", "-E", "UTF8"],
                   check=True, capture_output=True)  # fmt: skip
    port = free_port()
    settings = [arg for opt in ("listen_addresses=127.0.0.1", *options) for arg in ("-c", opt)]
    server = subprocess.Popen(
        [*AS_POSTGRES, str(PG_BIN / "postgres"), "-D", str(base / "d"), "-p", str(port), "-k", str(base), *settings],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready(port):
            assert time.monotonic() < deadline, "PostgreSQL did not start"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()  # by PID: runuser passes the signal on to the postmaster
        server.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)
