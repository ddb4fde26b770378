"""The relay between the real middleware client and the real simulator: who may connect, what reaches the
platform, the signature it adds, the reply signature it checks; and the configs' errors."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from certs_mw import make_ca
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hipgate.errors import UserError
from hipgate.exchange import relay as relay_mod
from hipgate.exchange import run as run_mod
from hipgate.exchange.interface import build_envelope, new_msgid
from hipgate.exchange.platform_client import RelayClient, RetryPolicy, Unreachable
from simulator_helpers import setl_record


def _envelope(stack, ds, iface, infno: str, data: dict) -> dict:
    """An unsigned request as the middleware sends it (no signtype, cainfo, sign: the relay's)."""
    env = build_envelope(infno, data, sender_code="44000001", cainfo="00", msgid=new_msgid("44000001"))
    return {k: v for k, v in env.items() if k not in ("signtype", "cainfo")}


def test_the_relay_signs_and_the_platform_accepts(stack, ds, iface) -> None:
    client = stack.client()
    reply = client.call("5201", _envelope(stack, ds, iface, "5201", {"limit": 5}))
    assert reply.relay == "forwarded" and reply.status == 200 and reply.infcode == 0
    (req,) = [r for r in stack.sim.requests() if r["infno"] == "5201"]
    assert req["outcome"] == "processed"  # the simulator verified the relay's SM2 signature
    client.close()


def test_a_client_without_the_right_certificate_is_refused(stack, ds, iface, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path / "other", "other-ca")
    stranger = other_ca.issue(tmp_path / "other", "middleware-1.hipgate.test")
    bad = RelayClient(f"https://127.0.0.1:{stack.relay_port}", stack.ca.path, *stranger,
                      policy=RetryPolicy(attempts=1))  # fmt: skip
    with pytest.raises(Unreachable):
        bad.call("5201", _envelope(stack, ds, iface, "5201", {"limit": 5}))
    wrong_name = stack.ca.issue(tmp_path, "outsider.hipgate.test")
    named = RelayClient(f"https://127.0.0.1:{stack.relay_port}", stack.ca.path, *wrong_name,
                        policy=RetryPolicy(attempts=1))  # fmt: skip
    reply = named.call("5201", _envelope(stack, ds, iface, "5201", {"limit": 5}))
    assert reply.status == 403 and reply.relay == "refused"
    ctx = ssl.create_default_context(cafile=str(stack.ca.path))  # no client certificate at all
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", stack.relay_port, context=ctx, timeout=10)
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        conn.request("POST", "/fsi/api/5201", body=b"{}", headers={"Content-Type": "application/json"})
        conn.getresponse().read()
    assert stack.sim.requests() == []


def test_an_invalid_request_never_reaches_the_platform(stack, ds, iface) -> None:
    client = stack.client()
    bad = setl_record(1) | {"gend": "7", "certno": None}
    reply = client.call("4101", _envelope(stack, ds, iface, "4101", {"record_type": "setl", "records": [bad]}))
    assert reply.status == 422 and reply.relay == "invalid"
    text = json.dumps(reply.json, ensure_ascii=False)
    assert "input.records[0].gend" in text and "44010619800101" not in text
    assert stack.sim.requests() == []
    client.close()


def test_a_reply_with_a_bad_signature_is_rejected(stack, ds, iface, tmp_path: Path) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "impostor.pub").write_bytes(
        impostor.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    doc = json.loads(stack.relay_config.read_text())
    doc["platform"]["public_key"] = str(tmp_path / "impostor.pub")
    path = tmp_path / "relay-impostor.json"
    path.write_text(json.dumps(doc))
    server = relay_mod.serve(relay_mod.load_relay_config(path))
    try:
        client = RelayClient(f"https://127.0.0.1:{server.server_address[1]}", stack.ca.path, *stack.client_cert,
                             policy=RetryPolicy(attempts=2, base=0.01))  # fmt: skip
        with pytest.raises(Unreachable) as err:
            client.call("5201", _envelope(stack, ds, iface, "5201", {"limit": 5}))
        assert "bad-reply" in err.value.en
        client.close()
    finally:
        server.shutdown()
        server.server_close()


def test_config_errors_name_file_field_and_fix(stack, tmp_path: Path) -> None:
    doc = json.loads(stack.relay_config.read_text())
    doc["tls"]["allowed_client"] = doc["tls"].pop("allowed_clients")
    doc["signing"]["cainfo"] = "5a3f"
    doc["platform"]["ca"] = str(tmp_path / "missing.crt")
    path = tmp_path / "relay.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(UserError) as err:
        relay_mod.load_relay_config(path)
    text = str(err.value)
    for where in ("tls.allowed_client", "tls.allowed_clients", "signing.cainfo", "platform.ca"):
        assert f"{path}: {where}" in text
    assert "修复" in text and "Fix" in text
    mw = tmp_path / "mw.json"
    mw.write_text(
        json.dumps({"sender_code": "4400001", "database": {}, "relay": {"url": "http://x"}, "batch_size": 501})
    )
    with pytest.raises(UserError) as err:
        run_mod.load_config(mw)
    text = str(err.value)
    for where in ("sender_code", "database", "relay.url", "relay.ca", "batch_size"):
        assert f"{mw}: {where}" in text
