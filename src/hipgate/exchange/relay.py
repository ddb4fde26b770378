"""The relay on the front-end server: the half of the middleware that talks to the national platform.

The middleware (platform_client) sends each request unsigned, its msgid already assigned, over HTTPS
with its host certificate. The relay admits only the allowed client certificates, fills in `signtype` and
`cainfo`, validates the request against the interface document (an invalid request never reaches the
platform), signs it, forwards it over verified TLS (a 9102 chunk streamed through, never held whole),
verifies the platform's signature on the reply and returns it on the same connection.

It holds no state: no records at rest, no queue, no database credentials. A `kill -9` loses nothing,
because the middleware resends the same msgid and the platform answers idempotently.

Its own answers (never the platform's) carry `X-Hipgate-Relay`: `refused` (403: client certificate not
allowed), `invalid` (422: the request violates the document; JSON with each violation), `unreachable`
(502: the platform could not be reached or did not answer), `bad-reply` (502: the reply's signature or
form is wrong). A forwarded reply carries `X-Hipgate-Relay: forwarded`.

    python -m hipgate.exchange.relay --config /etc/hipgate/exchange/relay.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import re
import signal
import socket
import ssl
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hipgate.errors import UserError
from hipgate.exchange import signing
from hipgate.exchange.interface import (
    Interface,
    canonical_bytes,
    chunk_request,
    header_envelope,
    load_interface,
    parse_json,
    validate_http_request,
    validate_reply,
    validate_request,
)
from hipgate.exchange.jsonconfig import Fields, raise_problems, read_json

log = logging.getLogger("hipgate.exchange.relay")

MAX_JSON_BODY = 64 << 20  # 500 settlements with their items stay far below this
MAX_CHUNK = 16 << 20  # the document's largest chunk_size
MAX_REPLY = 64 << 20
PIECE = 64 << 10
HOST_RE = r"[A-Za-z0-9.:-]{1,253}"
NAME_RE = r"[A-Za-z0-9*][A-Za-z0-9.*-]{0,252}"
CAINFO_RE = r"[0-9A-F]{2,64}"
# The envelope fields the relay fills in; the middleware leaves them out (it has no key).
SIGNER_FIELDS = ("signtype", "cainfo", "sign")
CHUNK_PLACEHOLDER = b"\0"  # 9102's headers are checked before the body streams through


@dataclass(frozen=True)
class RelayConfig:
    file: Path
    listen_host: str
    listen_port: int
    cert: Path
    key: Path
    client_ca: Path
    allowed_clients: tuple[str, ...]
    platform_url: str
    platform_ca: Path
    platform_signtype: str
    platform_public: Path
    signtype: str
    signing_key: Path
    cainfo: str
    platform_client_cert: Path | None = None
    platform_client_key: Path | None = None
    timeout: float = 60.0
    interface: Path | None = None


EXAMPLE = """{
  "listen": {"host": "10.20.0.2", "port": 8443},
  "tls": {"cert": "host.crt", "key": "host.key", "client_ca": "hipgate-ca.crt",
          "allowed_clients": ["middleware-1.province.example"]},
  "platform": {"url": "https://10.232.1.10", "ca": "platform-ca.crt", "signtype": "SM2",
               "public_key": "platform-sign.pem", "timeout": 60},
  "signing": {"signtype": "SM2", "key": "exchange-sign.key", "cainfo": "5A3F09C1"},
  "interface": "/opt/hipgate/interfaces/national-platform.openapi.yaml"
}"""


def load_relay_config(file: Path | str) -> RelayConfig:
    """The relay's config file (EXAMPLE), every problem reported at once with file, field and fix."""
    file = Path(file)
    doc, problems = read_json(file)
    raise_problems(problems)
    top = Fields(file, doc)
    listen, tls, platform, sign = (
        top.section("listen"),
        top.section("tls"),
        top.section("platform"),
        top.section("signing"),
    )
    host = listen.text("host", HOST_RE, ("监听地址", "listen address"), example='"10.20.0.2"')
    port = listen.number("port", 0, 65535)
    allowed = tls.get("allowed_clients", list, example='["middleware-1.province.example"]')
    if isinstance(allowed, list) and (
        not allowed or not all(isinstance(a, str) and re.fullmatch(NAME_RE, a) for a in allowed)
    ):
        tls.bad("allowed_clients", "应为非空的主机名列表。", "must be a non-empty list of host names.",
                "列出中间件主机证书的名称（CN 或 DNS SAN）。",
                "list the names (CN or DNS SAN) of the middleware hosts' certificates.")  # fmt: skip
    url = platform.text("url", r"https://[A-Za-z0-9.\[\]:-]+(/[A-Za-z0-9._/-]*)?", ("HTTPS 地址", "HTTPS URL"),
                        example='"https://10.232.1.10"')  # fmt: skip
    psigntype = platform.text("signtype", "SM2|ECDSA", ("签名类型", "signature type"), example='"SM2"')
    signtype = sign.text("signtype", "SM2|ECDSA", ("签名类型", "signature type"), example='"SM2"')
    cainfo = sign.text("cainfo", CAINFO_RE, ("证书序列号（大写十六进制）", "certificate serial (upper-case hex)"),
                       example='"5A3F09C1"')  # fmt: skip
    cfg = dict(
        file=file, listen_host=host, listen_port=port,
        cert=tls.file_path("cert"), key=tls.file_path("key"), client_ca=tls.file_path("client_ca"),
        allowed_clients=tuple(allowed or ()),
        platform_url=url, platform_ca=platform.file_path("ca"), platform_signtype=psigntype,
        platform_public=platform.file_path("public_key"),
        platform_client_cert=platform.file_path("client_cert", None),
        platform_client_key=platform.file_path("client_key", None),
        timeout=platform.number("timeout", 1, 3600, 60, integer=False),
        signtype=signtype, signing_key=sign.file_path("key"), cainfo=cainfo,
        interface=top.file_path("interface", None),
    )  # fmt: skip
    for section in (listen, tls, platform, sign, top):
        section.done()
    raise_problems(top.problems)
    return RelayConfig(**cfg)  # type: ignore[arg-type]


