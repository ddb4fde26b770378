"""The middleware's runs, one process each (systemd timers start them; `hipgate exchange` on the control
node runs the readers and the history upload over ssh):

    python -m hipgate.exchange.run incremental    --config /etc/hipgate/exchange/middleware.json
    python -m hipgate.exchange.run downloads      --config F
    python -m hipgate.exchange.run history-export --config F --region 440106 --year 2023 [--dir D]
    python -m hipgate.exchange.run history-upload --config F --region 440106 --year 2023 [--progress json]
    python -m hipgate.exchange.run status         --config F [--max-lag-minutes N]
    python -m hipgate.exchange.run report         --config F --from 2024-03-01 --to 2024-03-31
    python -m hipgate.exchange.run metrics        --config F --textfile /var/lib/prometheus/node-exporter/x.prom
    python -m hipgate.exchange.run source-summary --config F [--region 440106] [--year 2023]  # what the platform holds

Exit codes: 0 done; 2 the config or an argument is wrong (file, field and fix named); 3 the platform refused
some message (left pending, the reason logged and stored); 4 the platform, the relay, OpenBao or the
database cannot be reached (everything left pending, resent by the next run). `status` and `report` print
one JSON document on stdout; `metrics` writes the textfile and exits 0 even when it alerts (the ALERT line
goes to the journal; the alert itself is in the file), 4 when the database cannot be read (the file then
says `hipgate_exchange_up 0`). With `--progress json`, history-upload prints one JSON line per confirmed
chunk on stdout (`{"event": "progress", ...}`) before its summary line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from hipgate.errors import UserError
from hipgate.exchange import db, downloads, history, incremental, ledger, metrics, report, source, status
from hipgate.exchange.dataset import SCHEMA_NAME_RE, load_dataset
from hipgate.exchange.interface import SENDER_CODE_RE, load_interface
from hipgate.exchange.jsonconfig import Fields, raise_problems, read_json
from hipgate.exchange.platform_client import RelayClient, RetryPolicy, Unreachable

log = logging.getLogger("hipgate.exchange.run")
DEFAULT_MAX_LAG_MINUTES = 30
MAX_LAG_LIMIT = 7 * 24 * 60  # the inventory's bound of hipgate.exchange.max_lag_minutes
DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
PROGRESS_FIELDS = ("records_done", "records_total", "bytes_done", "bytes_total", "rate", "eta")
RUNS = ("incremental", "downloads", "history-export", "history-upload")
READERS = ("status", "report", "metrics")
# What the platform should hold of a region-year (hipgate.exchange.source), for comparing with its ledger.
SOURCE = "source-summary"

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
  "history": {"dir": "/var/lib/hipgate-exchange/history", "chunk_size": 4194304},
  "max_lag_minutes": 30
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
    max_lag_minutes: int = DEFAULT_MAX_LAG_MINUTES


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
    cfg["max_lag_minutes"] = top.number("max_lag_minutes", 1, MAX_LAG_LIMIT, DEFAULT_MAX_LAG_MINUTES)
    top.done()
    raise_problems(top.problems)
    return MiddlewareConfig(**cfg)  # type: ignore[arg-type]


def open_db(cfg: MiddlewareConfig) -> psycopg.Connection[Any]:
    conninfo = cfg.conninfo if cfg.conninfo is not None else db.login_conninfo(cfg.openbao)  # type: ignore[arg-type]
    return db.connect(conninfo)


def open_exchange(cfg: MiddlewareConfig) -> incremental.Exchange:
    conn = open_db(cfg)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hipgate.exchange.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=[*RUNS, *READERS, SOURCE])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--region", help="6-digit division (history)")
    parser.add_argument("--year", type=int, help="year (history)")
    parser.add_argument("--dir", type=Path, help="history directory (default: the config's history.dir)")
    parser.add_argument("--progress", choices=["text", "json"], default="text", help="history-upload progress")
    parser.add_argument("--from", dest="date_from", help="report: first day YYYY-MM-DD (China Standard Time)")
    parser.add_argument("--to", dest="date_to", help="report: last day YYYY-MM-DD")
    parser.add_argument("--textfile", type=Path, help="metrics: the .prom file to write")
    parser.add_argument("--max-lag-minutes", type=int, help="status, metrics: alert threshold (default: config)")
    return parser


def parse_day(text: str | None) -> dt.date | None:
    """A day given as exactly YYYY-MM-DD, or None."""
    if text is None or not DAY_RE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def _argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments of this subcommand (zh and en), or None."""
    if args.what == SOURCE and args.region is not None and not re.fullmatch(r"[1-9][0-9]{5}", args.region):
        return "错误：--region 应为 6 位区划。\nerror: --region must be a 6-digit division."
    if args.what.startswith("history") and not (
        args.region and re.fullmatch(r"[1-9][0-9]{5}", args.region) and args.year
    ):
        return (
            "错误：历史文件需要 --region（6 位区划）与 --year。\nerror: history needs --region (6 digits) and --year."
        )
    if args.what == "report":
        lo, hi = parse_day(args.date_from), parse_day(args.date_to)
        if lo is None or hi is None:
            return "错误：报告需要 --from 与 --to（YYYY-MM-DD）。\nerror: report needs --from and --to (YYYY-MM-DD)."
        try:
            report.days_between(lo, hi)
        except ValueError as exc:
            return f"错误 / error: {exc}"
    if args.max_lag_minutes is not None and not 1 <= args.max_lag_minutes <= MAX_LAG_LIMIT:
        return (f"错误：--max-lag-minutes 应在 1–{MAX_LAG_LIMIT} 之间。\n"
                f"error: --max-lag-minutes must be from 1 to {MAX_LAG_LIMIT}.")  # fmt: skip
    if args.what == "metrics":
        path = args.textfile
        if path is None or path.suffix != ".prom" or not path.parent.is_dir():
            return (
                "错误：metrics 需要 --textfile，文件名以 .prom 结尾、所在目录已存在（node exporter 只读 *.prom）。\n"
                "error: metrics needs --textfile, a name ending in .prom in an existing directory "
                "(the node exporter reads *.prom only)."
            )
    return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    problem = _argument_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.what in READERS:
        return read(args)
    try:
        cfg = load_config(args.config)
        ex = open_exchange(cfg)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    try:
        if args.what == SOURCE:
            print(json.dumps(source.source_summary(ex, args.region, args.year), ensure_ascii=False))
            return 0
        return _run(ex, cfg, args)
    finally:
        ex.conn.close()
        ex.client.close()


