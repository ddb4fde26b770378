"""The middleware's side of the relay: each request sent unsigned (the relay signs) over HTTPS with the
host certificate, and the platform's reply back; retries with capped exponential backoff that honour
Retry-After, so a platform that is down or busy costs time, never a record.

A request is retried only when it was not processed or its reply was lost: the relay could not reach the
platform, the reply was refused, or the platform said 429/500/503. Every retry carries the same msgid, so
the platform answers a processed one with its original reply.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from hipgate.exchange.interface import Interface, chunk_request

log = logging.getLogger("hipgate.exchange.client")
RETRY_STATUSES = (429, 500, 502, 503, 504)
PIECE = 64 << 10


class Unreachable(Exception):
    """The platform could not be reached (after the retries): nothing was lost, everything stays pending."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(f"{zh} / {en}")
        self.zh, self.en = zh, en


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: Mapping[str, str]

    @property
    def relay(self) -> str:
        """What the relay says of the reply: forwarded, refused, invalid, unreachable, bad-reply."""
        return next((v for k, v in self.headers.items() if k.lower() == "x-hipgate-relay"), "")

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def infcode(self) -> int | None:
        try:
            value = self.json.get("infcode") if self.relay == "forwarded" else None
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, int) else None

    @property
    def output(self) -> Any:
        return self.json.get("output")

    @property
    def retry_after(self) -> float | None:
        value = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), None)
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    @property
    def retryable(self) -> bool:
        return self.status in RETRY_STATUSES

    def error_text(self) -> str:
        try:
            doc = self.json
        except ValueError:
            return f"HTTP {self.status}"
        if self.relay == "forwarded":
            return f"HTTP {self.status} infcode {doc.get('infcode')}: {doc.get('err_msg')}"
        return f"HTTP {self.status} relay {self.relay}: {doc.get('en') or doc.get('violations')}"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 1.0
    cap: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff before retry `attempt` (1, 2, ...): base·2^(attempt-1), capped; never shorter than Retry-After."""
        backoff = min(self.cap, self.base * (2 ** (attempt - 1)))
        return max(backoff, min(retry_after or 0.0, self.cap * 10))


@dataclass
class RelayClient:
    url: str
    ca: Path
    cert: Path
    key: Path
    timeout: float = 120.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    _conn: http.client.HTTPSConnection | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.ctx = ssl.create_default_context(cafile=str(self.ca))
        self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ctx.load_cert_chain(str(self.cert), str(self.key))
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "", parts.port or 443

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=self.timeout)
        return self._conn

    def _once(
        self, path: str, headers: dict[str, str], body: bytes | None, stream: tuple[BinaryIO, int, int] | None
    ) -> Reply:
        conn = self._connection()
        try:
            conn.putrequest("POST", path, skip_accept_encoding=True)
            length = len(body) if body is not None else (stream[2] if stream else 0)
            for k, v in {**headers, "Content-Length": str(length)}.items():
                conn.putheader(k, v)
            conn.endheaders()
            if body is not None:
                conn.send(body)
            elif stream is not None:
                fh, offset, size = stream
                fh.seek(offset)
                left = size
                while left > 0:  # from disk piece by piece
                    piece = fh.read(min(PIECE, left))
                    if not piece:
                        raise OSError("the history file is shorter than its manifest says")
                    conn.send(piece)
                    left -= len(piece)
            resp = conn.getresponse()
            data = resp.read()
            reply = Reply(resp.status, data, dict(resp.getheaders()))
            if resp.getheader("Connection", "").lower() == "close":
                self.close()
            return reply
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def _with_retries(self, what: str, attempt_once: Callable[[], Reply]) -> Reply:
        last = ""
        for attempt in range(1, self.policy.attempts + 1):
            retry_after = None
            try:
                reply = attempt_once()
                if not reply.retryable:
                    return reply
                last, retry_after = reply.error_text(), reply.retry_after
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.policy.attempts:
                wait = self.policy.delay(attempt, retry_after)
                log.warning("%s: %s; retry %d in %.1f s", what, last, attempt, wait)
                self.sleep(wait)
        raise Unreachable(
            f"国家平台或中继不可达（{what}，已重试 {self.policy.attempts} 次）：{last}。数据保持待发送，下次运行重发。",
            f"the platform or the relay cannot be reached ({what}, {self.policy.attempts} attempts): {last}. "
            "Everything stays pending and is resent by the next run.",
        )

    def call(self, infno: str, envelope: Mapping[str, Any]) -> Reply:
        """A JSON transaction: the unsigned envelope (msgid assigned), its reply after any retries."""
        body = json.dumps(envelope, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        return self._with_retries(
            f"{infno} {envelope.get('msgid')}", lambda: self._once(f"/fsi/api/{infno}", headers, body, None)
        )

    def send_chunk(self, iface: Interface, envelope: Mapping[str, Any], fh: BinaryIO, offset: int, size: int) -> Reply:
        """9102: the header envelope (unsigned) and `size` bytes of `fh` from `offset`, streamed."""
        path, headers = chunk_request(iface, envelope)
        headers["Content-Type"] = "application/octet-stream"
        what = f"9102 {envelope.get('msgid')}"
        return self._with_retries(what, lambda: self._once(path, headers, None, (fh, offset, size)))
