"""The platform-facing HTTPS listener (stdlib http.server + ssl): every transaction of the document,
validated, verified, processed once, answered with a signed reply; faults injected where armed.

The TLS handshake runs in the connection's own thread (never in the accepting loop, where one slow
client would stall every other), and the listener can be closed and reopened (the `down` fault).
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hipgate.exchange.fingerprint import canonical
from hipgate.exchange.interface import parse_json
from hipgate.simulator import gate, uploads
from hipgate.simulator.context import Env, Outcome, Refusal, msg_time, now_cst, time_text
from hipgate.simulator.contract import load_private, sign_message
from hipgate.simulator.faults import Fault
from hipgate.simulator.ledger import log_request, store_message
from hipgate.simulator.transactions import handlers

log = logging.getLogger("hipgate.simulator")

MAX_JSON_BODY = 64 << 20
MAX_CHUNK = 16 << 20  # the document's largest chunk_size
DRAIN_BLOCK = 1 << 20
TRANSPORT_ERRORS = {"http_500": -9999, "http_503": -9002, "http_429": -9001}


def tls_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(client_ca))
    return ctx


HEALTH_PATH = "/api/health"
HEALTH_BODY = b'{"service": "national-platform-simulator", "status": "ok"}\n'


class Platform:
    """One simulated platform: admission, processing, replies and the listener's life."""

    def __init__(self, env: Env, ctx: ssl.SSLContext) -> None:
        self.env = env
        self.ctx = ctx
        self.senders = gate.load_senders(env.config)
        self.handlers = handlers(env)
        cfg = env.config
        self._key = load_private(cfg.signing_key, cfg.signing_signtype)
        doc_schemas = env.contract.iface.document["components"]["schemas"]
        self._msgid_re = re.compile(doc_schemas["Msgid"]["pattern"])
        self._chunk_path = re.compile(r"/fsi/api/9102/([^/]+)/([^/]+)")
        self._json_paths = {op.path: op.infno for op in env.contract.iface.operations.values() if not op.in_headers}
        self._server: PlatformHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.port = cfg.listen_port
        self.listening = False
        self._stopping = False

    # ------------------------------------------------------------ the listener

    def open(self) -> None:
        with self._lock:
            server = PlatformHTTPServer((self.env.config.listen_host, self.port), PlatformHandler, self)
            self.port = server.server_address[1]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="platform", daemon=True
            )
            self._thread.start()
            self.listening = True

    def close(self) -> None:
        """Stop accepting, close the listening socket and cut every open connection."""
        with self._lock:
            server, self._server = self._server, None
            self.listening = False
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def down(self, fault: Fault) -> None:
        """The `down` fault: closed now, listening again after `seconds` (in the background)."""
        seconds = float(fault.seconds or 0)
        self.close()
        self.env.faults.record(fault, {"event": "down", "port": self.port})

        def back() -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not fault.cancelled:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            if self._stopping:
                return
            self.open()
            self.env.faults.record(fault, {"event": "up", "port": self.port})

        threading.Thread(target=back, name="platform-down", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        self.close()

    def track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # ------------------------------------------------------------ replies

    def reply_bytes(
        self, infcode: int, msgid: str | None, received: Any, outcome: Outcome | None = None, err_msg: str | None = None
    ) -> bytes:
        reply: dict[str, Any] = {
            "infcode": infcode,
            "inf_refmsgid": msgid if isinstance(msgid, str) and self._msgid_re.fullmatch(msgid) else None,
            "refmsg_time": msg_time(received),
            "respond_time": msg_time(now_cst()),
            "err_msg": outcome.err_msg if outcome else err_msg,
            "output": outcome.output if outcome else None,
        }
        if outcome and outcome.warn_msg:
            reply["warn_msg"] = outcome.warn_msg
        cfg = self.env.config
        # The whole reply, sign included, in canonical form: what the sender verifies is what it got.
        return canonical(sign_message(reply, self._key, cfg.signing_signtype, cfg.signing_cainfo))

    def _log(self, infno: str | None, msgid: str | None, status: int | None, infcode: int | None, outcome: str,
             fault: Fault | None = None) -> None:  # fmt: skip
        with self.env.ledger.tx() as conn:
            log_request(conn, at=time_text(now_cst()), infno=infno, msgid=msgid, http_status=status, infcode=infcode,
                        outcome=outcome, fault_id=fault.id if fault else None)  # fmt: skip

    def refuse(self, req: PlatformHandler, refusal: Refusal, infno: str | None, received: Any) -> None:
        status = self.env.contract.http_status(refusal.infcode)
        body = self.reply_bytes(refusal.infcode, refusal.msgid, received, err_msg=refusal.err_msg)
        self._log(infno, refusal.msgid, status, refusal.infcode, "refused")
        self.finish(req, infno, refusal.msgid, status, body)

    def finish(self, req: PlatformHandler, infno: str | None, msgid: str | None, status: int, body: bytes,
               headers: dict[str, str] | None = None) -> None:  # fmt: skip
        """Send a reply, unless a reply-stage fault holds it back (slow) or loses it (lost_reply)."""
        fault = self.env.faults.take("reply", infno, msgid)
        if fault is not None and fault.kind == "slow":
            time.sleep(float(fault.params.get("delay", 0)))
        if fault is not None and fault.kind == "lost_reply":
            self.env.faults.note(fault, f"reply of HTTP {status} not sent; connection reset")
            reset(req)
            return
        send(req, status, body, headers)

    # ------------------------------------------------------------ requests

    def handle(self, req: PlatformHandler) -> None:
        received = now_cst()
        path = urlsplit(req.path).path
        chunk = self._chunk_path.fullmatch(path)
        infno = "9102" if chunk else self._json_paths.get(path)
        length_text = req.headers.get("Content-Length")
        if path == HEALTH_PATH and req.command == "GET":
            # Not a transaction: what a load balancer (and the lab's reachability tests) ask.
            return send(req, 200, HEALTH_BODY)
        if infno is None:
            drain(req, length_text)
            return self.refuse(
                req, Refusal(-1002, f"接口文档中没有该路径 / no transaction at {path[:100]}"), None, received
            )
        if req.command != "POST":
            drain(req, length_text)
            return self.refuse(req, Refusal(-1001, f"{infno} 只接受 POST / {infno} takes POST only"), infno, received)
        limit = MAX_CHUNK if chunk else MAX_JSON_BODY
        if length_text is None or not length_text.isdigit() or int(length_text) > limit:
            req.close_connection = True  # the body cannot be skipped safely
            why = "缺少 Content-Length 或超过上限 / Content-Length missing or above the limit"
            return self.refuse(req, Refusal(-1001, f"{why} ({limit} bytes)"), infno, received)
        length = int(length_text)
        header_msgid = req.headers.get("X-HSA-Msgid")
        fault = self.env.faults.take("transport", infno, header_msgid)
        if fault is not None:
            return self.transport_fault(req, fault, infno, length, received)
        if chunk:
            return self.handle_chunk(req, path, chunk[1], chunk[2], length, received)
        body = req.rfile.read(length)
        if len(body) < length:
            req.close_connection = True
            return None
        return self.handle_json(req, infno, path, body, received)

    def transport_fault(self, req: PlatformHandler, fault: Fault, infno: str, length: int, received: Any) -> None:
        if fault.kind == "reset":
            after = fault.params.get("after_bytes")
            after = length // 2 if after is None else min(int(after), length)
            got = len(req.rfile.read(after)) if after else 0
            self.env.faults.note(fault, f"connection reset after {got} of {length} body bytes")
            self._log(infno, req.headers.get("X-HSA-Msgid"), None, None, "reset", fault)
            reset(req)
            return
        body = req.rfile.read(length)
        msgid = req.headers.get("X-HSA-Msgid")
        if msgid is None:
            with contextlib.suppress(ValueError, AttributeError):
                found = parse_json(body).get("msgid")
                msgid = found if isinstance(found, str) else None
        infcode = TRANSPORT_ERRORS[fault.kind]
        status = self.env.contract.http_status(infcode)
        text = {-9999: "平台内部错误 / platform internal error", -9002: "平台暂不可用 / platform unavailable",
                -9001: "请求过于频繁 / rate limited"}[infcode]  # fmt: skip
        headers = {"Retry-After": str(fault.params["retry_after"])} if "retry_after" in fault.params else None
        self.env.faults.note(fault, f"HTTP {status}", msgid)
        self._log(infno, msgid, status, infcode, fault.kind, fault)
        send(req, status, self.reply_bytes(infcode, msgid, received, err_msg=text), headers)

    def handle_json(self, req: PlatformHandler, infno: str, path: str, body: bytes, received: Any) -> None:
        env = self.env
        try:
            envelope = gate.check_message(env.contract, infno, path, dict(req.headers.items()), body)
            gate.authenticate(self.senders, infno, envelope)
            msgid = envelope["msgid"]
            fault = None
            with env.ledger.tx() as conn:
                held = gate.replayed(conn, envelope)
                if held is not None:
                    status, reply = held["http_status"], bytes(held["reply"])
                    log_request(conn, at=time_text(received), infno=infno, msgid=msgid, http_status=status,
                                infcode=held["infcode"], outcome="replayed")  # fmt: skip
                else:
                    gate.check_clock(envelope, env.config.clock_tolerance, received)
                    fault = env.faults.take("processing", infno, msgid)
                    # What the handler is to do differently: answer 9103 with -1302, or re-serve acknowledged items.
                    extra: dict[str, Any] = {}
                    if fault is not None and fault.kind == "checksum":
                        extra["checksum"] = True
                    elif fault is not None and fault.kind == "duplicate_ack":
                        extra["reserve"] = fault.params["items"]
                    outcome = self.handlers[infno](env, conn, envelope, received, extra)
                    status = 200
                    reply = self.reply_bytes(outcome.infcode, msgid, received, outcome)
                    store_message(conn, msgid=msgid, sender_code=envelope["sender_code"], infno=infno,
                                  request_sha256=gate.request_digest(envelope), http_status=status,
                                  infcode=outcome.infcode, reply=reply, at=time_text(received))  # fmt: skip
                    log_request(conn, at=time_text(received), infno=infno, msgid=msgid, http_status=status,
                                infcode=outcome.infcode, outcome="processed",
                                fault_id=fault.id if fault else None)  # fmt: skip
            if fault is not None:
                env.faults.note(fault, f"re-served {extra.get('reserved_keys')}" if fault.kind == "duplicate_ack"
                                else f"infcode {outcome.infcode}")  # fmt: skip
        except Refusal as refusal:
            return self.refuse(req, refusal, infno, received)
        return self.finish(req, infno, msgid, status, reply)

    def handle_chunk(self, req: PlatformHandler, path: str, upload_id: str, index_text: str, length: int,
                     received: Any) -> None:  # fmt: skip
        env = self.env
        headers = dict(req.headers.items())
        try:
            envelope = gate.check_chunk_headers(env.contract, path, headers, upload_id, index_text)
            gate.authenticate(self.senders, "9102", envelope)
            msgid = envelope["msgid"]
            with env.ledger.tx() as conn:
                held = gate.replayed(conn, envelope)
                if held is None:
                    gate.check_clock(envelope, env.config.clock_tolerance, received)
                    data = envelope["input"]
                    early = uploads.chunk_precheck(conn, upload_id, data["chunk_index"], data["chunk_sha256"], length)
        except Refusal as refusal:
            drain(req, str(length))
            return self.refuse(req, refusal, "9102", received)
        if held is not None:
            drain(req, str(length))
            self._log("9102", msgid, held["http_status"], held["infcode"], "replayed")
            return self.finish(req, "9102", msgid, held["http_status"], bytes(held["reply"]))
        if early is not None:
            drain(req, str(length))
            return self.processed(req, envelope, early, received)
        index = data["chunk_index"]
        part = uploads.upload_dir(env, upload_id) / f"{index:07d}.{threading.get_ident()}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        sha256, got = uploads.receive(req.rfile, part, length)
        if got < length:  # the sender went away mid-chunk: nothing confirmed, nothing answered
            part.unlink(missing_ok=True)
            req.close_connection = True
            self._log("9102", msgid, None, None, f"broken after {got} of {length} bytes")
            return None
        fault = env.faults.take("processing", "9102", msgid)
        if sha256 != data["chunk_sha256"] or fault is not None:
            part.unlink(missing_ok=True)
            if fault is not None:
                env.faults.note(
                    fault, f"-1301 for chunk {index} of {upload_id} (bytes intact: {sha256 == data['chunk_sha256']})"
                )
            bad = Outcome.error(
                -1301, f"分片 {index} 的 SHA-256 与内容不符", f"chunk {index}'s SHA-256 does not match its bytes"
            )
            return self.processed(req, envelope, bad, received, fault)
        return self.processed(req, envelope, None, received, part=part, size=got)

    def processed(self, req: PlatformHandler, envelope: dict[str, Any], outcome: Outcome | None, received: Any,
                  fault: Fault | None = None, part: Path | None = None, size: int = 0) -> None:  # fmt: skip
        """Store a 9102 outcome (confirming the chunk when `part` holds it) with its reply, then answer."""
        env = self.env
        msgid = envelope["msgid"]
        with env.ledger.tx() as conn:
            held = gate.replayed(conn, envelope)  # the same chunk resent concurrently: one of them counts
            if held is not None:
                if part is not None:
                    part.unlink(missing_ok=True)
                status, reply = held["http_status"], bytes(held["reply"])
            else:
                if part is not None:
                    data = envelope["input"]
                    late = uploads.chunk_precheck(
                        conn, data["upload_id"], data["chunk_index"], data["chunk_sha256"], size
                    )
                    outcome = late or uploads.confirm_chunk(
                        env, conn, data["upload_id"], data["chunk_index"], data["chunk_sha256"], size, part, received
                    )
                    if late is not None:
                        part.unlink(missing_ok=True)
                assert outcome is not None
                status = 200
                reply = self.reply_bytes(outcome.infcode, msgid, received, outcome)
                store_message(conn, msgid=msgid, sender_code=envelope["sender_code"], infno="9102",
                              request_sha256=gate.request_digest(envelope), http_status=status,
                              infcode=outcome.infcode, reply=reply, at=time_text(received))  # fmt: skip
                log_request(conn, at=time_text(received), infno="9102", msgid=msgid, http_status=status,
                            infcode=outcome.infcode, outcome="processed",
                            fault_id=fault.id if fault else None)  # fmt: skip
        return self.finish(req, "9102", msgid, status, reply)


def send(req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    req.send_response(status)
    req.send_header("Content-Type", "application/json; charset=utf-8")
    req.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        req.send_header(name, value)
    if req.close_connection:
        req.send_header("Connection", "close")
    req.end_headers()
    req.wfile.write(body)


def drain(req: BaseHTTPRequestHandler, length_text: str | None) -> None:
    """Read and drop a body that is not processed, so the connection can carry the next request."""
    if length_text is None or not length_text.isdigit() or int(length_text) > MAX_CHUNK * 4:
        req.close_connection = True
        return
    left = int(length_text)
    while left > 0:
        block = req.rfile.read(min(DRAIN_BLOCK, left))
        if not block:
            req.close_connection = True
            return
        left -= len(block)


def reset(req: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP RST and no reply (SO_LINGER 0): the sender sees a reset, not an
    orderly end, as when a platform's load balancer or process dies mid-request."""
    req.close_connection = True
    conn = req.connection
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError, ValueError):
        req.rfile.close()  # its reference would keep the descriptor open past close()
    with contextlib.suppress(OSError):
        conn.close()


class PlatformHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hipgate-simulator"
    sys_version = ""
    timeout = 120  # an idle keep-alive connection is closed after this
    server: PlatformHTTPServer

    def _dispatch(self) -> None:
        try:
            self.server.platform.handle(self)
        except (ConnectionError, TimeoutError, ssl.SSLError) as exc:
            log.info("connection broke: %s", exc)
            self.close_connection = True
        except Exception:
            log.exception("platform error")
            self.close_connection = True
            with contextlib.suppress(Exception):
                body = self.server.platform.reply_bytes(-9999, None, now_cst(), err_msg="平台内部错误 / internal error")
                send(self, 500, body)

    do_POST = do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class PlatformHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[PlatformHandler], platform: Platform) -> None:
        self.platform = platform
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake in this connection's thread, then the HTTP conversation."""
        request.settimeout(30)
        try:
            tls = self.platform.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", client_address, exc)
            with contextlib.suppress(OSError):
                request.close()
            return
        self.platform.track(tls, True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            self.platform.track(tls, False)
            with contextlib.suppress(OSError):
                tls.close()
