"""Secrets and their Shamir shares.

The split is pycryptodome's Shamir scheme over GF(2^128) (a reviewed library; no arithmetic of our
own): it splits exactly 16 bytes, so a password is generated as 16 random bytes and written as
text, and the shares reconstruct those bytes. Fewer than k shares say nothing about the secret.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from Crypto.Protocol.SecretSharing import Shamir

SECRET_BYTES = 16  # what Shamir.split takes; 128 bits of entropy
PASSWORD_PREFIX = "hg1-"


@dataclass(frozen=True)
class Share:
    index: int
    value: bytes

    def encode(self) -> str:
        return f"{self.index}:{self.value.hex()}"

    @classmethod
    def decode(cls, text: str) -> Share:
        index, _, value = text.partition(":")
        return cls(int(index), bytes.fromhex(value))

    def __repr__(self) -> str:  # never print a share by accident
        return f"Share(index={self.index}, value=<hidden>)"


def new_secret() -> bytearray:
    """A fresh secret, in a mutable buffer the caller can wipe (see forget)."""
    return bytearray(secrets.token_bytes(SECRET_BYTES))


def password_of(secret: bytes | bytearray) -> str:
    return PASSWORD_PREFIX + base64.urlsafe_b64encode(bytes(secret)).decode().rstrip("=")


def split(secret: bytes | bytearray, threshold: int, count: int) -> list[Share]:
    if not 2 <= threshold <= count:
        raise ValueError("need 2 <= threshold <= number of shares")
    return [Share(i, v) for i, v in Shamir.split(threshold, count, bytes(secret), ssss=False)]


def combine(shares: list[Share]) -> bytearray:
    return bytearray(Shamir.combine([(s.index, s.value) for s in shares], ssss=False))


def forget(buffer: bytearray) -> None:
    """Overwrite a secret's buffer once it is no longer needed (Python may still hold copies of
    derived strings; this keeps the long-lived one from lingering)."""
    for i in range(len(buffer)):
        buffer[i] = 0
