"""A minimal client of the pgBackRest 2.45 remote protocol, for attack tests: it speaks to a remote
(`pgbackrest ... backup:remote`, usually started by ssh under a forced command) the way a hostile
client would, sending any query or storage operation instead of the fixed ones of pgBackRest.

Written from pgBackRest's source at tag release/2.45 (src/protocol/{client,server,command}.c,
src/common/type/{pack,stringId}.c, src/db/protocol.c, src/storage/remote/{protocol,write}.c,
src/command/remote/remote.c). Wire format, in brief:
- the remote first writes one JSON greeting line, then every message in either direction is a pack;
- a pack is a sequence of fields, each one tag byte (type in the high nibble, low bits shared by the
  field-id delta and small values) plus base-128 varints, ended by a 0 byte; NULL fields are gaps;
- a message pack is {1: u32 type, ...}: command {2: StringId, 3: pack params}, data {2: pack},
  data-end {}, error {2: i32 code, 3: str message, 4: str stack}.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from typing import IO, Any, Self

VERSION = "2.45"

# Message types (protocol/client.h).
DATA, DATA_END, COMMAND, ERROR = 0, 1, 2, 3

# Pack type map ids as they appear on the wire (PackTypeMap in pack.c), and how each stores its value.
ARRAY, BOOL, I32, I64, OBJ, STR, U32, U64, STRID, TIME, BIN, PACK, MODE = 1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16, 17, 18
_MULTI_BIT = {I32, I64, U32, U64, STRID, TIME, MODE}  # integers: 1 value bit in the tag, the rest in a varint
_SINGLE_BIT = {BOOL, STR, BIN}  # one bit: the bool, or "has data" for str/bin
_SIZED = {STR, BIN, PACK}  # a varint size and that many bytes follow the tag
_ZIGZAG = {I32, I64, TIME}

# StringId alphabets (stringId.c): a character's code is its index + 1; 5-bit is tried first.
_STRID5 = "abcdefghijklmnopqrstuvwxyz-256"
_STRID6 = "abcdefghijklmnopqrstuvwxyz-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class RemoteError(Exception):
    """An error message of the remote: pgBackRest's error code and its message (e.g. PostgreSQL's)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code, self.message = code, message


def strid(text: str) -> int:
    """Encode a short string as a StringId: 4 header bits (bit 0: 6-bit encoding, bit 2: truncated),
    then 5 or 6 bits per character, first character lowest. Longer strings keep their first 12/10."""
    for encoding, alphabet, width, limit in ((0, _STRID5, 5, 12), (1, _STRID6, 6, 10)):
        head = text[:limit]
        if head and all(c in alphabet for c in head):
            value = encoding | (4 if len(text) > limit else 0)
            for i, c in enumerate(head):
                value |= (alphabet.index(c) + 1) << (4 + width * i)
            return value
    raise ValueError(f"{text!r} cannot be a StringId")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes([*out, value])


class Pack:
    """Pack writer for one flat container, fields numbered 1, 2, ... in call order; None writes a NULL
    (the next field's id delta grows), which the remote reads as the field's default (0, false, NULL)."""

    def __init__(self) -> None:
        self.buf, self._nulls = bytearray(), 0

    def add(self, typ: int, value: Any) -> Self:
        if value is None:
            self._nulls += 1
            return self
        data = b""
        if typ in (STR, BIN):
            data = value.encode() if isinstance(value, str) else bytes(value)
            value = 1 if data else 0
        elif typ == PACK:
            data, value = bytes(value), 0
        elif typ in _ZIGZAG:
            value = (value << 1) ^ (value >> 63)
        delta, self._nulls = self._nulls, 0
        tag = 0xF0 if typ >= 0xF else typ << 4
        if typ in _MULTI_BIT and value < 2:  # value in bit 2, delta low bit in bit 0, "more delta" bit 1
            tag |= value << 2 | delta & 1
            delta, value = delta >> 1, 0
            tag |= 2 if delta else 0
        elif typ in _MULTI_BIT or typ in _SINGLE_BIT:  # bit 3: "more value" (int) or the value bit (bool/str/bin)
            tag |= 8 if typ in _MULTI_BIT else value << 3
            tag |= delta & 3
            delta >>= 2
            tag |= 4 if delta else 0
            value = value if typ in _MULTI_BIT else 0
        else:  # containers and packs: three delta bits, "more delta" bit 3
            tag |= delta & 7
            delta >>= 3
            tag |= 8 if delta else 0
        self.buf.append(tag)
        if typ >= 0xF:  # the rest of a type that does not fit the nibble, written even when 0 (time)
            self.buf += _varint(typ - 0xF)
        for extra in (delta, value):
            if extra:
                self.buf += _varint(extra)
        if data or typ == PACK:  # a pack's size is written even when 0; a str/bin's only when it has data
            self.buf += _varint(len(data)) + data
        return self

    def end(self) -> bytes:
        return bytes(self.buf) + b"\x00"


