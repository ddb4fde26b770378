"""What the simulator takes from the exchange modules, in one place: the interface document
(`hipgate.exchange.interface`: operations, validation, canonical bytes, error table), the dataset
(`hipgate.exchange.dataset`: record keys, partitions, record checks) and the signatures
(`hipgate.exchange.signing`). The document is the contract: the simulator keeps no second copy of a
schema or an error code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hipgate.exchange import signing
from hipgate.exchange.dataset import Dataset, RecordType, load_dataset, validate_record
from hipgate.exchange.interface import (
    Interface,
    canonical_bytes,
    error_code,
    load_interface,
    reasons,
    validate_http_request,
)

# Stands in for 9102's body when its headers are checked before the body is read (the document puts
# no constraint on the bytes; their SHA-256 is checked while they stream to disk).
CHUNK_PLACEHOLDER = b"\0"


@dataclass(frozen=True)
class Contract:
    iface: Interface
    dataset: Dataset

    def http_status(self, infcode: int) -> int:
        entry = error_code(self.iface, infcode)
        if entry is None:
            raise KeyError(f"infcode {infcode} is not in the document's x-hipgate-errors")
        return int(entry["http_status"])

    def record_type(self, code: str) -> RecordType:
        return self.dataset.record_type(code)

    def request_problem(self, infno: str, path: str, headers: Mapping[str, str], body: bytes) -> str | None:
        """Why a request does not conform to the document (each field and rule), or None."""
        violations = validate_http_request(self.iface, path, headers, body, infno)
        return reasons(violations)[:2000] if violations else None

    def download_infno(self, record_type: str) -> str:
        """The transaction through which the province downloads records of this type (x-hipgate-action download)."""
        for op in self.iface.operations.values():
            if op.action == "download" and record_type in op.record_types:
                return op.infno
        raise KeyError(f"no download transaction carries {record_type}")

    def record_problem(self, record_type: str, record: Any) -> tuple[str, str] | None:
        """(element, reason) of the first thing wrong with one record, or None."""
        violations = validate_record(self.dataset.record_type(record_type), record, self.dataset)
        if not violations:
            return None
        return violations[0].path, reasons(violations[:3])[:1000]


def load_contract(interface: Path | None = None, datasets: Path | None = None) -> Contract:
    return Contract(load_interface(interface), load_dataset(datasets))


def signed_part(message: Mapping[str, Any]) -> bytes:
    """The canonical bytes a signature covers: the message without `sign`."""
    return canonical_bytes(message)


def load_public(path: Path, signtype: str) -> Any:
    """A sender's verifying key: a PEM public key or certificate."""
    data = path.read_bytes()
    return signing.load_sm2_public_key(data) if signtype == "SM2" else signing.load_ecdsa_public_key(data)


def load_private(path: Path, signtype: str) -> Any:
    data = path.read_bytes()
    return signing.load_sm2_private_key(data) if signtype == "SM2" else signing.load_ecdsa_private_key(data)


def sign_message(message: Mapping[str, Any], key: Any, signtype: str, cainfo: str) -> dict[str, Any]:
    """The message with signtype, cainfo and sign over its canonical bytes."""
    out = {k: v for k, v in message.items() if k != "sign"}
    out["signtype"] = signtype
    out["cainfo"] = cainfo
    out["sign"] = signing.sign(signed_part(out), key, signtype)
    return out


def verify_message(message: Mapping[str, Any], public: Any, signtype: str) -> bool:
    sign = message.get("sign")
    return isinstance(sign, str) and signing.verify(signed_part(message), sign, public, signtype)
