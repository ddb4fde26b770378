"""`python -m hipgate.simulator …`: run the simulated national platform and command it.

  serve --config FILE                          run until SIGTERM/SIGINT
  fault KIND [--infno N] [--count N] [--seconds T] [--delay S] [--retry-after S] [--after-bytes B] [--items N]
  faults [--clear]                             what is armed and what fired
  ledger-summary                               counts and fingerprints per day and record type (JSON)
  publish-forms N | publish-cross-visits N | publish-catalog CODE
  files                                        history files and how their reading went

Every command but serve takes --config FILE (the admin address, the state directory) or --admin URL;
ledger-summary reads the state directory directly (--state-dir works without a running server).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from hipgate.simulator.config import ConfigError, load_config
from hipgate.simulator.faults import STAGES


def _admin_url(args: argparse.Namespace) -> str:
    if args.admin:
        return str(args.admin).rstrip("/")
    if not args.config:
        raise SystemExit("--config FILE or --admin URL / 需要 --config 或 --admin")
    cfg = load_config(Path(args.config))
    return f"http://{cfg.admin_host}:{cfg.admin_port}"


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30) -> Any:
    """One control API call; its JSON answer (an error answer raises SystemExit with its text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{method} {path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}") from None
    except urllib.error.URLError as exc:
        raise SystemExit(f"the simulator's control API at {base} does not answer: {exc.reason}") from None


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def serve(args: argparse.Namespace) -> int:
    from hipgate.simulator.app import Simulator

    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(name)s %(message)s")
    sim = Simulator(load_config(Path(args.config)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim.start()
    print(f"listening on {sim.config.listen_host}:{sim.platform.port}, admin {sim.config.admin_host}:{sim.admin_port}",
          flush=True)  # fmt: skip
    stop.wait()
    sim.stop()
    return 0


def ledger_summary(args: argparse.Namespace) -> int:
    from hipgate.simulator.ledger import ledger_summary as summarise
    from hipgate.simulator.ledger import open_readonly

    if args.state_dir:
        state = Path(args.state_dir)
    elif args.config:
        state = load_config(Path(args.config)).state_dir
    else:
        _print(call(_admin_url(args), "GET", "/ledger/summary"))
        return 0
    conn = open_readonly(state)
    try:
        _print(summarise(conn))
    finally:
        conn.close()
    return 0


def fault(args: argparse.Namespace) -> int:
    spec: dict[str, Any] = {"kind": args.kind}
    for name in ("infno", "count", "seconds", "delay", "retry_after", "after_bytes", "items"):
        value = getattr(args, name)
        if value is not None:
            spec[name] = value
    _print(call(_admin_url(args), "POST", "/faults", spec))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hipgate.simulator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--config", help="the simulator's config file")
        if name != "serve":
            p.add_argument("--admin", help="control API URL (default: from --config)")
        return p

    p = command("serve", "run the simulated platform")
    p.add_argument("--log-level", default="info")
    p = command("fault", "arm a fault")
    p.add_argument("kind", choices=sorted(STAGES))
    p.add_argument("--infno")
    p.add_argument("--count", type=int)
    p.add_argument("--seconds", type=float)
    p.add_argument("--delay", type=float)
    p.add_argument("--retry-after", type=int)
    p.add_argument("--after-bytes", type=int)
    p.add_argument("--items", type=int)
    p = command("faults", "list armed faults and what fired")
    p.add_argument("--clear", action="store_true", help="cancel every fault")
    p = command("ledger-summary", "counts and fingerprints per day and record type")
    p.add_argument("--state-dir", help="read this state directory (no server needed)")
    p = command("publish-forms", "publish N fee-check forms")
    p.add_argument("n", type=int)
    p = command("publish-cross-visits", "publish N cross-province visits of the province's insured")
    p.add_argument("n", type=int)
    p = command("publish-catalog", "publish a new version of a catalogue")
    p.add_argument("catalog_code")
    command("files", "history files and how their reading went")
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            if not args.config:
                parser.error("serve needs --config FILE")
            return serve(args)
        if args.command == "ledger-summary":
            return ledger_summary(args)
        if args.command == "fault":
            return fault(args)
        base = _admin_url(args)
        if args.command == "faults":
            _print(call(base, "DELETE", "/faults") if args.clear else call(base, "GET", "/faults"))
        elif args.command == "publish-forms":
            _print(call(base, "POST", "/publish", {"kind": "fee_check_form", "count": args.n}))
        elif args.command == "publish-cross-visits":
            _print(call(base, "POST", "/publish", {"kind": "cross_visit", "count": args.n}))
        elif args.command == "publish-catalog":
            _print(call(base, "POST", "/publish", {"kind": "catalog", "catalog_code": args.catalog_code}))
        elif args.command == "files":
            _print(call(base, "GET", "/files"))
    except ConfigError as exc:
        print(f"config: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
