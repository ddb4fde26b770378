"""The fingerprint of exchanged records: one definition for both sides, so that the national platform's
ledger (the lab's simulator, `hipgate.simulator.ledger`) and the province's source database can be
compared record for record without shipping the records.

记录指纹：平台账本与省端源库使用同一定义，按“日期 + 记录类型”比对条数与指纹。

Definition (version ``FINGERPRINT_VERSION``):

* a record's **normal form** is the record with every element whose value is null removed (the document
  lets an optional element be absent or null: both mean "no value"), recursively, and every list of
  objects (a settlement's ``setl_item``) sorted by the items' own canonical bytes (the order of items
  carries no meaning);
* its **canonical bytes** are those of the interface document: keys sorted, no whitespace, UTF-8,
  non-ASCII as itself (``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``);
* a record's **fingerprint** is SHA-256 of its canonical bytes, lower-case hex;
* a record's **day** is the date (``yyyy-MM-dd``) of its partition date element (the dataset's
  ``partition.year``: ``setl_time`` for setl and cross_visit, ``updt_time`` for test_psn);
* a **day summary** is, per (record type, day): the number of records and SHA-256 over the records'
  fingerprints as 32-byte digests, sorted, concatenated. Equal summaries mean the same multiset of
  records: a duplicate, a missing record or one changed element changes count or fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

FINGERPRINT_VERSION = "hipgate-fp-1"


# One encoder for every canonical text: json.dumps with options builds a new JSONEncoder on each call.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
# Values the fast path of record_bytes writes as they are (everything else: the plain definition).
_SCALARS = frozenset({str, int, float, bool})
_PLAIN = _SCALARS | {dict, list, type(None)}


def canonical(value: Any) -> bytes:
    """The interface document's canonical bytes of a JSON value."""
    return _ENCODE(value).encode("utf-8")


def normal_form(value: Any) -> Any:
    """Nulls dropped, lists of objects in the order of their canonical bytes (see the module's docstring)."""
    # isinstance(dict) first: records come from JSON or a database driver as dicts, and the ABC check
    # (Mapping) costs several times more on every element of a multi-million-record year.
    if isinstance(value, dict):
        return {k: normal_form(v) if isinstance(v, (dict, list)) else v for k, v in value.items() if v is not None}
    if isinstance(value, list):
        items = [normal_form(v) for v in value]
        if items and all(isinstance(v, dict) for v in items):
            items.sort(key=canonical)
        return items
    if isinstance(value, Mapping):
        return normal_form(dict(value))
    return value


def _normal_text(value: Any) -> str | None:
    """canonical(normal_form(value)) as text, each nested object encoded once: normal_form sorts a list of
    objects by their canonical bytes and canonical() then encodes them all again; here each object's text is
    made once, sorted (code point order is UTF-8 byte order) and spliced in. None for anything but plain
    JSON values with string keys (the definition above then applies as written)."""
    cls = value.__class__
    if cls is dict:
        kinds = set(map(type, value.values()))
        if kinds <= _SCALARS:  # no null, nothing nested (a settlement's item): encoded as it is
            return _ENCODE(value)
        if not kinds <= _PLAIN or not {str}.issuperset(map(type, value)):
            return None
        nested: dict[str, str] = {}
        for k, v in value.items():
            if v.__class__ is dict or v.__class__ is list:
                text = _normal_text(v)
                if text is None:
                    return None
                nested[k] = text
        flat = {k: v for k, v in value.items() if v is not None and k not in nested}
        if not nested:
            return _ENCODE(flat)
        # sort_keys writes the keys in sorted order: the plain values before, between and after the nested
        # ones are encoded as one object per run, their braces dropped, and the nested texts put between.
        pieces: list[str] = []
        low: str | None = None
        for k in sorted(nested):
            run = {f: v for f, v in flat.items() if f < k and (low is None or f > low)}
            if run:
                pieces.append(_ENCODE(run)[1:-1])
            pieces.append(f"{_ENCODE(k)}:{nested[k]}")
            low = k
        run = {f: v for f, v in flat.items() if low is None or f > low}
        if run:
            pieces.append(_ENCODE(run)[1:-1])
        return "{" + ",".join(pieces) + "}"
    if cls is list:
        texts: list[str] = []
        for v in value:
            if v.__class__ is not dict and v.__class__ is not list and v.__class__ not in _SCALARS and v is not None:
                return None
            text = _normal_text(v)
            if text is None:
                return None
            texts.append(text)
        if texts and all(v.__class__ is dict for v in value):
            texts.sort()
        return "[" + ",".join(texts) + "]"
    return _ENCODE(value) if cls in _SCALARS or value is None else None


def record_bytes(record: Mapping[str, Any]) -> bytes:
    """The canonical bytes of the record's normal form: what its fingerprint is taken of."""
    text = _normal_text(record)
    return canonical(normal_form(record)) if text is None else text.encode("utf-8")


def record_fingerprint(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(record_bytes(record)).hexdigest()


def record_day(record: Mapping[str, Any], day_element: str) -> str:
    """`yyyy-MM-dd` of the partition date element (a date or a `yyyy-MM-dd HH:mm:ss` time)."""
    return str(record[day_element])[:10]


def key_text(key: Mapping[str, Any]) -> str:
    """A record key as one string, e.g. `{"setl_id":"S1"}`: canonical JSON, so that it is unambiguous for
    composite keys and the same on both sides (also the `rec_key` of the simulator's anomalies)."""
    return canonical(dict(key)).decode("utf-8")


@dataclass(frozen=True)
class DaySummary:
    record_type: str
    day: str
    count: int
    fingerprint: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(rows: Iterable[tuple[str, str, str]]) -> list[DaySummary]:
    """Day summaries from `(record_type, day, record fingerprint)` rows in any order, sorted by type and day."""
    groups: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    for record_type, day, fingerprint in rows:
        groups[(record_type, day)].append(bytes.fromhex(fingerprint))
    out = []
    for (record_type, day), digests in sorted(groups.items()):
        digests.sort()
        out.append(DaySummary(record_type, day, len(digests), hashlib.sha256(b"".join(digests)).hexdigest()))
    return out


def summarise_records(record_type: str, records: Iterable[Mapping[str, Any]], day_element: str) -> list[DaySummary]:
    """The source side's summary of one record type's records (each in its wire form, as sent)."""
    return summarise((record_type, record_day(r, day_element), record_fingerprint(r)) for r in records)
