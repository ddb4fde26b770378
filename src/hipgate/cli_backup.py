"""`hipgate backup ...` and `hipgate handover check`: the state of every backup repository, their
verification and restore tests, and the gate a system must pass before it is handed over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hipgate.cli_custody import Inv, System, TokenFile
from hipgate.errors import fail
from hipgate.inventory import load_inventory
from hipgate.paths import project_root

backup_app = typer.Typer(help="异地多副本备份 / off-site multi-copy backups (pgBackRest).", no_args_is_help=True)
handover_app = typer.Typer(help="系统交接 / system handover.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@backup_app.command("status")
def status(system: System, inventory: Inv, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """每个仓库的最新备份、时效与备份日志 / each repository's newest backups, their age and backup logs."""
    from hipgate import backups

    inv = load_inventory(inventory)
    repos = backups.repositories(inv, system)
    states = {r.host: backups.status(inv, r) for r in repos}
    if as_json:
        out.print_json(json.dumps(states, ensure_ascii=False))
        return
    table = Table(
        "仓库 / repo", "主机 / host", "最新全量 / newest full", "时效 / age (h)", "备份日志 / logs", "错误 / error"
    )
    for r in repos:
        st, full = states[r.host], backups.newest_full(states[r.host])
        age = st.get("newest_full_age_hours")
        table.add_row(
            f"repo{r.index}" + (" (异地 / off-site)" if r.offsite else ""),
            r.host,
            full["label"] if full else "-",
            "-" if age is None else f"{age:.1f}",
            str(len(st.get("logs", []))),
            st.get("error", ""),
        )
    out.print(table)
    bad = backups.malformed_lines(states)
    for line in bad:
        err.print(
            f"错误：无效的备份日志或恢复演练记录（不予采信，请检查该文件是否被篡改，确认后删除并重新备份/演练）：{line}\n"
            f"error: invalid backup log or restore-test record (not trusted; check whether it was tampered with, "
            f"then remove it and run a new backup / restore test): {line}",
            markup=False,
            highlight=False,
        )
    if any("error" in s for s in states.values()) or bad:
        raise typer.Exit(1)
    stale = [
        f"repo{r.index}"
        for r in repos
        if states[r.host].get("newest_full_age_hours") is None
        or states[r.host]["newest_full_age_hours"] > (states[r.host].get("full_max_age_hours") or 0)
    ]
    if stale:
        err.print(
            f"告警：最新全量备份过旧或不存在：{', '.join(stale)} / ALERT: newest full backup too old or missing: "
            + ", ".join(stale)
        )
        raise typer.Exit(3)


@backup_app.command("verify")
def verify(
    system: System,
    inventory: Inv,
    restore_from: Annotated[
        str | None, typer.Option("--restore-from", help="做恢复演练的异地站点 / off-site site for the restore test")
    ] = None,
) -> None:
    """pgbackrest verify 每个仓库，并从异地仓库做一次恢复演练 / verify every repository and run a restore test
    from an off-site one."""
    from hipgate import backups

    inv = load_inventory(inventory)
    repos = backups.repositories(inv, system)
    sites = [r for r in repos if r.offsite]
    site = next((r for r in sites if r.host == restore_from), None) if restore_from else (sites[0] if sites else None)
    if site is None:
        raise fail(
            "--restore-from",
            f"{restore_from!r} 不是异地备份站点。" if restore_from else "清单中没有异地备份站点。",
            f"{restore_from!r} is not a backup site." if restore_from else "the inventory has no backup site.",
            "可选：" + "、".join(r.host for r in sites),
            "choose one of: " + ", ".join(r.host for r in sites),
        )
    failed = []
    for r in repos:
        res = backups.verify(inv, r)
        out.print(f"repo{r.index} @ {r.host}: {'通过 / ok' if res['ok'] else '未通过 / FAILED'}")
        if not res["ok"]:
            failed.append(f"repo{r.index}")
            out.print(res.get("output", ""), markup=False, highlight=False)
    test = backups.restore_test(inv, site)
    tables = len(test.get("tables") or {})
    out.print(
        f"恢复演练 / restore test repo{site.index} @ {site.host}: "
        + (f"通过 / ok（{tables} 张表 / tables, {test.get('seconds')} s）" if test["ok"] else "未通过 / FAILED")
    )
    if not test["ok"]:
        failed.append("restore-test")
        out.print(test.get("error", ""), markup=False, highlight=False)
    if failed:
        err.print(f"未通过 / failed: {', '.join(failed)}")
        raise typer.Exit(1)


@handover_app.command("check")
def check(
    system: System,
    inventory: Inv,
    token_file: TokenFile = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="报告目录 / report directory")] = None,
) -> None:
    """交接门禁：全部条件满足才写出交接报告，否则列出未满足的条件并以非零退出 / the handover gate: writes the
    handover report only when every condition holds; otherwise lists the unmet ones and exits non-zero."""
    import os

    from hipgate import handover
    from hipgate.cli_custody import _token

    inv = load_inventory(inventory)
    # No token: the gate still runs and reports the custody condition as unmet.
    has_token = (token_file and token_file.exists()) or os.environ.get("BAO_TOKEN") or os.environ.get("VAULT_TOKEN")
    token = _token(token_file if token_file and token_file.exists() else None) if has_token else None
    conditions = handover.evaluate(inv, system, token)
    for c in conditions:
        mark = "满足 / holds" if c.ok else "不满足 / UNMET"
        out.print(f"[{mark}] {c.title_zh} / {c.title_en}\n    {c.zh}\n    {c.en}", markup=False, highlight=False)
    if not all(c.ok for c in conditions):
        unmet = [c.id for c in conditions if not c.ok]
        err.print(
            f"拒绝交接：{len(unmet)} 项条件未满足 / handover refused: {len(unmet)} condition(s) unmet: "
            + ", ".join(unmet)
        )
        raise typer.Exit(3)
    target = out_dir or project_root() / "artifacts" / "handover" / system
    path, digest = handover.write_report(conditions, inv, system, target)
    out.print(f"可以交接 / handover allowed.\n  json: {path}\n  html: {path.with_suffix('.html')}\n  sha256: {digest}")
