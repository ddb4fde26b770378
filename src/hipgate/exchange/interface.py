"""The interface document (interfaces/national-platform.openapi.yaml, or a province's real one): load it,
map each infno to its operation, validate requests and replies against it with openapi-core, build
envelopes and msgids, and make the canonical bytes that are signed.

Everything a request or reply gets wrong comes back as a list of Violations naming the field
(`input.records[0].psn_name`, `X-HSA-Msgid`) in Chinese and English, without the value of a
personal-data element: the middleware quarantines a record with these as the reason and never sends it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema.exceptions import ValidationError as SchemaError
from jsonschema.exceptions import best_match
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.templating.responses.exceptions import ResponseFinderError
from openapi_core.validation.request import exceptions as req_exc
from openapi_core.validation.response import exceptions as resp_exc
from openapi_spec_validator import validate as validate_spec
from werkzeug.datastructures import Headers, ImmutableMultiDict

from hipgate.errors import UserError, fail
from hipgate.exchange.dataset import PLATFORM_TZ
from hipgate.exchange.violations import Violation, dotted
from hipgate.inventory.yamlio import read_yaml
from hipgate.paths import project_root

# A province's real document may be large (many transactions); ours is ~150 KB.
MAX_DOCUMENT_BYTES = 16 << 20
HOST_URL = "https://national-platform"  # requests are matched on their path; the host is the inventory's
ENVELOPE_FIELDS = ("infno", "msgid", "infver", "sender_code", "recer_sys_code", "inf_time", "signtype", "cainfo")
# 9102's header envelope when a document does not say (x-hipgate-chunk-headers).
DEFAULT_CHUNK_HEADERS = (
    ("X-HSA-Infno", "infno"),
    ("X-HSA-Msgid", "msgid"),
    ("X-HSA-Infver", "infver"),
    ("X-HSA-Sender-Code", "sender_code"),
    ("X-HSA-Recer-Sys-Code", "recer_sys_code"),
    ("X-HSA-Inf-Time", "inf_time"),
    ("X-HSA-Signtype", "signtype"),
    ("X-HSA-Cainfo", "cainfo"),
    ("X-HSA-Sign", "sign"),
    ("X-HSA-Chunk-SHA256", "input.chunk_sha256"),
)
INF_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MSGID_TIME_FORMAT = "%Y%m%d%H%M%S"
SENDER_CODE_RE = re.compile(r"[1-9][0-9]0000(0[1-9]|[1-9][0-9])")


def default_document() -> Path:
    return project_root() / "interfaces" / "national-platform.openapi.yaml"


@dataclass(frozen=True)
class Operation:
    infno: str
    path: str  # "/fsi/api/4101", "/fsi/api/9102/{upload_id}/{chunk_index}"
    method: str
    operation_id: str
    action: str | None  # x-hipgate-action: what the middleware uses it for
    record_types: tuple[str, ...]
    body: str  # the request's media type

    @property
    def in_headers(self) -> bool:
        """The envelope travels in headers (9102: the body is the chunk's bytes)."""
        return self.body != "application/json"


@dataclass(frozen=True)
class Interface:
    path: Path
    document: dict[str, Any]
    api: OpenAPI = field(repr=False)
    operations: dict[str, Operation]
    chunk_headers: tuple[tuple[str, str], ...] = DEFAULT_CHUNK_HEADERS
    errors: tuple[dict[str, Any], ...] = ()  # x-hipgate-errors

    @property
    def version(self) -> str:
        return str(self.document.get("info", {}).get("version", ""))


# ---------------------------------------------------------------- loading


def _doc_problem(path: Path, zh: str, en: str) -> UserError:
    return fail(
        str(path),
        zh,
        en,
        "改正文档，或在清单中把 hipgate.exchange.interface 指向有效的 OpenAPI 3 文档（见 interfaces/README.md）。",
        "fix the document, or point hipgate.exchange.interface at a valid OpenAPI 3 document (interfaces/README.md).",
    )


def _operations(path: Path, doc: dict[str, Any]) -> dict[str, Operation]:
    ops: dict[str, Operation] = {}
    for url, item in (doc.get("paths") or {}).items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch") or not isinstance(op, dict):
                continue
            infno = op.get("x-infno")
            if infno is None and (m := re.fullmatch(r".*/([0-9]{4})(?:/.*)?", url)):
                infno = m[1]  # a document without x-infno: the path's 4-digit segment
            if infno is None:
                raise _doc_problem(
                    path,
                    f"操作 {method.upper()} {url} 没有 x-infno，也无法从路径得出交易编号。",
                    f"operation {method.upper()} {url} has no x-infno and its path names no transaction number.",
                )
            infno = str(infno)
            if infno in ops:
                raise _doc_problem(
                    path,
                    f"交易编号 {infno} 出现在两个操作中（{ops[infno].path} 与 {url}）。",
                    f"transaction {infno} appears on two operations ({ops[infno].path} and {url}).",
                )
            content = (op.get("requestBody") or {}).get("content") or {"application/json": {}}
            ops[infno] = Operation(
                infno, url, method, str(op.get("operationId", infno)), op.get("x-hipgate-action"),
                tuple(op.get("x-hipgate-record-types") or ()), next(iter(content)),
            )  # fmt: skip
    if not ops:
        raise _doc_problem(path, "文档没有任何交易。", "the document has no transactions.")
    return ops


@lru_cache(maxsize=4)
def _load(path: Path, _stamp: tuple[int, int]) -> Interface:
    doc = read_yaml(path, max_bytes=MAX_DOCUMENT_BYTES)
    if not isinstance(doc, dict):
        raise _doc_problem(path, "文档应为 YAML 或 JSON 对象。", "the document must be a YAML or JSON object.")
    if "swagger" in doc or not str(doc.get("openapi", "")).startswith("3."):
        raise _doc_problem(
            path,
            "不是 OpenAPI 3 文档（Swagger 2.0 须先转换为 OpenAPI 3，如用 swagger2openapi）。",
            "not an OpenAPI 3 document (convert a Swagger 2.0 document to OpenAPI 3 first, e.g. with swagger2openapi).",
        )
    try:
        validate_spec(doc)
    except Exception as exc:  # openapi-spec-validator raises several kinds; each names the place
        where = getattr(exc, "json_path", None) or "/".join(map(str, getattr(exc, "path", []) or []))
        message = str(getattr(exc, "message", exc)).splitlines()[0][:300]
        raise _doc_problem(
            path, f"不是有效的 OpenAPI 文档：{where}：{message}", f"not a valid OpenAPI document: {where}: {message}"
        ) from None
    api = OpenAPI.from_dict(doc, config=Config(spec_validator_cls=None))  # validated just above
    raw_headers = doc.get("x-hipgate-chunk-headers")
    headers = tuple((h["header"], h["field"]) for h in raw_headers) if raw_headers else DEFAULT_CHUNK_HEADERS
    return Interface(path, doc, api, _operations(path, doc), headers, tuple(doc.get("x-hipgate-errors") or ()))


def load_interface(path: Path | str | None = None) -> Interface:
    """The interface document at `path` (default: hipgate's own, interfaces/national-platform.openapi.yaml;
    a province sets hipgate.exchange.interface). Checked as OpenAPI once per file version."""
    resolved = Path(path or default_document()).resolve()
    try:
        st = resolved.stat()
    except OSError:
        st = None
    return _load(resolved, (st.st_mtime_ns, st.st_size) if st else (0, 0))


def operation(iface: Interface, infno: str) -> Operation:
    try:
        return iface.operations[infno]
    except KeyError:
        known = ", ".join(sorted(iface.operations))
        raise fail(
            f"{iface.path}: infno {infno}",
            f"接口文档中没有交易 {infno}。",
            f"the interface document has no transaction {infno}.",
            f"使用文档中的交易编号：{known}。",
            f"use a transaction of the document: {known}.",
        ) from None


def operation_for(iface: Interface, action: str, record_type: str | None = None) -> Operation:
    """The operation the middleware uses for `action` (x-hipgate-action) and, where it matters, a record type."""
    for op in iface.operations.values():
        if op.action == action and (record_type is None or record_type in op.record_types):
            return op
    raise fail(
        f"{iface.path}: x-hipgate-action",
        f"没有 x-hipgate-action 为 {action!r}" + (f"、承载 {record_type} 的交易。" if record_type else " 的交易。"),
        f"no transaction has x-hipgate-action {action!r}" + (f" carrying {record_type}." if record_type else "."),
        "在该交易的操作上加 x-hipgate-action 与 x-hipgate-record-types（见 interfaces/README.md）。",
        "add x-hipgate-action and x-hipgate-record-types to that transaction's operation (interfaces/README.md).",
    )


# ---------------------------------------------------------------- canonical bytes, msgids, envelopes


def canonical_bytes(envelope: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: the JSON object without `sign`, keys sorted recursively, no whitespace,
    non-ASCII written as itself, UTF-8. (RFC 8785 for this interface, which has integers but no floats.)"""
    body = {k: v for k, v in envelope.items() if k != "sign"}
    for value in _leaves(body):
        if isinstance(value, float):
            raise TypeError("the interface has no floating-point numbers: write decimals as strings")
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    else:
        yield value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(body: bytes) -> Any:
    """A message body as JSON; a duplicated key is an error (two readers could see two messages)."""
    return json.loads(body.decode("utf-8"), object_pairs_hook=_refuse_duplicates)


_msgid_lock = threading.Lock()
_msgid_state: dict[str, tuple[dt.datetime, int]] = {}


def new_msgid(sender_code: str, now: dt.datetime | None = None) -> str:
    """sender_code + yyyyMMddHHmmss + 6-digit sequence, strictly increasing within this process: the
    sequence counts within a second, and neither a clock stepping back nor a million messages in one
    second makes a msgid repeat (the time part then runs ahead of the clock)."""
    if not SENDER_CODE_RE.fullmatch(sender_code):
        raise ValueError(f"sender code {sender_code!r} is not a province division and a 2-digit node (44000001)")
    stamp = (now or dt.datetime.now(dt.UTC).astimezone(PLATFORM_TZ)).replace(microsecond=0, tzinfo=None)
    with _msgid_lock:
        last, seq = _msgid_state.get(sender_code, (dt.datetime.min, -1))
        if stamp <= last:
            stamp, seq = last, seq + 1
            if seq > 999_999:
                stamp, seq = last + dt.timedelta(seconds=1), 0
        else:
            seq = 0
        _msgid_state[sender_code] = (stamp, seq)
    return f"{sender_code}{stamp.strftime(MSGID_TIME_FORMAT)}{seq:06d}"


def build_envelope(
    infno: str,
    input: Mapping[str, Any],
    *,
    sender_code: str,
    cainfo: str,
    signtype: str = "SM2",
    infver: str = "V1.0",
    recer_sys_code: str = "NHSA",
    msgid: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A request envelope without `sign` (sign canonical_bytes of it, then add `sign`)."""
    now = (now or dt.datetime.now(dt.UTC).astimezone(PLATFORM_TZ)).replace(microsecond=0)
    return {
        "infno": infno,
        "msgid": msgid or new_msgid(sender_code, now.replace(tzinfo=None)),
        "infver": infver,
        "sender_code": sender_code,
        "recer_sys_code": recer_sys_code,
        "inf_time": now.strftime(INF_TIME_FORMAT),
        "signtype": signtype,
        "cainfo": cainfo,
        "input": dict(input),
    }


def chunk_request(iface: Interface, envelope: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """9102's URL path and headers from its header envelope (the object that is signed)."""
    op = operation(iface, str(envelope.get("infno", "9102")))
    data = envelope.get("input") or {}
    path = op.path.replace("{upload_id}", str(data.get("upload_id", ""))).replace(
        "{chunk_index}", str(data.get("chunk_index", ""))
    )
    headers = {}
    for header, name in iface.chunk_headers:
        value = data.get(name.removeprefix("input.")) if name.startswith("input.") else envelope.get(name)
        if value is not None:
            headers[header] = str(value)
    return path, headers


def header_envelope(iface: Interface, headers: Mapping[str, str], upload_id: str, chunk_index: int) -> dict[str, Any]:
    """The object 9102's signature covers, made from the received headers and path parameters."""
    lower = {k.lower(): v for k, v in headers.items()}
    env: dict[str, Any] = {}
    data: dict[str, Any] = {"upload_id": upload_id, "chunk_index": chunk_index}
    for header, name in iface.chunk_headers:
        if header.lower() not in lower:
            continue
        if name.startswith("input."):
            data[name.removeprefix("input.")] = lower[header.lower()]
        else:
            env[name] = lower[header.lower()]
    env["input"] = data
    return env


# ---------------------------------------------------------------- validation


@dataclass
class _Request:
    """What openapi-core reads of a request (its Request protocol)."""

    path: str
    body: bytes
    content_type: str
    headers: Mapping[str, str]
    method: str = "post"
    host_url: str = HOST_URL
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = RequestParameters(
            path={}, query=ImmutableMultiDict(), header=Headers(dict(self.headers)), cookie=ImmutableMultiDict()
        )


@dataclass
class _Response:
    data: bytes
    status_code: int
    content_type: str
    headers: Headers


def _v(path: str, rule: str, zh: str, en: str) -> Violation:
    return Violation(path, rule, zh, en)


def _show(error: SchemaError, top_level: bool) -> tuple[str, str]:
    """The bad value for a reason, only where it cannot be personal data: an envelope field or header,
    or a value outside a closed list; never an element marked x-hipgate-pii."""
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if schema.get("x-hipgate-pii") or not (top_level or "enum" in schema or "const" in schema):
        return "", ""
    text = repr(error.instance)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"：{text}", f": {text}"


def _schema_violations(error: SchemaError, prefix: list[str | int]) -> list[Violation]:
    """One jsonschema error of openapi-core as Violations naming the field."""
    parts = [*prefix, *error.absolute_path]
    where = dotted(parts)
    top = len(parts) <= 1 or bool(prefix and str(prefix[0]).startswith("X-"))
    kind, limit, inst = error.validator, error.validator_value, error.instance
    shown_zh, shown_en = _show(error, top)
    if kind == "required":
        name = re.match(r"'([^']*)'", error.message)
        field_name = name[1] if name else "?"
        return [_v(dotted([*parts, field_name]), "required", "缺少必填项。", "required field is missing.")]
    if kind in ("additionalProperties", "unevaluatedProperties"):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        known = set(schema.get("properties") or {})
        extra = [k for k in (inst if isinstance(inst, Mapping) else {}) if k not in known] or ["?"]
        return [
            _v(
                dotted([*parts, str(k)[:50]]),
                "unknown",
                "接口文档中没有该项（不允许额外的项）。",
                "not in the interface document (no extra fields allowed).",
            )
            for k in extra
        ]
    if kind in ("anyOf", "oneOf") and error.context:
        return _schema_violations(best_match(error.context), prefix)
    if kind == "maxLength":
        return [
            _v(
                where,
                "max_length",
                f"过长：{len(inst)} 个字符，最多 {limit} 个。",
                f"too long: {len(inst)} characters, at most {limit}.",
            )
        ]
    if kind == "minLength":
        return [_v(where, "min_length", f"过短：至少 {limit} 个字符。", f"too short: at least {limit} characters.")]
    if kind == "pattern":
        return [_v(where, "pattern", f"格式不正确{shown_zh}。", f"malformed{shown_en} (must match {limit}).")]
    if kind == "format":
        return [_v(where, "format", f"不是有效的 {limit}{shown_zh}。", f"not a valid {limit}{shown_en}.")]
    if kind == "enum":
        allowed = ", ".join(map(str, list(limit)[:12])) + (", ..." if len(limit) > 12 else "")
        return [
            _v(
                where,
                "enum",
                f"不是允许的值{shown_zh}（可选：{allowed}）。",
                f"not an allowed value{shown_en} (one of: {allowed}).",
            )
        ]
    if kind == "const":
        return [_v(where, "const", f"应为 {limit!r}{shown_zh}。", f"must be {limit!r}{shown_en}.")]
    if kind == "type":
        got = type(inst).__name__ if inst is not None else "null"
        return [_v(where, "type", f"类型错误：应为 {limit}，实为 {got}。", f"wrong type: {limit} expected, got {got}.")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound_zh = "最小" if "inimum" in kind else "最大"
        bound_en = "at least" if "inimum" in kind else "at most"
        return [_v(where, "range", f"超出范围（{bound_zh} {limit}）。", f"out of range ({bound_en} {limit}).")]
    if kind in ("minItems", "maxItems"):
        bound_zh, bound_en = ("至少", "at least") if kind == "minItems" else ("最多", "at most")
        return [
            _v(where, "count", f"{len(inst)} 项，{bound_zh} {limit} 项。", f"{len(inst)} entries, {bound_en} {limit}.")
        ]
    if kind == "uniqueItems":
        return [_v(where, "unique", "列表中有重复项。", "the list repeats an entry.")]
    if kind == "dependentRequired":
        return [
            _v(where, "required", f"缺少与之相关的必填项：{limit}。", f"fields required with it are missing: {limit}.")
        ]
    return [
        _v(where, "invalid", f"不符合接口文档（{kind}）。", f"does not conform to the interface document ({kind}).")
    ]


def _cause_errors(exc: BaseException) -> list[SchemaError]:
    cause = exc.__cause__
    return list(getattr(cause, "schema_errors", None) or [])


def _openapi_violations(errors: Iterable[Exception], infno: str) -> list[Violation]:
    out: list[Violation] = []
    for exc in errors:
        name = getattr(exc, "name", None)
        if isinstance(exc, (req_exc.MissingRequiredParameter, resp_exc.MissingRequiredHeader)):
            out.append(
                _v(str(name), "required", "缺少必需的请求头或参数。", "a required header or parameter is missing.")
            )
        elif isinstance(exc, (req_exc.ParameterValidationError, resp_exc.HeaderValidationError)):
            schema_errors = _cause_errors(exc)
            if schema_errors:
                for err in schema_errors:
                    out += _schema_violations(err, [str(name)])
            else:
                out.append(_v(str(name), "type", "值的类型或格式不正确。", "the value has the wrong type or form."))
        elif isinstance(exc, (req_exc.InvalidRequestBody, resp_exc.InvalidData)):
            for err in _cause_errors(exc):
                out += _schema_violations(err, [])
        elif isinstance(exc, (req_exc.MissingRequestBodyError, resp_exc.MissingData)):
            out.append(_v("(body)", "required", "缺少报文体。", "the body is missing."))
        elif isinstance(exc, (req_exc.RequestBodyValidationError, resp_exc.DataValidationError)):
            out.append(
                _v(
                    "(body)",
                    "content",
                    f"报文体无法读取：{str(exc)[:200]}",
                    f"the body cannot be read: {str(exc)[:200]}",
                )
            )
        elif isinstance(exc, PathError):
            out.append(
                _v(
                    "(path)",
                    "infno",
                    f"接口文档中没有交易 {infno} 的该路径。",
                    f"no such path for {infno} in the document.",
                )
            )
        elif isinstance(exc, ResponseFinderError):
            out.append(
                _v(
                    "(status)",
                    "status",
                    "接口文档未定义该 HTTP 状态。",
                    "the document defines no reply with this HTTP status.",
                )
            )
        else:
            out.append(
                _v("(message)", "invalid", f"不符合接口文档：{str(exc)[:200]}", f"does not conform: {str(exc)[:200]}")
            )
    return out


def _time_violations(envelope: Mapping[str, Any], prefix: str = "") -> list[Violation]:
    """What a pattern cannot say: the times are real calendar times, and msgid starts with sender_code."""
    out: list[Violation] = []
    msgid, sender, inf_time = envelope.get("msgid"), envelope.get("sender_code"), envelope.get("inf_time")
    if isinstance(msgid, str) and isinstance(sender, str) and not msgid.startswith(sender):
        out.append(
            _v(
                prefix + "msgid",
                "msgid_sender",
                "报文ID 的前缀不是 sender_code。",
                "msgid does not start with sender_code.",
            )
        )
    if isinstance(msgid, str) and isinstance(sender, str) and msgid.startswith(sender):
        try:
            dt.datetime.strptime(msgid[len(sender) : len(sender) + 14], MSGID_TIME_FORMAT)
        except ValueError:
            out.append(
                _v(prefix + "msgid", "time", "报文ID 中的时间无效。", "the time inside msgid is not a real time.")
            )
    if isinstance(inf_time, str) and re.fullmatch(r"[0-9-]{10} [0-9:]{8}", inf_time):
        try:
            dt.datetime.strptime(inf_time, INF_TIME_FORMAT)
        except ValueError:
            out.append(_v(prefix + "inf_time", "time", "不是有效的时间。", "not a real time."))
    return out


def validate_http_request(
    iface: Interface, path: str, headers: Mapping[str, str], body: bytes, infno: str = "?"
) -> list[Violation]:
    """A request as it travels (URL path, headers, body bytes) against the document."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "application/json")
    out: list[Violation] = []
    if content_type.split(";")[0].strip() == "application/json":
        try:
            parsed = parse_json(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return [_v("(body)", "json", f"报文体不是有效的 JSON（{exc}）。", f"the body is not valid JSON ({exc}).")]
        if isinstance(parsed, Mapping):
            out += _time_violations(parsed)
            if infno != "?" and parsed.get("infno") not in (None, infno):
                out.append(_v("infno", "infno", f"与交易 {infno} 不符。", f"does not match transaction {infno}."))
    request = _Request(path, body, content_type, headers)
    return _merge(_openapi_violations(iface.api.iter_request_errors(request), infno), out)


def _merge(schema: list[Violation], semantic: list[Violation]) -> list[Violation]:
    """The document's findings, then hipgate's own checks on fields the document found nothing wrong with."""
    seen = {v.path for v in schema}
    return schema + [v for v in semantic if v.path not in seen]


def validate_request(
    iface: Interface, infno: str, envelope: Mapping[str, Any], body: bytes | None = None
) -> list[Violation]:
    """A request envelope (with `sign`) against transaction `infno` of the document: [] when it may be
    sent. For a transaction whose envelope travels in headers (9102), `envelope` is its header envelope
    and `body` the chunk's bytes, whose SHA-256 must be the envelope's."""
    op = operation(iface, infno)
    if not op.in_headers:
        body_bytes = json.dumps(envelope, ensure_ascii=False).encode()
        return validate_http_request(iface, op.path, {"Content-Type": op.body}, body_bytes, infno)
    data = envelope.get("input") if isinstance(envelope.get("input"), Mapping) else {}
    path, headers = chunk_request(iface, envelope)
    out = _merge(
        validate_http_request(iface, path, {**headers, "Content-Type": op.body}, body or b"", infno),
        _time_violations(envelope),
    )
    if body is not None and data.get("chunk_sha256") not in (None, hashlib.sha256(body).hexdigest()):
        header = next((h for h, f in iface.chunk_headers if f == "input.chunk_sha256"), "input.chunk_sha256")
        out.append(
            _v(header, "chunk_sha256", "与分片内容的 SHA-256 不符。", "does not match the SHA-256 of the chunk.")
        )
    return out


def split_items(violations: Iterable[Violation], container: str, count: int) -> list[list[Violation]]:
    """The violations of one request carrying `count` items in the list at `container` (`input.records`),
    per item, each named as if its item were alone at index 0 (`input.records[0].psn_name`): what is said
    of an item does not depend on the batch it was checked in. Violations of anything else (the envelope,
    the list itself) are left out."""
    per: list[list[Violation]] = [[] for _ in range(count)]
    at = re.compile(re.escape(container) + r"\[([0-9]+)\]")
    for v in violations:
        m = at.match(v.path)
        rest = v.path[m.end() :] if m else ""
        if m is None or int(m[1]) >= count or rest[:1] not in ("", ".", "["):
            continue
        per[int(m[1])].append(Violation(f"{container}[0]{rest}", v.rule, v.zh, v.en))
    return per


def validate_reply(
    iface: Interface,
    infno: str,
    reply: Mapping[str, Any] | bytes,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    request_msgid: str | None = None,
) -> list[Violation]:
    """A reply (parsed, or its body bytes) to transaction `infno`, with its HTTP status, against the
    document; with `request_msgid`, inf_refmsgid must name it."""
    op = operation(iface, infno)
    body = reply if isinstance(reply, bytes) else json.dumps(reply, ensure_ascii=False).encode()
    out: list[Violation] = []
    try:
        parsed = parse_json(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return [_v("(body)", "json", f"应答不是有效的 JSON（{exc}）。", f"the reply is not valid JSON ({exc}).")]
    if request_msgid is not None and isinstance(parsed, Mapping) and parsed.get("inf_refmsgid") != request_msgid:
        out.append(
            _v(
                "inf_refmsgid",
                "refmsgid",
                "不是所答请求的报文ID。",
                "does not name the msgid of the request it answers.",
            )
        )
    path = op.path.replace("{upload_id}", "x" * 8).replace("{chunk_index}", "0")
    request = _Request(path, b"", op.body, {})
    hdrs = Headers(dict(headers or {}))
    response = _Response(body, status, hdrs.get("Content-Type", "application/json"), hdrs)
    return _merge(_openapi_violations(iface.api.iter_response_errors(request, response), infno), out)


def reasons(violations: Iterable[Violation]) -> str:
    """Violations as one quarantine reason text, one per line."""
    return "\n".join(v.reason() for v in violations)


def error_code(iface: Interface, infcode: int) -> dict[str, Any] | None:
    """What the document says of a reply's infcode (x-hipgate-errors): http_status, name_zh/en, retry."""
    return next((e for e in iface.errors if e.get("infcode") == infcode), None)
