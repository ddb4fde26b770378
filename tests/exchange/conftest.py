"""Real parts for the middleware tests, all on 127.0.0.1: a PostgreSQL 15 cluster from Debian's binaries
(one per session, a fresh database per test with the exchange tables and the bookkeeping), throwaway
certificates, the national platform simulator and the relay in front of it. Every server is stopped by
its own object or PID."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from certs_mw import CA, make_ca
from cryptography.hazmat.primitives import serialization

from hipgate.exchange import relay as relay_mod
from hipgate.exchange.bookkeeping import bookkeeping_ddl
from hipgate.exchange.dataset import Dataset, dataset_ddl, load_dataset
from hipgate.exchange.incremental import Exchange
from hipgate.exchange.interface import Interface, load_interface
from hipgate.exchange.platform_client import RelayClient, RetryPolicy
from pg_cluster import cluster
from simulator_helpers import SENDER, SENDER_CAINFO, running

MW_NAME = "middleware-1.hipgate.test"


@pytest.fixture(scope="session")
def ds() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="session")
def iface() -> Interface:
    return load_interface()


def _accepts(port: int) -> bool:
    try:
        psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres").close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[dict[str, Any]]:
    with cluster("hipgate-mw-pg-", _accepts, "max_connections=60") as port:
        yield {"port": port, "conninfo": f"host=127.0.0.1 port={port} user=postgres dbname=postgres"}


_DB = itertools.count(1)


@pytest.fixture
def exchange_db(pg_cluster: dict[str, Any], ds: Dataset) -> Iterator[str]:
    """A fresh database with the exchange tables and the bookkeeping; its conninfo."""
    name = f"exchange_{os.getpid()}_{next(_DB)}"
    with psycopg.connect(pg_cluster["conninfo"], autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    conninfo = f"host=127.0.0.1 port={pg_cluster['port']} user=postgres dbname={name}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(dataset_ddl(ds))
        conn.execute(bookkeeping_ddl(ds))
        conn.execute(bookkeeping_ddl(ds))  # idempotent: applied on every deploy
    yield conninfo
    with psycopg.connect(pg_cluster["conninfo"], autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- simulator and relay


@dataclass
class Stack:
    sim: Any
    keys: Any
    relay: relay_mod.RelayServer
    relay_config: Path
    relay_port: int
    ca: CA
    client_cert: tuple[Path, Path]
    directory: Path

    def client(self, attempts: int = 4, **kw: Any) -> RelayClient:
        return RelayClient(f"https://127.0.0.1:{self.relay_port}", self.ca.path, *self.client_cert,
                           timeout=kw.pop("timeout", 30), policy=RetryPolicy(attempts=attempts, base=0.05, cap=0.5),
                           **kw)  # fmt: skip

    def exchange(self, conninfo: str, ds: Dataset, iface: Interface, **kw: Any) -> Exchange:
        conn = psycopg.connect(conninfo)
        return Exchange(conn, self.client(), ds, iface, SENDER, **kw)


def write_relay_config(directory: Path, sim_port: int, ca: CA, **platform: Any) -> Path:
    relay_cert = ca.issue(directory, "frontend.hipgate.test", "127.0.0.1")
    doc = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "tls": {"cert": str(relay_cert[0]), "key": str(relay_cert[1]), "client_ca": str(ca.path),
                "allowed_clients": [MW_NAME]},
        "platform": {"url": f"https://127.0.0.1:{sim_port}", "ca": str(directory / "sim" / "server.crt"),
                     "signtype": "ECDSA", "public_key": str(directory / "platform.pub"), "timeout": 30, **platform},
        "signing": {"signtype": "SM2", "key": str(directory / "sim" / "sender1.key"), "cainfo": SENDER_CAINFO},
    }  # fmt: skip
    path = directory / "relay.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def start_stack(directory: Path, **sim_config: Any) -> Iterator[Stack]:
    """The simulator (its config overridden by `sim_config`) and the relay in front of it."""
    for sim, keys, _cafile in running(directory / "sim", **sim_config):
        pub = keys.platform_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (directory / "platform.pub").write_bytes(pub)
        ca = make_ca(directory / "pki", "hipgate-test-ca")
        client_cert = ca.issue(directory / "pki", MW_NAME)
        config = write_relay_config(directory, sim.platform.port, ca)
        server = relay_mod.serve(relay_mod.load_relay_config(config))
        try:
            yield Stack(sim, keys, server, config, server.server_address[1], ca, client_cert, directory)
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from start_stack(tmp_path)


@pytest.fixture
def anomalous_stack(tmp_path: Path) -> Iterator[Stack]:
    """The stack whose simulator files an anomaly for every record it accepts (anomaly_share 1)."""
    yield from start_stack(tmp_path, anomaly_share=1.0)
