"""Records into the exchange tables: PostgreSQL COPY text, streamed in constant memory.

The column order is the DDL's (hipgate.exchange.dataset.table_ddl): a record type's elements (an upload
table holds nothing else: the middleware keeps its state in its bookkeeping tables); an items table's
parent key, then its elements. A record type with items is written in batches, each batch's records then
their items (the items' foreign key wants the record first), so memory holds one batch's item rows, never
the data set:

- `copy_text(records, table)`: one table's rows as COPY text (for `psql -c "COPY … FROM STDIN"`);
- `copy_script(records, record_type)`: a psql script of COPY blocks for the record type and its items
  (for `psql -f -`: the lab's database host gets it on stdin over ssh);
- `load(conn, records, record_type)`: the same through psycopg 3's COPY FROM STDIN.

Table and column names come from the dataset, are checked to be plain identifiers and are quoted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from hipgate.exchange.dataset import Dataset, RecordType, dataset_ddl, load_dataset

if TYPE_CHECKING:
    import psycopg

IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_SPECIAL = re.compile(r"[\\\t\n\r]")
_NOT_TAB = re.compile(r"[\\\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
CHUNK = 1 << 16
BATCH = 1000  # records per COPY block of a record type with items


def ident(name: str) -> str:
    """A quoted SQL identifier; anything but a plain lower-case name is refused, not escaped."""
    if not IDENT_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return f'"{name}"'


def table_name(schema: str, table: str) -> str:
    return f"{ident(schema)}.{ident(table)}"


def copy_columns(rt: RecordType, ds: Dataset) -> tuple[str, ...]:
    """The columns a COPY of this record type (or items type) fills, in the DDL's order."""
    if rt.parent:
        return (*ds.records[rt.parent].key, *rt.codes)
    return tuple(rt.codes)


def copy_statement(rt: RecordType, ds: Dataset, schema: str = "exchange") -> str:
    cols = ", ".join(ident(c) for c in copy_columns(rt, ds))
    return f"COPY {table_name(schema, rt.code)} ({cols}) FROM STDIN"


def _field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES) if _SPECIAL.search(value) else value
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"no COPY text for a {type(value).__name__}")


def _row(values: tuple[Any, ...]) -> str:
    """One COPY text line. Fast path: all strings, none with a tab, newline, CR or backslash in it."""
    try:
        line = "\t".join(values)
    except TypeError:  # None, a number
        return "\t".join(map(_field, values)) + "\n"
    if line.count("\t") != len(values) - 1 or _NOT_TAB.search(line):
        return "\t".join(map(_field, values)) + "\n"
    return line + "\n"


@dataclass(frozen=True)
class _Layout:
    rt: RecordType
    codes: tuple[str, ...]
    items: RecordType | None
    item_codes: tuple[str, ...]
    parent_key: tuple[str, ...]

    def values(self, rec: Mapping[str, Any], codes: tuple[str, ...]) -> tuple[Any, ...]:
        """The record's values of `codes` (None where absent), by itemgetter when none is absent."""
        try:
            got = itemgetter(*codes)(rec)
        except KeyError:
            return tuple(rec.get(c) for c in codes)
        return got if len(codes) > 1 else (got,)


def _layout(rt: RecordType) -> _Layout:
    items = rt.items
    return _Layout(rt, rt.codes, items, items.codes if items else (), rt.key)


def _top_line(lay: _Layout, rec: Mapping[str, Any]) -> str:
    return _row(lay.values(rec, lay.codes))


def _item_lines(lay: _Layout, rec: Mapping[str, Any]) -> list[str]:
    assert lay.items is not None
    parent = lay.values(rec, lay.parent_key)
    codes = lay.item_codes
    return [_row(parent + lay.values(child, codes)) for child in rec.get(lay.items.code) or ()]


def copy_blocks(
    records: Iterable[Mapping[str, Any]], rt: RecordType, batch: int = BATCH, chunk: int = CHUNK
) -> Iterator[tuple[RecordType, bytes]]:
    """(table, COPY text) pieces in the order they must be written: up to `batch` records' rows, then
    their item rows, and so on; consecutive pieces of one table belong to one COPY."""
    lay = _layout(rt)
    top: list[str] = []
    kids: list[str] = []
    size = 0
    for n, rec in enumerate(records, 1):
        line = _top_line(lay, rec)
        top.append(line)
        size += len(line)
        if lay.items is not None:
            kids.extend(_item_lines(lay, rec))
        if size >= chunk:
            yield rt, "".join(top).encode()
            top.clear()
            size = 0
        if lay.items is not None and n % batch == 0:
            if top:
                yield rt, "".join(top).encode()
                top.clear()
                size = 0
            yield from _pieces(lay.items, kids, chunk)
            kids.clear()
    if top:
        yield rt, "".join(top).encode()
    if lay.items is not None and kids:
        yield from _pieces(lay.items, kids, chunk)


