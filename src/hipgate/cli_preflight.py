"""`hipgate preflight network|terminal`: go-live checks with a table, a JSON record and an HTML page."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hipgate.cli_custody import Inv
from hipgate.errors import fail
from hipgate.inventory import load_inventory
from hipgate.paths import project_root

preflight_app = typer.Typer(help="上线前检查 / go-live preflight checks.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Limit = Annotated[str | None, typer.Option(help="仅检查这些主机（逗号分隔）/ only these hosts (comma-separated)")]
OutDir = Annotated[Path | None, typer.Option("--out", help="结果目录 / results directory")]
AsJson = Annotated[bool, typer.Option("--json", help="向标准输出打印 JSON / print JSON to stdout")]


class SshConnection:
    """Runs one shell command on an inventory host the way Ansible reaches it."""

    def __init__(self, inv: Any, host: str) -> None:
        self.inv, self.host = inv, host

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        from hipgate.custody.remote import ssh

        return subprocess.run(ssh(self.inv, self.host, command), capture_output=True, text=True, timeout=120)


def write_record(
    kind: str,
    titles: dict[str, tuple[str, str]],
    inv: Any,
    hosts: list[str],
    rows: list[dict],
    seconds: float,
    out_dir: Path,
) -> tuple[Path, Path]:
    """preflight-<kind>.json (+ .sha256) and preflight-<kind>.html in out_dir."""
    from hipgate.report.write import template

    kind_titles = {"network": ("网络", "network"), "terminal": ("终端环境", "terminal environment")}[kind]
    failed = sum(1 for r in rows if not r["ok"])
    doc = {
        "kind": f"hipgate-preflight-{kind}",
        "kind_title_zh": kind_titles[0],
        "kind_title_en": kind_titles[1],
        "province": inv.settings.get("province", ""),
        "inventory": str(inv.path),
        "checked_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(seconds, 2),
        "hosts": hosts,
        "passed": failed == 0,
        "failed": failed,
        "titles": titles,
        "rows": rows,
    }
    data = (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"preflight-{kind}.json"
    path.write_bytes(data)
    (out_dir / f"{path.name}.sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    html = out_dir / f"preflight-{kind}.html"
    html.write_text(template("preflight.html.j2").render(doc=doc, sha256=digest, json_name=path.name), "utf-8")
    return path, html


def show(rows: list[dict], titles: dict[str, tuple[str, str]]) -> None:
    table = Table(
        "主机 / host", "检查项 / check", "目标 / target", "结果 / result", "发现 / observed", "处理建议 / fix"
    )
    for r in rows:
        zh, en = titles.get(r["check"], (r["check"], ""))
        table.add_row(
            r["host"],
            f"{zh}\n{en}",
            r["target"],
            ("[yellow]通过（低于推荐值）/ pass (below recommended)[/]" if r.get("warning") else "[green]通过 / pass[/]")
            if r["ok"]
            else "[red]未通过 / FAIL[/]",
            f"{r['observed_zh']}\n{r['observed_en']}",
            f"{r['fix_zh']}\n{r['fix_en']}".strip(),
        )
    out.print(table)


def _hosts(found: list[str], limit: str | None, what_zh: str, what_en: str) -> list[str]:
    if not found:
        raise fail(
            "--limit" if limit else "hipgate.network.preflight_groups",
            f"没有要检查的{what_zh}。",
            f"no {what_en} to check.",
            "检查 --limit 中的主机名，或在 hipgate.network.preflight_groups 中列出要检查的组。",
            "check the --limit host names, or list the groups to check in hipgate.network.preflight_groups.",
        )
    return found


def finish(
    kind: str,
    titles: dict,
    inv: Any,
    hosts: list[str],
    rows: list[dict],
    seconds: float,
    out_dir: Path | None,
    as_json: bool,
) -> None:
    target = out_dir or project_root() / "artifacts" / "preflight" / Path(inv.path).resolve().name
    path, html = write_record(kind, titles, inv, hosts, rows, seconds, target)
    failed = sum(1 for r in rows if not r["ok"])
    if as_json:
        out.print_json(path.read_text(encoding="utf-8"))
    else:
        show(rows, titles)
        out.print(
            f"{len(hosts)} 台主机，{len(rows)} 项，未通过 {failed}，用时 {seconds:.1f} 秒。"
            f" / {len(hosts)} hosts, {len(rows)} checks, {failed} failed, {seconds:.1f} s."
        )
        out.print(f"  json: {path}\n  html: {html}")
    # 3: checked, and something does not hold (2 is bad input, 1 an internal error).
    raise typer.Exit(3 if failed else 0)


@preflight_app.command("network")
def network(inventory: Inv, limit: Limit = None, out_dir: OutDir = None, as_json: AsJson = False) -> None:
    """网络预检：DNS、域名解析、TCP/UDP 53/ICMP、专线路由、VPN、时间 / network preflight before go-live."""
    from hipgate.preflight import network as pf

    inv = load_inventory(inventory)
    wanted = [h for h in (limit or "").split(",") if h] or None
    hosts = _hosts(pf.preflight_hosts(inv, wanted), limit, "主机", "host")
    with err.status("检查中 / checking…"):
        rows, seconds = pf.run_preflight(inv, hosts, lambda h: SshConnection(inv, h))
    finish("network", pf.TITLES, inv, hosts, pf.as_json(rows), seconds, out_dir, as_json)


@preflight_app.command("terminal")
def terminal(inventory: Inv, limit: Limit = None, out_dir: OutDir = None, as_json: AsJson = False) -> None:
    """终端环境检查：操作系统、内存、磁盘、浏览器 / Linux terminal check: OS, memory, disk, browser."""
    from hipgate.preflight import network as pf
    from hipgate.preflight import terminal as tm

    inv = load_inventory(inventory)
    wanted = [h for h in (limit or "").split(",") if h] or None
    hosts = _hosts(
        tm.terminal_hosts(inv, wanted), limit, "终端（terminals 组或 --limit）", "terminal (group terminals or --limit)"
    )
    with err.status("检查中 / checking…"):
        rows, seconds = pf.run_preflight(
            inv, hosts, lambda h: SshConnection(inv, h), probe=tm.probe_host, titles=tm.TITLES
        )
    finish("terminal", tm.TITLES, inv, hosts, pf.as_json(rows), seconds, out_dir, as_json)