def read_pack(read: Callable[[int], bytes]) -> dict[int, Any]:
    """Read one pack (to its end byte) as {field id: value}; arrays/objects nest as dicts and a field of
    type pack stays raw bytes (decode it with unpack()). `read(n)` must return exactly n bytes."""

    def varint() -> int:
        value = shift = 0
        while True:
            byte = read(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    fields: dict[int, Any] = {}
    last = 0
    while tag := read(1)[0]:
        typ = tag >> 4
        if typ == 0xF:
            typ += varint()
        if typ in _MULTI_BIT and not tag & 8:
            delta = tag & 1 | (varint() << 1 if tag & 2 else 0)
            value: Any = tag >> 2 & 1
        elif typ in _MULTI_BIT or typ in _SINGLE_BIT:
            delta = tag & 3 | (varint() << 2 if tag & 4 else 0)
            value = varint() if typ in _MULTI_BIT else tag >> 3 & 1
        else:
            delta, value = tag & 7 | (varint() << 3 if tag & 8 else 0), 0
        last += delta + 1
        data = read(varint()) if typ == PACK or (typ in _SIZED and value) else b""
        if typ in (ARRAY, OBJ):
            value = read_pack(read)
        elif typ == BOOL:
            value = bool(value)
        elif typ in (STR, BIN, PACK):
            value = data.decode() if typ == STR else data
        elif typ in _ZIGZAG:
            value = (value >> 1) ^ -(value & 1)
        fields[last] = value
    return fields


def unpack(data: bytes | None) -> dict[int, Any]:
    view = memoryview(data or b"\x00")
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(view):
            raise EOFError("pack is truncated")
        pos += n
        return bytes(view[pos - n : pos])

    return read_pack(read)


def _row(fields: dict[int, Any]) -> list[Any]:
    # A NULL column is a gap in the field ids; trailing NULLs cannot be told apart from absent columns.
    return [fields.get(i) for i in range(1, max(fields, default=0) + 1)]


class Remote:
    """A pgBackRest remote started as `argv` (ssh ... "<remote command>", or pgbackrest ... backup:remote),
    greeted and past the initial noop (where a process-0 remote takes its lock, or reports why not).
    Reads block with no timeout of their own (a query is bounded by the remote's db-timeout); `timeout`
    is how long close() waits for the remote to exit before terminating, then killing it."""

    def __init__(self, argv: list[str], timeout: float = 30) -> None:
        # stderr to a file, not a pipe: a chatty remote cannot block on it, and its errors stay readable
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the remote, closed in close()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self.timeout = timeout
        self._out: IO[bytes] = self.proc.stdout  # type: ignore[assignment]
        self._in: IO[bytes] = self.proc.stdin  # type: ignore[assignment]
        self._storage_path: str | None = None
        self._db: int | None = None  # the remote's index of our PostgreSQL connection, opened on first use
        try:
            line = self._out.readline()
            greeting = json.loads(line) if line else None
            expected = {"name": "pgBackRest", "service": "remote", "version": VERSION}
            if greeting != expected:
                raise RemoteError(0, f"unexpected greeting {line!r}; stderr: {self.stderr()}")
            self.call("noop")
        except BaseException:
            self.close()
            raise

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _read(self, n: int) -> bytes:
        data = self._out.read(n)
        if len(data) != n:
            raise RemoteError(0, f"remote closed the connection; stderr: {self.stderr()}")
        return data

    def _message(self, fields: Pack) -> None:
        self._in.write(fields.end())
        self._in.flush()

    def _receive(self) -> dict[int, Any]:
        message = read_pack(self._read)
        if message.get(1, DATA) == ERROR:
            raise RemoteError(message.get(2, 0), message.get(3, ""))
        return message

    def send(self, command: str, params: Pack | None = None) -> None:
        self._message(Pack().add(U32, COMMAND).add(STRID, strid(command)).add(PACK, params and params.end()))

    def put(self, data: Pack | None) -> None:
        """A data message to the remote; None (no pack) tells it the data has ended."""
        self._message(Pack().add(U32, DATA).add(PACK, data and data.end()))

    def get(self) -> dict[int, Any] | None:
        """The next data message's pack, or None at data-end; raises RemoteError on an error message."""
        message = self._receive()
        return unpack(message.get(2)) if message.get(1, DATA) == DATA else None

    def call(self, command: str, params: Pack | None = None) -> list[dict[int, Any]]:
        """Send a command and collect every data pack it returns up to its data-end."""
        self.send(command, params)
        results = []
        while (result := self.get()) is not None:
            results.append(result)
        return results

    def db_query(self, sql: str, result: str = "any") -> Any:
        """Run `sql` through the remote's own PostgreSQL connection (db-o, then db-q). `result` is a
        PgClientQueryResult: "any" gives a list of rows (None for a command that returns no rows, e.g.
        COPY), "row" one row, "column" one value, "none" None. The connection stays open for later queries."""
        if self._db is None:
            self._db = self.call("db-o")[0].get(1, 0)
        (answer,) = self.call("db-q", Pack().add(U32, self._db or None).add(STRID, strid(result)).add(STR, sql))
        if 1 not in answer:
            return None
        rows = unpack(answer[1])
        if result == "any":
            return [_row(fields) for fields in rows.values()]
        return rows.get(1) if result == "column" else _row(rows)

    def storage_path(self, path: str) -> str:
        """Resolve a relative `path` as pgBackRest does, against the remote's storage (pg1-path for a pg
        remote); an absolute one is sent as is: only the real client confines paths, the remote does not.
        The first storage command (s-f) is what makes the remote set up its storage driver."""
        if self._storage_path is None:
            self._storage_path = self.call("s-f")[0].get(1, "")
        return os.path.join(self._storage_path, path)

    def storage_write(self, path: str, data: bytes, mode: int = 0o640, atomic: bool = True) -> None:
        """Write a file through the remote (s-ow): the remote opens it (atomic: NAME.pgbackrest.tmp, then a
        rename at close) and answers with one data message, then takes data packs until a NULL one."""
        params = Pack().add(STR, self.storage_path(path)).add(MODE, mode).add(MODE, 0o750)
        params.add(STR, None).add(STR, None).add(TIME, None)  # owner, group, mtime: left as they come
        params.add(BOOL, None).add(BOOL, True).add(BOOL, True).add(BOOL, atomic or None)  # createPath, syncs
        self.send("s-ow", params.add(PACK, Pack().end()))  # an empty filter list
        self.get()  # the open's result: errors (e.g. Permission denied) arrive here
        for start in range(0, len(data), 1 << 16):
            self.put(Pack().add(BIN, data[start : start + (1 << 16)]))
        self.put(None)
        while self.get() is not None:  # filter results, then data-end
            pass

    def storage_remove(self, path: str, missing_ok: bool = False) -> None:
        self.call("s-r", Pack().add(STR, self.storage_path(path)).add(BOOL, None if missing_ok else True))

    def close(self) -> None:
        """Send exit, end our side of the pipe, and wait; then terminate and kill the process by its PID."""
        with contextlib.suppress(OSError):  # the remote may have gone already
            if self.proc.poll() is None:
                self.send("exit")
        for stream in (self._in, self._out):  # EOF on its stdin also ends a remote that missed the exit
            with contextlib.suppress(OSError):
                stream.close()
        # terminate, not only kill: a wrapper such as runuser forwards SIGTERM to the remote it started
        for stop, wait in ((None, self.timeout), (self.proc.terminate, 5.0), (self.proc.kill, None)):
            if stop is not None:
                stop()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
                break
        self._stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