# ---------------------------------------------------------------- keys and TLS


def load_signing_key(path: Path, signtype: str) -> signing.SigningKey:
    data = path.read_bytes()
    return signing.load_sm2_private_key(data) if signtype == "SM2" else signing.load_ecdsa_private_key(data)


def load_verifying_key(path: Path, signtype: str) -> signing.VerifyingKey:
    data = path.read_bytes()
    return signing.load_sm2_public_key(data) if signtype == "SM2" else signing.load_ecdsa_public_key(data)


def server_context(cfg: RelayConfig) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cfg.cert, cfg.key)
    ctx.verify_mode = ssl.CERT_REQUIRED  # no client certificate: no handshake
    ctx.load_verify_locations(cafile=str(cfg.client_ca))
    return ctx


def platform_context(cfg: RelayConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cfg.platform_ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.platform_client_cert and cfg.platform_client_key:
        ctx.load_cert_chain(cfg.platform_client_cert, cfg.platform_client_key)
    return ctx


def peer_names(cert: dict[str, Any] | None) -> set[str]:
    """The names a client certificate carries: its CN and DNS subject alternative names."""
    if not cert:
        return set()
    names = {v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"}
    names |= {v for k, v in cert.get("subjectAltName", ()) if k == "DNS"}
    return names


# ---------------------------------------------------------------- the relay


class Relay:
    def __init__(self, cfg: RelayConfig, iface: Interface | None = None) -> None:
        self.cfg = cfg
        self.iface = iface or load_interface(cfg.interface)
        self.key = load_signing_key(cfg.signing_key, cfg.signtype)
        self.platform_key = load_verifying_key(cfg.platform_public, cfg.platform_signtype)
        self.platform_ctx = platform_context(cfg)
        url = urlsplit(cfg.platform_url)
        self.platform_host, self.platform_port = url.hostname or "", url.port or 443
        self.platform_prefix = url.path.rstrip("/")
        self._json_paths = {op.path: op.infno for op in self.iface.operations.values() if not op.in_headers}
        chunk_op = next((op for op in self.iface.operations.values() if op.in_headers), None)
        pattern = re.escape(chunk_op.path) if chunk_op else ""
        pattern = pattern.replace(r"\{upload_id\}", "([^/]+)").replace(r"\{chunk_index\}", "([0-9]+)")
        self._chunk_re = re.compile(pattern) if chunk_op else None
        self.server: RelayServer | None = None

    # ------------------------------------------------------------ signing

    def sign(self, envelope: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in envelope.items() if k not in SIGNER_FIELDS}
        out["signtype"], out["cainfo"] = self.cfg.signtype, self.cfg.cainfo
        out["sign"] = signing.sign(canonical_bytes(out), self.key, self.cfg.signtype)
        return out

    def reply_ok(self, infno: str, status: int, body: bytes, headers: dict[str, str], msgid: str | None) -> str | None:
        """Why a reply from the platform must not be passed on, or None. A processed reply (HTTP 200) must
        carry the platform's valid signature and conform to the document; an error reply is passed on
        only signed or unsigned-but-conforming (it can make the middleware retry, never accept)."""
        try:
            reply = parse_json(body)
        except (ValueError, UnicodeDecodeError):
            return "the reply is not JSON / 应答不是 JSON"
        if not isinstance(reply, dict):
            return "the reply is not a JSON object / 应答不是 JSON 对象"
        signed = isinstance(reply.get("sign"), str) and signing.verify(
            canonical_bytes(reply), reply["sign"], self.platform_key, self.cfg.platform_signtype
        )
        if status == 200 and not signed:
            return "the reply's signature is not the platform's / 应答签名验证失败"
        if "sign" in reply and not signed:
            return "the reply's signature is not the platform's / 应答签名验证失败"
        violations = validate_reply(self.iface, infno, body, status, headers, msgid if status == 200 else None)
        if violations:
            return "the reply does not conform to the document / 应答不符合接口文档: " + "; ".join(
                v.reason() for v in violations[:5]
            )
        return None

    # ------------------------------------------------------------ forwarding

    def connect(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.platform_host, self.platform_port, context=self.platform_ctx, timeout=self.cfg.timeout
        )

    def handle(self, req: RelayHandler) -> None:
        names = peer_names(req.connection.getpeercert())  # type: ignore[attr-defined]
        if not names & set(self.cfg.allowed_clients):
            log.warning("refused client %s (certificate names %s)", req.client_address[0], sorted(names))
            return answer(
                req, 403, "refused", {"zh": "客户端证书不在允许名单中。", "en": "client certificate not allowed."}
            )
        path = urlsplit(req.path).path
        length = int(req.headers.get("Content-Length") or -1)
        if length < 0:
            return answer(req, 411, "invalid", {"zh": "缺少 Content-Length。", "en": "Content-Length required."})
        chunk = self._chunk_re.fullmatch(path) if self._chunk_re else None
        if chunk:
            return self.handle_chunk(req, chunk[1], int(chunk[2]), length)
        infno = self._json_paths.get(path)
        if infno is None or length > MAX_JSON_BODY:
            drain(req, length)
            detail = {
                "zh": f"未知交易路径或报文过大：{path}",
                "en": f"unknown transaction path or body too large: {path}",
            }
            return answer(req, 404 if infno is None else 413, "invalid", detail)
        body = req.rfile.read(length)
        try:
            envelope = parse_json(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return answer(req, 422, "invalid", {"violations": [f"(body): not JSON ({exc})"]})
        if not isinstance(envelope, dict):
            return answer(req, 422, "invalid", {"violations": ["(body): not a JSON object"]})
        signed = self.sign(envelope)
        violations = validate_request(self.iface, infno, signed)
        if violations:
            log.warning("refused invalid %s %s: %s", infno, envelope.get("msgid"), violations[0].reason())
            return answer(req, 422, "invalid", {"violations": [v.reason() for v in violations]})
        data = json.dumps(signed, ensure_ascii=False).encode()
        self.forward(req, infno, path, {"Content-Type": "application/json"}, data, None, signed.get("msgid"))

    def handle_chunk(self, req: RelayHandler, upload_id: str, index: int, length: int) -> None:
        if length > MAX_CHUNK or length < 1:
            drain(req, length)
            return answer(req, 413, "invalid", {"violations": [f"(body): a chunk of {length} bytes"]})
        headers = {k: v for k, v in req.headers.items()}
        envelope = header_envelope(self.iface, headers, upload_id, index)
        signed = self.sign(envelope)
        path, out_headers = chunk_request(self.iface, signed)
        out_headers["Content-Type"] = "application/octet-stream"
        violations = validate_http_request(self.iface, path, out_headers, CHUNK_PLACEHOLDER, "9102")
        if violations:
            drain(req, length)
            return answer(req, 422, "invalid", {"violations": [v.reason() for v in violations]})
        out_headers["Content-Length"] = str(length)
        self.forward(req, "9102", path, out_headers, None, length, signed.get("msgid"))

    def forward(self, req: RelayHandler, infno: str, path: str, headers: dict[str, str], body: bytes | None,
                stream_length: int | None, msgid: str | None) -> None:  # fmt: skip
        conn = self.connect()
        try:
            try:
                conn.putrequest("POST", self.platform_prefix + path, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders()
                if body is not None:
                    conn.send(body)
                else:
                    # The chunk passes through piece by piece: the relay never holds it whole.
                    left, digest = stream_length or 0, hashlib.sha256()
                    while left > 0:
                        piece = req.rfile.read(min(PIECE, left))
                        if not piece:
                            raise ConnectionError("the middleware closed the connection mid-chunk")
                        digest.update(piece)
                        conn.send(piece)
                        left -= len(piece)
                resp = conn.getresponse()
                data = resp.read(MAX_REPLY + 1)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("platform unreachable for %s %s: %s", infno, msgid, exc)
                req.close_connection = True
                return answer(
                    req, 502, "unreachable", {"zh": f"无法连接国家平台：{exc}", "en": f"platform unreachable: {exc}"}
                )
            reply_headers = {k: v for k, v in resp.getheaders()}
            problem = "the reply is too large / 应答过大" if len(data) > MAX_REPLY else None
            problem = problem or self.reply_ok(infno, resp.status, data, reply_headers, msgid)
            if problem:
                log.error("refused the platform's reply to %s %s: %s", infno, msgid, problem)
                return answer(req, 502, "bad-reply", {"zh": problem, "en": problem})
            extra = {"Retry-After": reply_headers["Retry-After"]} if "Retry-After" in reply_headers else {}
            log.info("forwarded %s %s: HTTP %s", infno, msgid, resp.status)
            send(req, resp.status, data, {"X-Hipgate-Relay": "forwarded", **extra})
        finally:
            conn.close()


def answer(req: BaseHTTPRequestHandler, status: int, kind: str, detail: dict[str, Any]) -> None:
    send(req, status, json.dumps({"relay": kind, **detail}, ensure_ascii=False).encode(), {"X-Hipgate-Relay": kind})


def send(req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    req.send_response(status)
    req.send_header("Content-Type", "application/json; charset=utf-8")
    req.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        req.send_header(k, v)
    req.end_headers()
    req.wfile.write(body)


def drain(req: BaseHTTPRequestHandler, length: int) -> None:
    """Read and drop a body we refuse, so the connection stays usable (bounded: a chunk at most)."""
    left = min(max(length, 0), MAX_CHUNK)
    while left > 0:
        piece = req.rfile.read(min(PIECE, left))
        if not piece:
            break
        left -= len(piece)
    if length > MAX_CHUNK:
        req.close_connection = True


class RelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RelayServer

    def do_POST(self) -> None:
        try:
            self.server.relay.handle(self)
        except (ConnectionError, ssl.SSLError, TimeoutError) as exc:
            log.info("client connection ended: %s", exc)
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


class RelayServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, relay: Relay, ctx: ssl.SSLContext) -> None:
        self.relay = relay
        self.ctx = ctx
        super().__init__((relay.cfg.listen_host, relay.cfg.listen_port), RelayHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # The handshake happens in the request's own thread (do_handshake_on_connect on first read), so a
        # slow or hostile client cannot hold up the accept loop.
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.info("connection from %s failed: %s", client_address[0], sys.exc_info()[1])


def serve(cfg: RelayConfig, iface: Interface | None = None) -> RelayServer:
    """A started relay (its port: server.server_address[1]); stop with server.shutdown(); server.server_close()."""
    relay = Relay(cfg, iface)
    server = RelayServer(relay, server_context(cfg))
    relay.server = server
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hipgate.exchange.relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    try:
        cfg = load_relay_config(args.config)
        server = serve(cfg)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    log.info("relay on %s:%s for %s", cfg.listen_host, server.server_address[1], cfg.platform_url)
    print(f"listening {server.server_address[1]}", flush=True)  # read by tests that start it on port 0
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
