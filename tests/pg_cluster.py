"""A throwaway PostgreSQL 15 cluster with trust logins on a loopback port, for the exchange tests: the
one cluster helper of the tests (helpers.postgres_cluster), waited for until `ready(port)` holds. Skips
the test where the binaries or root (to run the cluster as `postgres`) are missing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from helpers import PG_BIN, postgres_cluster

AS_POSTGRES = ["runuser", "-u", "postgres", "--"]
__all__ = ["AS_POSTGRES", "PG_BIN", "cluster"]


@contextmanager
def cluster(prefix: str, ready: Callable[[int], bool], *options: str) -> Iterator[int]:
    """The cluster's port once `ready(port)` holds; `options` are extra `-c name=value` settings.
    (`prefix` names the caller in failures.)"""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("postgresql-15 not installed: scripts/setup --with-test-tools / 未安装 postgresql-15")
    if os.geteuid() != 0:
        pytest.skip("needs root to run the cluster as the postgres user / 需要 root")
    with postgres_cluster("trust", options, auth_host="trust") as pg:
        deadline = time.monotonic() + 30
        while not ready(pg["port"]):
            assert time.monotonic() < deadline, f"{prefix}: PostgreSQL did not start"
            time.sleep(0.2)
        yield pg["port"]
