"""A running simulator on 127.0.0.1 for the unit tests: throwaway TLS certificate and signing keys, a
config file in a temporary directory, and an HTTPS client that signs its requests with the signing
module. Each test file starts its own simulator (module fixture) and stops it by its object."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import http.client
import io
import itertools
import json
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hipgate.exchange import signing
from hipgate.exchange.interface import build_envelope, chunk_request, load_interface
from hipgate.simulator.app import Simulator
from hipgate.simulator.config import load_config
from hipgate.simulator.context import CST, time_text
from hipgate.simulator.contract import Contract, load_contract, sign_message

SENDER = "44000001"  # SM2
SENDER_CAINFO = "5A3F09C1"
SENDER2 = "44000002"  # ECDSA, only the upload transactions
SENDER2_CAINFO = "7B01"
REVOKED_CAINFO = "DEAD01"
PLATFORM_CAINFO = "0C0FFEE0"

_contract: Contract | None = None
_SEQ = itertools.count(1)


def contract() -> Contract:
    """The document and dataset, loaded once per test process (openapi-core checks the document: seconds)."""
    global _contract
    if _contract is None:
        _contract = load_contract()
    return _contract


def _pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (valid one day)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "platform.simulator.test")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_pem_private(key))
    return cert_path, key_path


@dataclass
class Keys:
    sm2: Any
    ecdsa: Any
    platform_public: Any


def write_config(directory: Path, **overrides: Any) -> tuple[Path, Keys]:
    directory.mkdir(parents=True, exist_ok=True)
    tls_certificate(directory)
    sm2 = signing.generate_sm2_keypair()
    (directory / "sender1.key").write_bytes(sm2.to_pem())
    (directory / "sender1.pub").write_bytes(sm2.public_key.to_pem())
    ecdsa = ec.generate_private_key(ec.SECP256R1())
    (directory / "sender2.pub").write_bytes(
        ecdsa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    platform = ec.generate_private_key(ec.SECP256R1())
    (directory / "platform.key").write_bytes(_pem_private(platform))
    doc = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "tls": {"cert": "server.crt", "key": "server.key"},
        "admin": {"host": "127.0.0.1", "port": 0},
        "state_dir": "state",
        "seed": 17,
        "anomaly_share": 0.02,
        "retry_after": 3,
        "signing": {"signtype": "ECDSA", "key": "platform.key", "cainfo": PLATFORM_CAINFO},
        "senders": [
            {"sender_code": SENDER, "cainfo": SENDER_CAINFO, "signtype": "SM2", "public": "sender1.pub"},
            {"sender_code": SENDER, "cainfo": REVOKED_CAINFO, "signtype": "SM2", "public": "sender1.pub",
             "revoked": True},
            {"sender_code": SENDER2, "cainfo": SENDER2_CAINFO, "signtype": "ECDSA", "public": "sender2.pub",
             "infnos": ["9101", "9102", "9103", "4101"]},
        ],
        **overrides,
    }  # fmt: skip
    path = directory / "simulator.yml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path, Keys(sm2, ecdsa, platform.public_key())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Signed HTTPS requests to the simulator, one keep-alive connection (reopened after a reset)."""

    def __init__(self, port: int, cafile: Path, key: Any, signtype: str = "SM2", cainfo: str = SENDER_CAINFO,
                 sender_code: str = SENDER, timeout: float = 30) -> None:  # fmt: skip
        self.port = port
        self.ctx = ssl.create_default_context(cafile=str(cafile))
        self.key, self.signtype, self.cainfo, self.sender_code = key, signtype, cainfo, sender_code
        self.timeout = timeout
        self.iface = load_interface()
        self._conn: http.client.HTTPSConnection | None = None

    def connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def msgid(self) -> str:
        """A fresh msgid: now, and a sequence shared by every client of the test process."""
        stamp = dt.datetime.now(CST).strftime("%Y%m%d%H%M%S")
        return f"{self.sender_code}{stamp}{next(_SEQ) % 1_000_000:06d}"

    def envelope(self, infno: str, data: dict[str, Any], msgid: str | None = None, **fields: Any) -> dict[str, Any]:
        env = build_envelope(infno, data, sender_code=self.sender_code, cainfo=self.cainfo, signtype=self.signtype,
                             msgid=msgid or self.msgid())  # fmt: skip
        env.update(fields)
        return sign_message(env, self.key, self.signtype, env["cainfo"])

    def raw(self, path: str, body: bytes, headers: dict[str, str]) -> Reply:
        conn = self.connection()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return Reply(resp.status, {k: v for k, v in resp.getheaders()}, data)

    def post(self, infno: str, message: dict[str, Any]) -> Reply:
        body = json.dumps(message, ensure_ascii=False).encode()
        return self.raw(f"/fsi/api/{infno}", body, {"Content-Type": "application/json"})

    def call(self, infno: str, data: dict[str, Any], **fields: Any) -> Reply:
        return self.post(infno, self.envelope(infno, data, **fields))

    def chunk_headers(self, upload_id: str, index: int, chunk: bytes, sha256: str | None = None,
                      msgid: str | None = None) -> tuple[str, dict[str, str]]:  # fmt: skip
        env = build_envelope("9102", {"upload_id": upload_id, "chunk_index": index,
                                      "chunk_sha256": sha256 or hashlib.sha256(chunk).hexdigest()},
                             sender_code=self.sender_code, cainfo=self.cainfo, signtype=self.signtype,
                             msgid=msgid or self.msgid())  # fmt: skip
        env = sign_message(env, self.key, self.signtype, self.cainfo)
        path, headers = chunk_request(self.iface, env)
        return path, {**headers, "Content-Type": "application/octet-stream"}

    def chunk(self, upload_id: str, index: int, chunk: bytes, **kw: Any) -> Reply:
        path, headers = self.chunk_headers(upload_id, index, chunk, **kw)
        return self.raw(path, chunk, headers)


