"""`hipgate exchange ...`: the data-exchange middleware seen from the control node. Each command runs
`python -m hipgate.exchange.run` on the middleware host over ssh (as the service user, hipgate.exchange.
deployed) and renders what comes back here; nothing is interpolated into the remote command that was not
validated first, and every word is quoted."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from hipgate.cli_custody import Inv
from hipgate.errors import fail
from hipgate.exchange import deployed
from hipgate.inventory import Inventory, load_inventory
from hipgate.inventory.load import settings_path

exchange_app = typer.Typer(
    help="数据交换中间件：状态、报告、历史文件上传 / the data-exchange middleware: status, report, history upload.",
    no_args_is_help=True,
)
history_app = typer.Typer(help="历史文件 / history files.", no_args_is_help=True)
exchange_app.add_typer(history_app, name="history")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
REGION_RE = re.compile(r"[1-9][0-9]{5}")
MAX_DAYS = 366
FORMATS = ("table", "json", "html")
SSH_OPTIONS = ("ConnectTimeout=10", "ServerAliveInterval=15", "ServerAliveCountMax=2", "ControlMaster=no")
READ_TIMEOUT = 300
EXPORT_TIMEOUT = 6 * 3600
PROGRESS_KEYS = ("records_done", "records_total", "bytes_done", "bytes_total")


# ---------------------------------------------------------------- validation (pure, tested without a lab)


def exchange_settings(inv: Inventory) -> dict[str, Any]:
    """hipgate.exchange of the inventory, or a bilingual error naming the file and the field."""
    exchange = inv.settings.get("exchange")
    if not isinstance(exchange, dict):
        raise fail(
            f"{settings_path(inv.path)}: hipgate.exchange",
            "清单中没有数据交换设置（hipgate.exchange），无法确定中间件。",
            "the inventory has no data-exchange settings (hipgate.exchange), so there is no middleware to ask.",
            "按 inventories/example-province 加上 hipgate.exchange（sender_code、regions 等）并部署中间件。",
            "add hipgate.exchange (sender_code, regions, ...) as in inventories/example-province and deploy it.",
        )
    return exchange


def middleware_host(inv: Inventory) -> str:
    hosts = inv.group_hosts("middleware")
    if not hosts:
        raise fail(
            f"{inv.path / 'hosts.yml'}: all.children.middleware",
            "清单中没有 middleware 组的主机。",
            "the inventory has no host in the middleware group.",
            "在 middleware 组中加入中间件主机。",
            "add the middleware host to the middleware group.",
        )
    return hosts[0]


def parse_day(text: str, option: str) -> dt.date:
    """A day given exactly as YYYY-MM-DD."""
    day = None
    if DAY_RE.fullmatch(text):
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            day = None
    if day is None:
        raise fail(option, f"{text!r} 不是有效日期。", f"{text!r} is not a valid date.",
                   "写成 YYYY-MM-DD，如 2024-03-01。", "write it as YYYY-MM-DD, e.g. 2024-03-01.")  # fmt: skip
    return day


def day_range(date_from: str, date_to: str) -> tuple[dt.date, dt.date]:
    lo, hi = parse_day(date_from, "--from"), parse_day(date_to, "--to")
    if hi < lo:
        raise fail("--from/--to", f"起始日期 {lo} 晚于结束日期 {hi}。", f"the start {lo} is after the end {hi}.",
                   "交换两个日期。", "swap the two dates.")  # fmt: skip
    if (hi - lo).days + 1 > MAX_DAYS:
        raise fail("--from/--to", f"范围超过 {MAX_DAYS} 天。", f"the range is longer than {MAX_DAYS} days.",
                   "分段生成报告。", "make one report per year or shorter.")  # fmt: skip
    return lo, hi


def check_region(inv: Inventory, region: str) -> str:
    regions = [str(r) for r in exchange_settings(inv).get("regions") or []]
    if not REGION_RE.fullmatch(region) or region not in regions:
        raise fail(
            f"{settings_path(inv.path)}: hipgate.exchange.regions",
            f"统筹地区 {region!r} 不在清单的 hipgate.exchange.regions 中（{', '.join(regions) or '空'}）。",
            f"region {region!r} is not in the inventory's hipgate.exchange.regions ({', '.join(regions) or 'empty'}).",
            "选用清单中列出的统筹地区，或先把它加入 hipgate.exchange.regions 并部署。",
            "use a region the inventory lists, or add it to hipgate.exchange.regions and deploy first.",
        )
    return region


def check_year(year: int, today: dt.date | None = None) -> int:
    this_year = (today or dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()).year
    if not 1990 <= year <= this_year:
        raise fail("--year", f"年度 {year} 无效。", f"year {year} is not valid.",
                   f"给出 1990–{this_year} 之间的年度。", f"give a year from 1990 to {this_year}.")  # fmt: skip
    return year


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise fail("--format", f"未知格式 {fmt!r}。", f"unknown format {fmt!r}.",
                   "用 table、json 或 html。", "use table, json or html.")  # fmt: skip
    return fmt


def max_lag_args(inv: Inventory) -> list[str]:
    """The inventory's threshold for the host's status (the inventory is what the operator reads)."""
    limit = exchange_settings(inv).get("max_lag_minutes")
    return ["--max-lag-minutes", str(int(limit))] if isinstance(limit, int) and not isinstance(limit, bool) else []


def remote_argv(inv: Inventory, host: str, command: str) -> list[str]:
    """ssh argv for one command on the middleware host (the inventory's ssh settings, as backups.run)."""
    from hipgate.custody.remote import ssh

    argv = ssh(inv, host, command)
    argv[1:1] = [word for o in SSH_OPTIONS for word in ("-o", o)] + ["-S", "none"]
    return argv


def parse_progress(line: str) -> dict[str, Any] | None:
    """One `--progress json` line of history-upload, or None for anything else (the summary, noise)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("event") != "progress":
        return None
    numbers = [doc.get(k) for k in (*PROGRESS_KEYS, "rate")]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and n >= 0 for n in numbers):
        return None
    eta = doc.get("eta")
    return {**{k: doc[k] for k in (*PROGRESS_KEYS, "rate")},
            "eta": eta if isinstance(eta, (int, float)) and not isinstance(eta, bool) else None}  # fmt: skip


# ---------------------------------------------------------------- the ssh calls


def _remote_failed(host: str, res: subprocess.CompletedProcess[str]) -> typer.Exit:
    """Print the host's own message (the run module's zh/en errors) and pass its exit code on."""
    text = (res.stderr or "").strip()
    if res.returncode == 255:
        err.print(
            f"错误：无法 ssh 到 {host} / error: cannot ssh to {host}: {text[-500:]}", markup=False, highlight=False
        )
        return typer.Exit(4)
    err.print(text[-4000:] or f"{host}: exit {res.returncode}", markup=False, highlight=False)
    return typer.Exit(res.returncode if res.returncode in (2, 3, 4) else 1)


def remote_json(inv: Inventory, host: str, command: str, timeout: int = READ_TIMEOUT) -> dict[str, Any]:
    argv = remote_argv(inv, host, command)
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        err.print(f"错误：{host} 超时（{timeout} s）/ error: {host} timed out after {timeout} s")
        raise typer.Exit(4) from None
    if res.returncode != 0:
        raise _remote_failed(host, res)
    lines = res.stdout.strip().splitlines()
    try:
        doc = json.loads(lines[-1]) if lines else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        err.print(f"错误：{host} 的应答不是 JSON / error: {host} did not answer with JSON")
        raise typer.Exit(4)
    return doc


def _write(text: str, output: Path | None) -> None:
    if output is None:
        out.out(text, end="" if text.endswith("\n") else "\n", highlight=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"已写出 / written: {output}", markup=False, highlight=False)


# ---------------------------------------------------------------- commands


@exchange_app.command("status")
def status(
    inventory: Inv, as_json: Annotated[bool, typer.Option("--json", help="输出 JSON / print JSON")] = False
) -> None:
    """积压、延迟、最近成功、失败、隔离与今日异常；超过延迟阈值时以 3 退出 / backlog, lag, last success,
    failures, quarantine and today's anomalies; exits 3 when the lag is above the threshold."""
    from hipgate.exchange.metrics import alert_line
    from hipgate.exchange.report_render import status_tables, to_json

    inv = load_inventory(inventory)
    exchange_settings(inv)
    host = middleware_host(inv)
    st = remote_json(inv, host, deployed.host_command("status", *max_lag_args(inv)))
    if as_json:
        _write(to_json(st), None)
    else:
        out.print(status_tables(st))
    line = alert_line(st) if isinstance(st.get("lag_seconds"), (int, float)) else None
    if line:
        err.print(line, markup=False, highlight=False)
        raise typer.Exit(3)


