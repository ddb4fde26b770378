"""What every part of a running simulator shares, and the small types that pass between them."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipgate.simulator.config import Config
from hipgate.simulator.contract import Contract
from hipgate.simulator.faults import FaultBook
from hipgate.simulator.ledger import Ledger

# The platform's clock is China Standard Time (no daylight saving: a fixed offset is exact).
CST = dt.timezone(dt.timedelta(hours=8), "CST")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def now_cst() -> dt.datetime:
    return dt.datetime.now(CST)


def time_text(when: dt.datetime) -> str:
    """`yyyy-MM-dd HH:mm:ss`, the document's times."""
    return when.astimezone(CST).strftime(TIME_FORMAT)


def msg_time(when: dt.datetime) -> str:
    """`yyyyMMddHHmmssSSS`, refmsg_time and respond_time."""
    when = when.astimezone(CST)
    return when.strftime("%Y%m%d%H%M%S") + f"{when.microsecond // 1000:03d}"


class Refusal(Exception):
    """A request answered with an error code of the document and not processed (HTTP 4xx)."""

    def __init__(self, infcode: int, err_msg: str, msgid: str | None = None) -> None:
        super().__init__(err_msg)
        self.infcode = infcode
        self.err_msg = err_msg
        self.msgid = msgid


@dataclass(frozen=True)
class Outcome:
    """What processing a message gave: infcode 0 and an output, or a business error (HTTP 200)."""

    infcode: int
    output: dict[str, Any] | None = None
    err_msg: str | None = None
    warn_msg: str | None = None

    @classmethod
    def error(cls, infcode: int, zh: str, en: str) -> Outcome:
        return cls(infcode, None, f"{zh} / {en}")


@dataclass
class Env:
    """The running simulator's parts (built by hipgate.simulator.app)."""

    config: Config
    contract: Contract
    ledger: Ledger
    faults: FaultBook
    uploads_dir: Path
    secret: bytes  # cursors' MAC key and every generated id follow from the seed
    schedule_parse: Callable[[str], None] = field(default=lambda upload_id: None)

    def derive(self, *parts: object) -> str:
        """A deterministic hex digest of the seed and `parts`: ids, choices, shares."""
        # hmac.digest: the one-shot HMAC in C, the same digest as hmac.new(...).hexdigest() at a fraction of
        # the cost (the platform derives one per accepted record).
        return hmac.digest(self.secret, "|".join(map(str, parts)).encode(), "sha256").hex()


def secret_of(seed: int) -> bytes:
    return hashlib.sha256(f"hipgate-simulator:{seed}".encode()).digest()
