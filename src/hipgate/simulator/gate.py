"""Admitting a request, in the order a platform can check it: the document (-1001 body, -1002 infno,
-1003 version), the sender (-1004), the certificate (-1102), the signature (-1101), msgid reuse (the
original reply, or -1201), then the clock (-1103).

The replay check comes before the clock on purpose: a request resent after the platform was down for
longer than the tolerance still carries its original inf_time (changing it would change its canonical
bytes, hence -1201), and must get its original reply, not -1103.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hipgate.exchange.interface import header_envelope, parse_json
from hipgate.simulator.config import Config, SenderCert
from hipgate.simulator.context import CST, TIME_FORMAT, Refusal
from hipgate.simulator.contract import CHUNK_PLACEHOLDER, Contract, load_public, signed_part, verify_message
from hipgate.simulator.ledger import find_message


@dataclass(frozen=True)
class Sender:
    cert: SenderCert
    public: Any


def load_senders(config: Config) -> dict[tuple[str, str], Sender]:
    """(sender_code, cainfo) -> the sender's certificate entry and verifying key."""
    return {(s.sender_code, s.cainfo): Sender(s, load_public(s.public, s.signtype)) for s in config.senders}


def _infvers(contract: Contract) -> list[str]:
    schema = contract.iface.document.get("components", {}).get("schemas", {}).get("Infver", {})
    return [str(v) for v in schema.get("enum", ["V1.0"])]


def check_message(contract: Contract, infno: str, path: str, headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """A JSON message against the document: its envelope, or a Refusal."""
    try:
        message = parse_json(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and a repeated key are ValueErrors
        raise Refusal(-1001, f"报文体不是有效的 JSON / the body is not valid JSON: {str(exc)[:300]}") from None
    if not isinstance(message, dict):
        raise Refusal(-1001, "报文体应为 JSON 对象 / the body must be a JSON object")
    msgid = message.get("msgid") if isinstance(message.get("msgid"), str) else None
    if "infno" in message and message["infno"] != infno:
        raise Refusal(-1002, f"infno 与路径的交易 {infno} 不符 / infno does not match the path's {infno}", msgid)
    if "infver" in message and message["infver"] not in _infvers(contract):
        raise Refusal(-1003, f"不支持的接口版本 / unsupported infver {str(message['infver'])[:20]!r}", msgid)
    problem = contract.request_problem(infno, path, {**headers, "Content-Type": "application/json"}, body)
    if problem:
        raise Refusal(-1001, problem, msgid)
    return message


def check_chunk_headers(
    contract: Contract, path: str, headers: Mapping[str, str], upload_id: str, chunk_index: str
) -> dict[str, Any]:
    """9102's header envelope against the document (the body is checked as it streams), or a Refusal."""
    lower = {k.lower(): v for k, v in headers.items()}
    msgid = lower.get("x-hsa-msgid")
    if lower.get("x-hsa-infno", "9102") != "9102":
        raise Refusal(-1002, "X-HSA-Infno 与路径的交易 9102 不符 / X-HSA-Infno does not match the path's 9102", msgid)
    if "x-hsa-infver" in lower and lower["x-hsa-infver"] not in _infvers(contract):
        raise Refusal(-1003, "不支持的接口版本 / unsupported X-HSA-Infver", msgid)
    problem = contract.request_problem(
        "9102", path, {**headers, "Content-Type": "application/octet-stream"}, CHUNK_PLACEHOLDER
    )
    if problem:
        raise Refusal(-1001, problem, msgid)
    return header_envelope(contract.iface, headers, upload_id, int(chunk_index))


def authenticate(senders: Mapping[tuple[str, str], Sender], infno: str, envelope: Mapping[str, Any]) -> Sender:
    msgid = envelope.get("msgid")
    code, cainfo, signtype = envelope["sender_code"], envelope["cainfo"], envelope["signtype"]
    known = [s for (c, _), s in senders.items() if c == code]
    if not known:
        raise Refusal(-1004, f"发送方 {code} 未登记 / sender {code} is not registered", msgid)
    sender = senders.get((code, cainfo))
    if sender is None:
        raise Refusal(-1102, f"证书 {cainfo} 不是发送方 {code} 的 / certificate {cainfo} is unknown for {code}", msgid)
    if sender.cert.infnos is not None and infno not in sender.cert.infnos:
        raise Refusal(-1004, f"发送方 {code} 无权调用 {infno} / sender {code} may not call {infno}", msgid)
    if sender.cert.revoked:
        raise Refusal(-1102, f"证书 {cainfo} 已吊销 / certificate {cainfo} is revoked", msgid)
    if signtype != sender.cert.signtype:
        raise Refusal(
            -1101, f"证书 {cainfo} 用于 {sender.cert.signtype}，不是 {signtype} / certificate {cainfo} signs "
            f"{sender.cert.signtype}, not {signtype}", msgid,
        )  # fmt: skip
    if not verify_message(envelope, sender.public, signtype):
        raise Refusal(-1101, "签名验证失败 / signature verification failed", msgid)
    return sender


def request_digest(envelope: Mapping[str, Any]) -> str:
    """What makes two requests "the same" for idempotency: their canonical bytes without sign."""
    return hashlib.sha256(signed_part(envelope)).hexdigest()


def replayed(conn: sqlite3.Connection, envelope: Mapping[str, Any]) -> sqlite3.Row | None:
    """The stored reply of a resent message; a Refusal -1201 when the msgid was used for other content."""
    held = find_message(conn, envelope["msgid"])
    if held is None:
        return None
    if held["request_sha256"] != request_digest(envelope):
        raise Refusal(
            -1201,
            "报文ID 已用于内容不同的请求 / msgid already used for a request with different content",
            envelope["msgid"],
        )
    return held


def check_clock(envelope: Mapping[str, Any], tolerance: int, now: dt.datetime) -> None:
    sent = dt.datetime.strptime(envelope["inf_time"], TIME_FORMAT).replace(tzinfo=CST)
    off = abs((now - sent).total_seconds())
    if off > tolerance:
        raise Refusal(
            -1103,
            f"交易时间与平台时间相差 {int(off)} 秒（允许 {tolerance} 秒）/ inf_time is {int(off)} s off the "
            f"platform's clock (at most {tolerance} s)",
            envelope.get("msgid"),
        )
