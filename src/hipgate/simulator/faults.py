"""Fault injection: what the control API arms, and what fired.

A fault has a kind, an optional infno (None: any transaction it applies to), and a life: the next
`count` matching requests, or every matching request for `seconds` after it was armed, or both
(whichever ends first). Every firing is recorded (time, infno, msgid, what was done), so a test can
check that exactly the armed faults happened.

Kinds, and where in a request they act (at most one fault per stage and request: the oldest armed):
  transport (before the request is read or checked; nothing is processed)
    http_500          HTTP 500, infcode -9999
    http_503          HTTP 503, infcode -9002, Retry-After: retry_after
    http_429          HTTP 429, infcode -9001, Retry-After: retry_after
    reset             read after_bytes of the body (default: half of it), then reset the connection
                      (TCP RST, no reply); for 9102 a connection reset mid-chunk
  processing (a valid request that would be processed)
    checksum          9102: -1301 although the chunk is intact (not confirmed); 9103: -1302
    duplicate_ack     5201/5301/5401: the page also carries `items` already acknowledged items (each
                      re-served once by this fault)
  reply (any reply about to be sent)
    slow              wait `delay` seconds, then answer
    lost_reply        the request is processed and its reply stored, then the connection is reset
                      without a reply (the sender must resend the same msgid and get the stored reply)
  listener (at once, when armed)
    down              the platform port is closed for `seconds`, open connections are cut; then it
                      listens again
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

STAGES = {
    "http_500": "transport",
    "http_503": "transport",
    "http_429": "transport",
    "reset": "transport",
    "checksum": "processing",
    "duplicate_ack": "processing",
    "slow": "reply",
    "lost_reply": "reply",
    "down": "listener",
}
# The transactions a kind can act on; None: all of them.
APPLIES_TO: dict[str, frozenset[str] | None] = {
    "checksum": frozenset({"9102", "9103"}),
    "duplicate_ack": frozenset({"5201", "5301", "5401"}),
}
PARAMS = {
    "http_503": {"retry_after"},
    "http_429": {"retry_after"},
    "reset": {"after_bytes"},
    "slow": {"delay"},
    "duplicate_ack": {"items"},
}


class FaultSpecError(ValueError):
    pass


@dataclass
class Fault:
    id: int
    kind: str
    infno: str | None
    count: int | None
    seconds: float | None
    params: dict[str, Any]
    armed_at: float
    cancelled: bool = False
    fired: list[dict[str, Any]] = field(default_factory=list)

    def live(self, now: float) -> bool:
        if self.cancelled:
            return False
        if self.count is not None and len(self.fired) >= self.count:
            return False
        return self.seconds is None or now < self.armed_at + self.seconds

    def applies(self, stage: str, infno: str | None) -> bool:
        if STAGES[self.kind] != stage:
            return False
        if self.infno is not None and infno != self.infno:
            return False
        allowed = APPLIES_TO.get(self.kind)
        return allowed is None or infno in allowed

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "infno": self.infno,
            "count": self.count,
            "seconds": self.seconds,
            "params": dict(self.params),
            "armed_at": self.armed_at,
            "active": self.live(now),
            "fired": list(self.fired),
        }


def parse_spec(spec: dict[str, Any], default_retry_after: int) -> dict[str, Any]:
    """A fault as the control API receives it, checked: {kind, infno?, count?, seconds?, <params>}."""
    kind = spec.get("kind")
    if kind not in STAGES:
        raise FaultSpecError(f"kind: one of {', '.join(STAGES)}")
    infno = spec.get("infno")
    if infno is not None and not (isinstance(infno, str) and len(infno) == 4 and infno.isdigit()):
        raise FaultSpecError("infno: four digits, or absent for any transaction")
    allowed = APPLIES_TO.get(kind)
    if infno is not None and allowed is not None and infno not in allowed:
        raise FaultSpecError(f"{kind} acts only on {', '.join(sorted(allowed))}")
    count, seconds = spec.get("count"), spec.get("seconds")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FaultSpecError("count: a whole number ≥ 1")
    if seconds is not None and (not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0):
        raise FaultSpecError("seconds: a number > 0")
    if kind == "down":
        if seconds is None or count is not None:
            raise FaultSpecError("down takes seconds (how long the port stays closed) and no count")
    elif count is None and seconds is None:
        count = 1
    unknown = set(spec) - {"kind", "infno", "count", "seconds"} - PARAMS.get(kind, set())
    if unknown:
        raise FaultSpecError(f"{kind} takes no {', '.join(sorted(unknown))}")
    params: dict[str, Any] = {}
    for name in PARAMS.get(kind, set()):
        value = spec.get(name)
        if value is None:
            value = {"retry_after": default_retry_after, "items": 1, "delay": 5.0}.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value < 0):
            raise FaultSpecError(f"{name}: a number ≥ 0")
        if name in ("retry_after", "items", "after_bytes") and value is not None:
            if int(value) != value or (name != "after_bytes" and value < 1):
                raise FaultSpecError(f"{name}: a whole number{' ≥ 1' if name != 'after_bytes' else ''}")
            value = int(value)
        params[name] = value
    return {"kind": kind, "infno": infno, "count": count, "seconds": seconds, "params": params}


class FaultBook:
    """The armed faults; thread-safe (the server's handler threads take them)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next = 1
        self._clock = clock

    def arm(self, spec: dict[str, Any]) -> Fault:
        with self._lock:
            fault = Fault(id=self._next, armed_at=self._clock(), **spec)
            self._next += 1
            self._faults.append(fault)
            return fault

    def take(self, stage: str, infno: str | None, msgid: str | None, detail: str = "") -> Fault | None:
        """The oldest live fault for this stage and transaction, its firing recorded; or None."""
        with self._lock:
            now = self._clock()
            for fault in self._faults:
                if fault.live(now) and fault.applies(stage, infno):
                    fault.fired.append({"at": time.time(), "infno": infno, "msgid": msgid, "detail": detail})
                    return fault
        return None

    def note(self, fault: Fault, detail: str, msgid: str | None = None) -> None:
        """Add what a fired fault finally did (bytes read before a reset, keys re-served...), and the
        msgid when it was read only after the fault was taken."""
        with self._lock:
            if fault.fired:
                fault.fired[-1]["detail"] = detail
                if msgid is not None:
                    fault.fired[-1]["msgid"] = msgid

    def record(self, fault: Fault, event: dict[str, Any]) -> None:
        with self._lock:
            fault.fired.append({"at": time.time(), **event})

    def cancel(self, fault_id: int | None = None) -> int:
        """Cancel one fault, or all (None); returns how many were live."""
        with self._lock:
            now = self._clock()
            n = 0
            for fault in self._faults:
                if fault_id is None or fault.id == fault_id:
                    n += fault.live(now)
                    fault.cancelled = True
            return n

    def listing(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self._clock()
            return [f.as_dict(now) for f in self._faults]