def _run(ex: incremental.Exchange, cfg: MiddlewareConfig, args: argparse.Namespace) -> int:
    """One recorded run (hipgate_run: started, then its outcome)."""
    run_id = ledger.run_started(ex.conn, cfg.schema, args.what)
    try:
        result = _dispatch(ex, cfg, args)
    except Unreachable as exc:
        _finished(ex, cfg, run_id, "unreachable", 4, {"error": exc.en})
        print(f"错误：{exc.zh}\nerror: {exc.en}", file=sys.stderr)
        return 4
    except psycopg.OperationalError as exc:  # the database went away mid-run: nothing to record it in
        print(f"错误：交换库连接中断：{exc}\nerror: lost the exchange database: {exc}", file=sys.stderr)
        return 4
    except BaseException:
        _finished(ex, cfg, run_id, "error", 1, None)
        raise
    code = int(result.exit_code)
    summary = _summary(result)
    _finished(ex, cfg, run_id, "ok" if code == 0 else "refused", code, json.loads(summary))
    print(summary, flush=True)
    for error in result.errors:
        print(f"错误 / error: {error}", file=sys.stderr)
    return code


def _dispatch(ex: incremental.Exchange, cfg: MiddlewareConfig, args: argparse.Namespace) -> Any:
    if args.what == "incremental":
        return incremental.run(ex)
    if args.what == "downloads":
        return downloads.run(ex, cfg.download_limit)
    if args.what == "history-export":
        return history.export(ex, args.region, args.year, args.dir or cfg.history_dir, cfg.chunk_size)
    return history.upload(ex, args.region, args.year, progress=_json_progress if args.progress == "json" else _progress)


def _finished(ex: incremental.Exchange, cfg: MiddlewareConfig, run_id: int, state: str, code: int,
              summary: Any) -> None:  # fmt: skip
    try:
        ledger.run_finished(ex.conn, cfg.schema, run_id, state, code, summary)
    except psycopg.Error as exc:
        log.warning("could not record the run's outcome / 未能记录运行结果: %s", exc)


def read(args: argparse.Namespace) -> int:
    """status, report, metrics: read the bookkeeping only (no relay, no lock, no run row)."""
    try:
        cfg = load_config(args.config)
        limit = args.max_lag_minutes or cfg.max_lag_minutes
        conn = open_db(cfg)
    except UserError as exc:
        print(exc, file=sys.stderr)
        if args.what == "metrics":
            metrics.write_textfile(args.textfile, metrics.exposition(None))
        return exc.exit_code
    try:
        if args.what == "report":
            doc = report.report(conn, cfg.schema, parse_day(args.date_from), parse_day(args.date_to))  # type: ignore[arg-type]
        else:
            doc = status.status(conn, cfg.schema, limit)
    except psycopg.Error as exc:
        print(f"错误：无法读取交换库：{exc}\nerror: cannot read the exchange database: {exc}", file=sys.stderr)
        if args.what == "metrics":
            metrics.write_textfile(args.textfile, metrics.exposition(None))
        return 4
    finally:
        conn.close()
    if args.what == "metrics":
        metrics.write_textfile(args.textfile, metrics.exposition(doc))
        line = metrics.alert_line(doc)
        if line:
            print(line, file=sys.stderr, flush=True)
        return 0
    print(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), flush=True)
    return 0


def _json_progress(p: history.Progress) -> None:
    """One machine-readable line per update, on stdout (the control node draws the bar)."""
    line = {"event": "progress", **{k: getattr(p, k) for k in PROGRESS_FIELDS}}
    sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _progress(p: history.Progress) -> None:
    eta = f"{p.eta:.0f} s" if p.eta is not None else "?"
    sys.stderr.write(
        f"\r{p.bytes_done}/{p.bytes_total} B, ~{p.records_done}/{p.records_total} records, "
        f"{p.rate / 1e6:.1f} MB/s, ETA {eta}  "
    )
    sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())