def _pieces(rt: RecordType, lines: list[str], chunk: int) -> Iterator[tuple[RecordType, bytes]]:
    start, size = 0, 0
    for i, line in enumerate(lines):
        size += len(line)
        if size >= chunk:
            yield rt, "".join(lines[start : i + 1]).encode()
            start, size = i + 1, 0
    if start < len(lines):
        yield rt, "".join(lines[start:]).encode()


def copy_text(records: Iterable[Mapping[str, Any]], table: str, ds: Dataset | None = None) -> Iterator[bytes]:
    """One table's COPY text: `table` is a record type (its rows) or an items type (the items of the
    records, which are then its parent's records)."""
    ds = ds or load_dataset()
    rt = ds.record_type(table)
    lay = _layout(ds.records[rt.parent] if rt.parent else rt)
    lines: list[str] = []
    size = 0
    for rec in records:
        new = _item_lines(lay, rec) if rt.parent else [_top_line(lay, rec)]
        lines.extend(new)
        size += sum(map(len, new))
        if size >= CHUNK:
            yield "".join(lines).encode()
            lines.clear()
            size = 0
    if lines:
        yield "".join(lines).encode()


def copy_script(
    records: Iterable[Mapping[str, Any]],
    record_type: str,
    ds: Dataset | None = None,
    schema: str = "exchange",
    batch: int = BATCH,
    create_tables: bool = False,
) -> Iterator[bytes]:
    """A psql script (`psql -v ON_ERROR_STOP=1 -1 -f -`) that loads the records and their items: COPY
    blocks with their data inline, each ended by `\\.` (a data line never is: COPY text escapes `\\`).
    With create_tables, the dataset's DDL first."""
    ds = ds or load_dataset()
    rt = ds.record_type(record_type)
    if create_tables:
        yield dataset_ddl(ds, schema).encode()
    for piece_rt, group in groupby(copy_blocks(records, rt, batch), key=lambda piece: piece[0]):
        yield (copy_statement(piece_rt, ds, schema) + ";\n").encode()
        for _, data in group:
            yield data
        yield b"\\.\n"


@dataclass(frozen=True)
class Progress:
    records: int
    rows: int  # records and item rows
    bytes: int
    seconds: float

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


class _Counted:
    """Counts the records of an iterable as they pass."""

    def __init__(self, records: Iterable[Mapping[str, Any]]) -> None:
        self.records = records
        self.n = 0

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        for rec in self.records:
            self.n += 1
            yield rec


def stream(
    pieces: Iterable[bytes], write: Callable[[bytes], object], progress: Callable[[Progress], None] | None = None
) -> Progress:
    """Write bytes to a sink (a file's or a pipe's write), reporting progress about once a second."""
    start = last = time.monotonic()
    total = 0
    for data in pieces:
        write(data)
        total += len(data)
        now = time.monotonic()
        if progress is not None and now - last >= 1:
            progress(Progress(0, 0, total, now - start))
            last = now
    return Progress(0, 0, total, time.monotonic() - start)


def load(
    conn: psycopg.Connection[Any],
    records: Iterable[Mapping[str, Any]],
    table: str,
    *,
    ds: Dataset | None = None,
    schema: str = "exchange",
    batch: int = BATCH,
    progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """COPY the records (and their items) into the exchange tables over `conn`, in one transaction
    (a savepoint inside the caller's), streaming: memory holds one batch's item rows at most."""
    ds = ds or load_dataset()
    rt = ds.record_type(table)
    counted = _Counted(records)
    start = last = time.monotonic()
    rows = size = 0
    with conn.transaction(), conn.cursor() as cur:
        for piece_rt, group in groupby(copy_blocks(counted, rt, batch), key=lambda piece: piece[0]):
            with cur.copy(copy_statement(piece_rt, ds, schema)) as copy:
                for _, data in group:
                    copy.write(data)
                    rows += data.count(b"\n")
                    size += len(data)
                    now = time.monotonic()
                    if progress is not None and now - last >= 1:
                        progress(Progress(counted.n, rows, size, now - start))
                        last = now
    done = Progress(counted.n, rows, size, time.monotonic() - start)
    if progress is not None:
        progress(done)
    return done