def verify_reply(reply: Reply, public: Any) -> bool:
    from hipgate.simulator.contract import verify_message

    return verify_message(reply.json, public, "ECDSA")


def admin(sim: Simulator, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{sim.admin_port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def start_simulator(directory: Path, **overrides: Any) -> tuple[Simulator, Keys, Path]:
    path, keys = write_config(directory, **overrides)
    sim = Simulator(load_config(path), contract=contract())
    sim.start()
    return sim, keys, directory / "server.crt"


def running(directory: Path, **overrides: Any) -> Iterator[tuple[Simulator, Keys, Path]]:
    """For a fixture: a started simulator, stopped afterwards whatever happened."""
    sim, keys, cafile = start_simulator(directory, **overrides)
    try:
        yield sim, keys, cafile
    finally:
        sim.stop()


def signed_client(sim: tuple[Simulator, Keys, Path], timeout: float = 30) -> Iterator[Client]:
    """For a fixture: the first sender's client (SM2) of a running simulator, closed afterwards."""
    simulator, keys, cafile = sim
    client = Client(simulator.platform.port, cafile, keys.sm2, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------- records


def setl_record(n: int, *, updt_time: str = "2024-03-05 10:00:00", day: str = "2024-03-05", items: int = 2,
                division: str = "440106") -> dict[str, Any]:  # fmt: skip
    """A valid settlement of the province (440000), numbered n."""
    return {
        "setl_id": f"S{n:010d}", "mdtrt_id": f"M{n:010d}", "psn_no": f"P{n:010d}", "psn_cert_type": "01",
        "certno": f"44010619800101{n % 10000:04d}", "psn_name": "张三", "gend": "1", "brdy": "1980-01-01",
        "insutype": "310", "insuplc_admdvs": "440100", "mdtrtarea_admvs": division,
        "fixmedins_code": "H44010600001", "fixmedins_name": "广州市第一人民医院", "med_type": "11",
        "begndate": day, "enddate": day, "dise_codg": "J18.900", "dise_name": "肺炎",
        "medfee_sumamt": "100.00", "fund_pay_sumamt": "70.00", "psn_cash_pay": "20.00", "acct_pay": "10.00",
        "setl_time": f"{day} 09:30:00", "updt_time": updt_time,
        "setl_item": [
            {"feedetl_sn": f"F{n:08d}{i:02d}", "med_list_codg": "XA01ABD075A002010100483", "medins_list_codg": "YP001",
             "med_chrgitm_type": "09", "chrgitm_lv": "01", "det_item_fee_sumamt": "50.00", "cnt": "2",
             "pric": "25.00", "fee_ocur_time": f"{day} 09:00:00"}
            for i in range(items)
        ],
    }  # fmt: skip


def person_record(n: int, updt_time: str = "2025-01-02 10:00:00") -> dict[str, Any]:
    return {
        "psn_no": f"TEST{n:06d}", "psn_cert_type": "01", "certno": f"44010619900101{n:04d}", "psn_name": "测试人员",
        "gend": "2", "brdy": "1990-01-01", "insutype": "310", "insuplc_admdvs": "440100", "begndate": "2025-01-01",
        "updt_time": updt_time,
    }  # fmt: skip


def history_file(records: list[dict[str, Any]]) -> bytes:
    """A history file: gzip JSON Lines."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        for r in records:
            gz.write(json.dumps(r, ensure_ascii=False).encode() + b"\n")
    return buf.getvalue()


def wait_until(check: Callable[[], bool], timeout: float = 30, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def now_text(offset: float = 0) -> str:
    return time_text(dt.datetime.now(CST) + dt.timedelta(seconds=offset))
