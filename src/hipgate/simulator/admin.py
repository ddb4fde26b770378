"""The control API: plain HTTP with JSON on a loopback port of its own (config `admin`), never on the
platform port, for the lab's tests and the CLI.

  GET    /health                    {"listening": bool, "port": n}
  GET    /faults                    every fault armed, with what fired
  POST   /faults                    arm one: {"kind", "infno"?, "count"?, "seconds"?, <params>} -> the fault
  DELETE /faults[/<id>]             cancel one or all
  GET    /ledger/summary            counts and fingerprints per day and record type
  GET    /ledger/records?record_type=setl&day=2024-03-05   that day's records: key, updt_time, fingerprint
  GET    /files                     history files and how their reading went
  GET    /outbox[?infno=5201]       published items and their delivery
  GET    /requests[?since=<id>]     every request the platform got, with its outcome
  POST   /publish                   {"kind": "fee_check_form" | "cross_visit", "count": n} or
                                    {"kind": "catalog", "catalog_code": c}
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hipgate.simulator.faults import FaultSpecError, parse_spec

if TYPE_CHECKING:
    from hipgate.simulator.app import Simulator

log = logging.getLogger("hipgate.simulator.admin")
MAX_BODY = 1 << 20


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: AdminServer

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise AdminError(413, "body too large")
        try:
            value = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise AdminError(400, "the body must be JSON") from None
        if not isinstance(value, dict):
            raise AdminError(400, "the body must be a JSON object")
        return value

    def _answer(self, status: int, value: Any) -> None:
        body = json.dumps(value, ensure_ascii=False, indent=1, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            status, value = route(self.server.simulator, method, url.path.rstrip("/") or "/", query, self._body)
        except AdminError as exc:
            status, value = exc.status, {"error": str(exc)}
        except FaultSpecError as exc:
            status, value = 400, {"error": str(exc)}
        self._answer(status, value)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def route(sim: Simulator, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    if (method, path) == ("GET", "/health"):
        return 200, {"listening": sim.platform.listening, "port": sim.platform.port}
    if (method, path) == ("GET", "/faults"):
        return 200, sim.env.faults.listing()
    if (method, path) == ("POST", "/faults"):
        return 201, sim.arm(parse_spec(body(), sim.env.config.retry_after))
    if method == "DELETE" and (path == "/faults" or path.startswith("/faults/")):
        tail = path.removeprefix("/faults").strip("/")
        if tail and not tail.isdigit():
            raise AdminError(404, "no such fault")
        return 200, {"cancelled": sim.env.faults.cancel(int(tail) if tail else None)}
    if (method, path) == ("GET", "/ledger/summary"):
        return 200, sim.summary()
    if (method, path) == ("GET", "/ledger/records"):
        if "record_type" not in query or "day" not in query:
            raise AdminError(400, "record_type and day are required")
        return 200, sim.day_records(query["record_type"], query["day"])
    if (method, path) == ("GET", "/files"):
        return 200, sim.files()
    if (method, path) == ("GET", "/outbox"):
        return 200, sim.outbox(query.get("infno"))
    if (method, path) == ("GET", "/requests"):
        return 200, sim.requests(int(query.get("since", 0) or 0))
    if (method, path) == ("POST", "/publish"):
        spec = body()
        try:
            return 201, sim.publish(spec)
        except (ValueError, KeyError) as exc:
            raise AdminError(400, str(exc)) from None
    raise AdminError(404, f"no {method} {path}")


class AdminServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, AdminHandler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.shutdown()
        self.server_close()
