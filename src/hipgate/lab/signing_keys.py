"""The lab's exchange signing keys: the province's (the relay on `frontend` signs with it) and the simulated
platform's (it signs its replies), both SM2, made once per lab on the control node and removed with it.

A province gets both from the national platform's CA instead (the relay role's variables name the files).
"""

from __future__ import annotations

from pathlib import Path

from hipgate.exchange.keygen import ensure_sm2_key
from hipgate.lab.topology import Lab

KEYS = ("province-sign", "platform-sign")


def keys_dir(lab: Lab) -> Path:
    return lab.directory / "exchange"


def ensure_keys(lab: Lab) -> dict[str, dict[str, str]]:
    """{name: {key, public, cainfo}}; a key that exists is never replaced (write-once)."""
    out = {}
    for name in KEYS:
        key, public, cainfo = ensure_sm2_key(keys_dir(lab) / name)
        out[name] = {"key": str(key), "public": str(public), "cainfo": cainfo}
    return out