@exchange_app.command("report")
def report(
    inventory: Inv,
    date_from: Annotated[str, typer.Option("--from", help="首日（北京时间）YYYY-MM-DD / first day (CST)")],
    date_to: Annotated[str, typer.Option("--to", help="末日 YYYY-MM-DD / last day")],
    fmt: Annotated[str, typer.Option("--format", help="table、json 或 html / table, json or html")] = "table",
    output: Annotated[Path | None, typer.Option("--output", help="写入文件 / write to this file")] = None,
) -> None:
    """每日发送与确认、文件与分片、下载、异常、失败、延迟 p50/p99 与可用率 / per day: records sent and
    confirmed, files and chunks, downloads, anomalies, failures, lag p50/p99 and availability."""
    from hipgate.exchange import report_render

    lo, hi = day_range(date_from, date_to)
    check_format(fmt)
    inv = load_inventory(inventory)
    exchange_settings(inv)
    host = middleware_host(inv)
    doc = remote_json(inv, host, deployed.host_command("report", "--from", lo.isoformat(), "--to", hi.isoformat()))
    if fmt == "json":
        _write(report_render.to_json(doc), output)
    elif fmt == "html":
        source = {"中间件 / middleware": host, "清单 / inventory": str(inv.path)}
        _write(report_render.report_html(doc, source), output)
    elif output is not None:
        with output.open("w", encoding="utf-8") as fh:
            Console(file=fh, width=220, soft_wrap=True).print(report_render.report_table(doc))
        err.print(f"已写出 / written: {output}", markup=False, highlight=False)
    else:
        out.print(report_render.report_table(doc))


