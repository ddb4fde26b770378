"""A running simulator: the parts wired together, started and stopped as one (by the CLI's `serve`
and by the tests, which run it in-process on 127.0.0.1)."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from hipgate.simulator import catalog, outbox, publish, uploads
from hipgate.simulator.admin import AdminServer
from hipgate.simulator.config import Config
from hipgate.simulator.context import Env, now_cst, secret_of, time_text
from hipgate.simulator.contract import Contract, load_contract
from hipgate.simulator.faults import Fault, FaultBook
from hipgate.simulator.ledger import Ledger, day_records, ledger_summary
from hipgate.simulator.server import Platform, tls_context

log = logging.getLogger("hipgate.simulator")


class Simulator:
    def __init__(self, config: Config, contract: Contract | None = None) -> None:
        self.config = config
        ledger = Ledger(config.state_dir)
        self.env = Env(
            config=config,
            contract=contract or load_contract(config.interface),
            ledger=ledger,
            faults=FaultBook(),
            uploads_dir=config.state_dir / "uploads",
            secret=secret_of(config.seed),
            schedule_parse=self._schedule,
        )
        with ledger.tx() as conn:
            catalog.seed(conn, self.env.contract.dataset, config.province)
        self.platform = Platform(self.env, tls_context(config.cert, config.key, config.client_ca))
        self.admin: AdminServer | None = None
        self._parse_queue: queue.Queue[str | None] = queue.Queue()
        self._parser = threading.Thread(target=self._parse_loop, name="history-files", daemon=True)
        self._idle = threading.Event()
        self._idle.set()

    # ------------------------------------------------------------ life

    def start(self) -> None:
        self._parser.start()
        with self.env.ledger.read() as conn:
            unread = conn.execute(
                "SELECT upload_id FROM files WHERE status = 'complete' AND parse_status IN ('pending', 'parsing')"
            ).fetchall()
        for row in unread:  # a file completed before a restart is read now
            self._schedule(row[0])
        self.platform.open()
        self.admin = AdminServer((self.config.admin_host, self.config.admin_port), self)
        self.admin.start()
        log.info("platform on %s:%s, admin on %s:%s", self.config.listen_host, self.platform.port,
                 self.config.admin_host, self.admin.server_address[1])  # fmt: skip

    def stop(self) -> None:
        if self.admin is not None:
            self.admin.stop()
        self.platform.stop()
        self._parse_queue.put(None)
        if self._parser.is_alive():
            self._parser.join(timeout=30)
        self.env.ledger.close()

    @property
    def admin_port(self) -> int:
        assert self.admin is not None
        return int(self.admin.server_address[1])

    # ------------------------------------------------------------ history files

    def _schedule(self, upload_id: str) -> None:
        self._idle.clear()
        self._parse_queue.put(upload_id)

    def _parse_loop(self) -> None:
        while True:
            upload_id = self._parse_queue.get()
            if upload_id is None:
                return
            try:
                uploads.parse_file(self.env, upload_id)
            except Exception:
                log.exception("reading history file %s failed", upload_id)
                with self.env.ledger.tx() as conn:
                    conn.execute("UPDATE files SET parse_status = 'failed' WHERE upload_id = ?", (upload_id,))
            if self._parse_queue.empty():
                self._idle.set()

    def wait_files(self, timeout: float = 60) -> bool:
        """True when every completed file has been read (for tests)."""
        return self._idle.wait(timeout)

    # ------------------------------------------------------------ the control API

    def arm(self, spec: dict[str, Any]) -> dict[str, Any]:
        fault: Fault = self.env.faults.arm(spec)
        if fault.kind == "down":
            self.platform.down(fault)
        return fault.as_dict(fault.armed_at)

    def summary(self) -> dict[str, Any]:
        with self.env.ledger.read() as conn:
            return ledger_summary(conn)

    def day_records(self, record_type: str, day: str) -> list[dict[str, Any]]:
        with self.env.ledger.read() as conn:
            return day_records(conn, record_type, day)

    def files(self) -> list[dict[str, Any]]:
        with self.env.ledger.read() as conn:
            return uploads.files_listing(conn)

    def outbox(self, infno: str | None) -> list[dict[str, Any]]:
        with self.env.ledger.read() as conn:
            return outbox.listing(conn, infno)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        with self.env.ledger.read() as conn:
            return [dict(r) for r in conn.execute("SELECT * FROM requests WHERE id > ? ORDER BY id", (since,))]

    def publish(self, spec: dict[str, Any]) -> dict[str, Any]:
        kind = spec.get("kind")
        now = now_cst()
        with self.env.ledger.tx() as conn:
            if kind == "catalog":
                code = spec.get("catalog_code")
                if not isinstance(code, str):
                    raise ValueError("catalog_code: the catalogue to publish a new version of")
                return {"kind": kind, "version": catalog.publish_version(conn, code, time_text(now))}
            count = spec.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
                raise ValueError("count: a whole number from 1 to 100000")
            keys = publish.publish_generated(self.env, conn, str(kind), count, now)
        return {"kind": kind, "published": keys}
