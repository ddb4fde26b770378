"""The middleware's runs, one process each (systemd timers start them; the lead wires `hipgate exchange`):

    python -m hipgate.exchange.run incremental    --config /etc/hipgate/exchange/middleware.json
    python -m hipgate.exchange.run downloads      --config F
    python -m hipgate.exchange.run history-export --config F --region 440106 --year 2023 [--dir D]
    python -m hipgate.exchange.run history-upload --config F --region 440106 --year 2023

Exit codes: 0 done; 2 the config is wrong (file, field and fix named); 3 the platform refused some
message (left pending, the reason logged and stored); 4 the platform, the relay, OpenBao or the database
cannot be reached (everything left pending, resent by the next run).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hipgate.errors import UserError
from hipgate.exchange import db, downloads, history, incremental
from hipgate.exchange.dataset import SCHEMA_NAME_RE, load_dataset
from hipgate.exchange.interface import SENDER_CODE_RE, load_interface
from hipgate.exchange.jsonconfig import Fields, raise_problems, read_json
from hipgate.exchange.platform_client import RelayClient, RetryPolicy, Unreachable

log = logging.getLogger("hipgate.exchange.run")

EXAMPLE = """{
  "sender_code": "44000001",
  "database": {"openbao": {"vault_addr": "https://10.20.0.5:8200", "ca": "/etc/hipgate/pki/ca.crt",
               "cert": "/etc/hipgate/pki/host.crt", "key": "/etc/hipgate/pki/host.key",
               "host_name": "middleware-1", "system": "exchange", "role": "middleware",
               "address": "10.20.0.3", "port": 5432, "database": "exchange"}},
  "relay": {"url": "https://10.20.0.2:8443", "ca": "/etc/hipgate/pki/ca.crt",
            "cert": "/etc/hipgate/pki/host.crt", "key": "/etc/hipgate/pki/host.key"},
  "retry": {"attempts": 6, "base": 1, "cap": 60},
  "batch_size": 500, "download_limit": 500,
  "history": {"dir": "/var/lib/hipgate-exchange/history", "chunk_size": 4194304}
}
(or "database": {"conninfo": "host=... dbname=exchange user=..."} where no OpenBao is used, e.g. tests)"""


@dataclass(frozen=True)
class MiddlewareConfig:
    file: Path
    sender_code: str
    schema: str
    conninfo: str | None
    openbao: db.OpenBaoLogin | None
    relay_url: str
    relay_ca: Path
    relay_cert: Path
    relay_key: Path
    relay_timeout: float
    retry: RetryPolicy
    batch_size: int
    download_limit: int
    history_dir: Path
    chunk_size: int
    interface: Path | None
    datasets: Path | None


def load_config(file: Path | str) -> MiddlewareConfig:
    file = Path(file)
    doc, problems = read_json(file)
    raise_problems(problems)
    top = Fields(file, doc)
    sender = top.text("sender_code", SENDER_CODE_RE.pattern, ("发送方编码", "sender code"), example='"44000001"')
    schema = top.text("schema", SCHEMA_NAME_RE.pattern, ("模式名", "schema name"), "exchange", '"exchange"')
    dbs = top.section("database")
    conninfo = dbs.get("conninfo", str, None)
    bao = dbs.section("openbao", None) if "openbao" in dbs.doc else None
    login = None
    if bao is not None:
        login = db.OpenBaoLogin(
            vault_addr=bao.text(
                "vault_addr",
                r"https://[A-Za-z0-9.\[\]:-]+",
                ("OpenBao 地址", "OpenBao URL"),
                example='"https://10.20.0.5:8200"',
            ),
            ca=bao.file_path("ca"),
            cert=bao.file_path("cert"),
            key=bao.file_path("key"),
            host_name=bao.text(
                "host_name", r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", ("主机名", "host name"), example='"middleware-1"'
            ),
            system=bao.text("system", r"[a-z][a-z0-9_]{0,30}", ("系统名", "system name"), example='"exchange"'),
            role=bao.text("role", r"[a-z][a-z0-9_]{0,30}", ("角色名", "role name"), example='"middleware"'),
            address=bao.text(
                "address", r"[A-Za-z0-9.:-]{1,253}", ("数据库地址", "database address"), example='"10.20.0.3"'
            ),
            port=bao.number("port", 1, 65535, 5432),
            database=bao.text(
                "database", r"[a-z_][a-z0-9_]{0,62}", ("库名", "database name"), "exchange", '"exchange"'
            ),
        )  # type: ignore[arg-type]
        bao.done()
    if (conninfo is None) == (bao is None):
        dbs.bad(
            "",
            "应恰好给出 conninfo 或 openbao 之一。",
            "give exactly one of conninfo and openbao.",
            "真实主机用 openbao（见示例），测试用 conninfo。",
            "use openbao on a real host (see the example), conninfo in tests.",
        )
    dbs.done()
    relay = top.section("relay")
    url = relay.text(
        "url", r"https://[A-Za-z0-9.\[\]:-]+", ("HTTPS 地址", "HTTPS URL"), example='"https://10.20.0.2:8443"'
    )
    cfg = dict(
        file=file,
        sender_code=sender,
        schema=schema,
        conninfo=conninfo,
        openbao=login,
        relay_url=url,
        relay_ca=relay.file_path("ca"),
        relay_cert=relay.file_path("cert"),
        relay_key=relay.file_path("key"),
        relay_timeout=relay.number("timeout", 1, 3600, 120, integer=False),
    )
    relay.done()
    retry = top.section("retry", {})
    cfg["retry"] = RetryPolicy(
        attempts=retry.number("attempts", 1, 100, 6),
        base=retry.number("base", 0, 600, 1.0, integer=False),
        cap=retry.number("cap", 0, 3600, 60.0, integer=False),
    )
    retry.done()
    cfg["batch_size"] = top.number("batch_size", 1, incremental.MAX_BATCH, incremental.MAX_BATCH)
    cfg["download_limit"] = top.number("download_limit", 1, 500, 500)
    hist = top.section("history", {})
    cfg["history_dir"] = Path(hist.get("dir", str, "/var/lib/hipgate-exchange/history") or ".")
    cfg["chunk_size"] = hist.number("chunk_size", history.MIN_CHUNK, history.MAX_CHUNK, history.DEFAULT_CHUNK)
    hist.done()
    cfg["interface"] = top.file_path("interface", None)
    datasets = top.get("datasets", str, None)
    cfg["datasets"] = Path(datasets) if datasets else None
    top.done()
    raise_problems(top.problems)
    return MiddlewareConfig(**cfg)  # type: ignore[arg-type]


def open_exchange(cfg: MiddlewareConfig) -> incremental.Exchange:
    conninfo = cfg.conninfo if cfg.conninfo is not None else db.login_conninfo(cfg.openbao)  # type: ignore[arg-type]
    conn = db.connect(conninfo)
    client = RelayClient(cfg.relay_url, cfg.relay_ca, cfg.relay_cert, cfg.relay_key, cfg.relay_timeout, cfg.retry)
    return incremental.Exchange(
        conn,
        client,
        load_dataset(cfg.datasets),
        load_interface(cfg.interface),
        cfg.sender_code,
        cfg.schema,
        cfg.batch_size,
    )


def _summary(result: Any) -> str:
    return json.dumps({k: v for k, v in vars(result).items() if not k.startswith("_")}, ensure_ascii=False, default=str)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hipgate.exchange.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["incremental", "downloads", "history-export", "history-upload"])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--region", help="6-digit division (history)")
    parser.add_argument("--year", type=int, help="year (history)")
    parser.add_argument("--dir", type=Path, help="history directory (default: the config's history.dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    if args.what.startswith("history") and not (
        args.region and re.fullmatch(r"[1-9][0-9]{5}", args.region) and args.year
    ):
        print(
            "错误：历史文件需要 --region（6 位区划）与 --year。\nerror: history needs --region (6 digits) and --year.",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = load_config(args.config)
        ex = open_exchange(cfg)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    try:
        if args.what == "incremental":
            result: Any = incremental.run(ex)
        elif args.what == "downloads":
            result = downloads.run(ex, cfg.download_limit)
        elif args.what == "history-export":
            result = history.export(ex, args.region, args.year, args.dir or cfg.history_dir, cfg.chunk_size)
        else:
            result = history.upload(ex, args.region, args.year, progress=_progress)
    except Unreachable as exc:
        print(f"错误：{exc.zh}\nerror: {exc.en}", file=sys.stderr)
        return 4
    finally:
        ex.conn.close()
        ex.client.close()
    print(_summary(result), flush=True)
    for error in result.errors:
        print(f"错误 / error: {error}", file=sys.stderr)
    return int(result.exit_code)


def _progress(p: history.Progress) -> None:
    eta = f"{p.eta:.0f} s" if p.eta is not None else "?"
    sys.stderr.write(
        f"\r{p.bytes_done}/{p.bytes_total} B, ~{p.records_done}/{p.records_total} records, "
        f"{p.rate / 1e6:.1f} MB/s, ETA {eta}  "
    )
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