@history_app.command("upload")
def history_upload(
    inventory: Inv,
    region: Annotated[str, typer.Option("--region", help="统筹地区（清单 hipgate.exchange.regions）/ pooling region")],
    year: Annotated[int, typer.Option("--year", help="年度 / year")],
) -> None:
    """导出并上传一个统筹地区一年的历史文件，显示进度（可中断，再次运行从平台已确认的分片续传）/ export and
    upload a region-year's history files with progress (interruptible: a second run resumes from the chunks
    the platform confirmed)."""
    inv = load_inventory(inventory)
    check_region(inv, region)
    check_year(year)
    host = middleware_host(inv)
    with err.status(f"导出 / exporting {region} {year} @ {host} ..."):
        exported = remote_json(inv, host, deployed.host_command("history-export", "--region", region, "--year",
                                                                str(year)), timeout=EXPORT_TIMEOUT)  # fmt: skip
    files = exported.get("files") or []
    err.print(
        f"导出 / exported: {len(files)} 个文件 / files, 已上传跳过 / skipped: {len(exported.get('skipped') or [])}"
    )
    command = deployed.host_command("history-upload", "--region", region, "--year", str(year), "--progress", "json")
    code, summary = _upload_with_progress(inv, host, command)
    if summary:
        err.print(
            f"完成 / completed: {', '.join(summary.get('completed') or []) or '-'}; "
            f"已在平台 / already there: {', '.join(summary.get('skipped') or []) or '-'}; "
            f"分片 / chunks sent: {summary.get('chunks_sent', 0)}",
            markup=False,
            highlight=False,
        )
    if code != 0:
        raise typer.Exit(code if code in (2, 3, 4) else 1)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[records]}"),
        TextColumn("{task.fields[size]}"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("ETA {task.fields[eta]}"),
        console=err,
    )


def progress_fields(p: dict[str, Any]) -> dict[str, str]:
    """The bar's texts for one progress update: records, bytes, rate and ETA."""
    eta = p["eta"]
    return {
        "records": f"~{p['records_done']}/{p['records_total']} 条 / records",
        "size": f"{p['bytes_done'] / 1e6:.1f}/{p['bytes_total'] / 1e6:.1f} MB",
        "rate": f"{p['rate'] / 1e6:.2f} MB/s",
        "eta": "?" if eta is None else str(dt.timedelta(seconds=round(eta))),
    }


def _upload_with_progress(inv: Inventory, host: str, command: str) -> tuple[int, dict[str, Any] | None]:
    """Run the upload, drawing its progress lines; (exit code, the summary line)."""
    argv = remote_argv(inv, host, command)
    summary: dict[str, Any] | None = None
    # stderr to a file: a chatty host cannot fill a pipe nobody reads while the bar reads stdout.
    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors, _bar() as bar, \
            subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, text=True) as proc:  # fmt: skip
        task = bar.add_task("上传 / uploading", total=None, records="", size="", rate="", eta="?")
        assert proc.stdout is not None
        for line in proc.stdout:
            p = parse_progress(line)
            if p is not None:
                bar.update(task, total=p["bytes_total"] or None, completed=p["bytes_done"], **progress_fields(p))
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            summary = doc if isinstance(doc, dict) else summary
        code = proc.wait()
        errors.seek(0)
        stderr = errors.read()
    if code != 0:
        _remote_failed(host, subprocess.CompletedProcess(argv, code, "", stderr))
    return code, summary
