"""The simulator as a service: the CLI (`python -m hipgate.simulator serve`, `fault`, `faults`,
`publish-forms`, `ledger-summary`) on a real process stopped by its PID, the client-certificate
requirement, a restart on the same state directory, and reading a history file in bounded memory."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hipgate.simulator.app import Simulator
from hipgate.simulator.config import load_config
from hipgate.simulator.context import Env, secret_of
from hipgate.simulator.contract import Contract
from hipgate.simulator.faults import FaultBook
from hipgate.simulator.ledger import Ledger
from hipgate.simulator.uploads import chunk_path, parse_file
from simulator_helpers import (
    Client,
    contract,
    history_file,
    setl_record,
    start_simulator,
    wait_until,
    write_config,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str) -> Any:
    run = subprocess.run([sys.executable, "-m", "hipgate.simulator", *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_cli_serves_takes_commands_and_stops_on_sigterm(tmp_path: Path) -> None:
    path, keys = write_config(tmp_path, listen={"host": "127.0.0.1", "port": free_port()},
                              admin={"host": "127.0.0.1", "port": free_port()})  # fmt: skip
    cfg = load_config(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hipgate.simulator", "serve", "--config", str(path), "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("listening on 127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        fault = cli("fault", "http_503", "--config", str(path), "--infno", "5201", "--retry-after", "9")
        assert fault["kind"] == "http_503" and fault["params"] == {"retry_after": 9}
        client = Client(cfg.listen_port, tmp_path / "server.crt", keys.sm2)
        reply = client.call("5201", {"limit": 5})
        assert (reply.status, reply.headers["Retry-After"]) == (503, "9")
        listed = cli("faults", "--config", str(path))
        assert len(listed[0]["fired"]) == 1 and listed[0]["active"] is False
        published = cli("publish-forms", "3", "--config", str(path))["published"]
        forms = client.call("5201", {"limit": 5}).json["output"]["records"]
        assert [f["chk_form_no"] for f in forms] == [k["chk_form_no"] for k in published]
        client.call("4101", {"record_type": "setl", "records": [setl_record(1)]})
        client.close()
        summary = cli("ledger-summary", "--config", str(path))
        assert [(d["record_type"], d["count"]) for d in summary["days"]] == [("setl", 1)]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def _client_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a client certificate it signed (the middleware's TLS identity)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clients CA")])

    def build(subject: x509.Name, public: Any, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(public)
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip

    ca = build(ca_name, ca_key.public_key(), True)
    cert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "middleware")]), key.public_key(), False)
    paths = directory / "clients-ca.crt", directory / "client.crt", directory / "client.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    paths[2].write_bytes(pem)
    return paths


def test_client_certificate_required(tmp_path: Path) -> None:
    ca, cert, key = _client_cert(tmp_path)
    sim, keys, cafile = start_simulator(tmp_path, tls={"cert": "server.crt", "key": "server.key", "client_ca": ca.name})
    try:
        anonymous = Client(sim.platform.port, cafile, keys.sm2, timeout=5)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            anonymous.call("5201", {"limit": 1})
        anonymous.close()
        known = Client(sim.platform.port, cafile, keys.sm2)
        known.ctx.load_cert_chain(cert, key)
        assert known.call("5201", {"limit": 1}).status == 200
        known.close()
    finally:
        sim.stop()


def test_restart_keeps_replies_uploads_and_unread_files(tmp_path: Path) -> None:
    sim, keys, cafile = start_simulator(tmp_path)
    client = Client(sim.platform.port, cafile, keys.sm2)
    msg = client.envelope("4101", {"record_type": "setl", "records": [setl_record(7)]})
    first = client.post("4101", msg)
    data = history_file([setl_record(i) for i in range(100, 400)])
    declared = {
        "file_name": "setl_440100_2024_001.jsonl.gz", "admdvs": "440100", "year": 2024, "record_type": "setl",
        "file_size": len(data), "file_sha256": hashlib.sha256(data).hexdigest(), "chunk_size": 65536,
        "chunk_count": -(-len(data) // 65536), "record_count": 300,
    }  # fmt: skip
    upload_id = client.call("9101", declared).json["output"]["upload_id"]
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    for i, piece in enumerate(chunks):
        assert client.chunk(upload_id, i, piece).json["infcode"] == 0
    client.close()
    sim.stop()

    again = Simulator(load_config(tmp_path / "simulator.yml"), contract=contract())
    again.start()
    try:
        client = Client(again.platform.port, cafile, keys.sm2)
        assert client.post("4101", msg).body == first.body
        resumed = client.call("9101", declared).json["output"]
        assert (resumed["upload_id"], resumed["confirmed_chunks"]) == (upload_id, list(range(len(chunks))))
        complete = {"upload_id": upload_id, "file_size": len(data), "file_sha256": declared["file_sha256"]}
        done = client.call("9103", complete)
        assert done.json["infcode"] == 0
        assert again.wait_files(30)
        summary = again.summary()
        assert summary["totals"]["setl"]["records"] == 301
        client.close()
    finally:
        again.stop()


class Unchecked(Contract):
    """The record checks left out: they hold nothing between records, and cost most of the time."""

    def record_problem(self, record_type: str, record: Any) -> None:
        return None


def test_history_file_read_in_bounded_memory(tmp_path: Path) -> None:
    """Reading a completed file keeps one batch of records in memory, not the file."""
    path, _ = write_config(tmp_path, anomaly_share=0.0)
    cfg = load_config(path)
    checked = contract()
    env = Env(cfg, Unchecked(checked.iface, checked.dataset), Ledger(cfg.state_dir), FaultBook(),
              cfg.state_dir / "uploads", secret_of(cfg.seed))  # fmt: skip
    records = []
    for i in range(4000):
        r = setl_record(i, items=6)
        for item in r["setl_item"]:
            item["medins_list_codg"] = hashlib.sha256(item["feedetl_sn"].encode()).hexdigest() * 2
        records.append(r)
    raw = sum(len(json.dumps(r, ensure_ascii=False).encode()) + 1 for r in records)
    data = history_file(records)
    del records
    chunk_size = 1 << 20
    upload_id = "Utest0000000000000001"
    (env.uploads_dir / upload_id).mkdir(parents=True)
    for i in range(0, len(data), chunk_size):
        chunk_path(env, upload_id, i // chunk_size).write_bytes(data[i : i + chunk_size])
    with env.ledger.tx() as conn:
        conn.execute(
            "INSERT INTO files (upload_id, file_sha256, sender_code, file_name, admdvs, year, record_type, file_size,"
            " chunk_size, chunk_count, declared_records, status, file_qry_no, started_at, parse_status)"
            " VALUES (?, ?, '44000001', 'setl_440100_2024_001.jsonl.gz', '440100', 2024, 'setl', ?, ?, ?, 4000,"
            " 'complete', 'FQTEST', 'now', 'pending')",
            (upload_id, hashlib.sha256(data).hexdigest(), len(data), chunk_size, -(-len(data) // chunk_size)),
        )
    del data
    tracemalloc.start()
    started = time.monotonic()
    parse_file(env, upload_id)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with env.ledger.read() as conn:
        row = dict(conn.execute("SELECT * FROM files WHERE upload_id = ?", (upload_id,)).fetchone())
    env.ledger.close()
    assert (row["parse_status"], row["accepted"]) == ("parsed", 4000), row
    print(f"raw {raw} bytes, traced peak {peak} bytes, {time.monotonic() - started:.1f} s")
    assert raw > 10 << 20 and peak < raw / 3, (raw, peak)
    assert wait_until(lambda: not (env.uploads_dir / upload_id).exists(), timeout=1)  # chunks removed once read
