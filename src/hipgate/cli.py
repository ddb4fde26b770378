"""hipgate command line (messages in Chinese and English)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hipgate import __version__
from hipgate.cli_backup import backup_app, handover_app
from hipgate.cli_custody import custody_app
from hipgate.cli_exchange import exchange_app
from hipgate.cli_preflight import preflight_app
from hipgate.errors import UserError, fail
from hipgate.inventory import load_inventory
from hipgate.paths import project_root

app = typer.Typer(
    help="hipgate: 医保前置机部署、加固与合规验证 / provision, secure and prove the 前置机 compliant.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lab_app = typer.Typer(help="本机实验环境（真实 Linux 主机）/ the local lab of real Linux hosts.", no_args_is_help=True)
inv_app = typer.Typer(help="部署清单 / inventory.", no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(inv_app, name="inventory")
app.add_typer(custody_app, name="custody")
app.add_typer(backup_app, name="backup")
app.add_typer(handover_app, name="handover")
app.add_typer(preflight_app, name="preflight")
app.add_typer(exchange_app, name="exchange")
# soft_wrap: never break file paths in messages users copy from.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

LabName = Annotated[str, typer.Option("--name", help="实验环境名 / lab name")]
DEFAULT_LAB = "default"


def _progress() -> tuple[Progress, object]:
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    tasks: dict[str, int] = {}
    labels = {"up": "创建 / building", "down": "清除 / removing", "ssh": "等待 SSH / waiting for ssh"}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
        bar.update(tasks[phase], completed=done, total=total)

    return bar, update


@lab_app.command("up")
def lab_up(
    name: LabName = DEFAULT_LAB,
    count: Annotated[int | None, typer.Option(help="N 台编号主机代替参考拓扑 / N numbered hosts")] = None,
    host: Annotated[list[str] | None, typer.Option(help="指定主机名（可重复）/ named host (repeatable)")] = None,
) -> None:
    """启动实验环境直到 SSH 就绪（可重复执行）/ bring the lab up to ssh-ready (idempotent)."""
    from hipgate.lab import manager, topology

    specs = topology.host_specs(count, host)
    inv_dir = project_root() / "inventories" / "lab" if name == DEFAULT_LAB and not count and not host else None
    bar, update = _progress()
    with bar:
        lab, changed = manager.up(name, specs, update, inventory_dir=inv_dir)
    out.print(f"实验环境 {lab.name} 已就绪：{len(lab.hosts)} 台主机，网段 {lab.subnet}，变更 {changed} 项。")
    out.print(f"Lab {lab.name} is ready: {len(lab.hosts)} hosts on {lab.subnet}, {changed} operations changed.")
    out.print(f"  ssh: ssh -F {lab.directory / 'ssh_config'} HOST   (or: hipgate lab ssh HOST)")
    out.print(f"  inventory: {inv_dir or lab.directory / 'inventory'}")


@lab_app.command("down")
def lab_down(name: LabName = DEFAULT_LAB) -> None:
    """关闭并彻底清除实验环境 / power off and remove everything the lab made."""
    from hipgate.lab import manager

    bar, update = _progress()
    with bar:
        removed = manager.down(name, update)
    if removed:
        out.print(f"实验环境 {name} 已清除。/ Lab {name} removed.")
    else:
        out.print(f"没有名为 {name} 的实验环境。/ No lab named {name}.")


@lab_app.command("status")
def lab_status(
    name: LabName = DEFAULT_LAB,
    as_json: Annotated[bool, typer.Option("--json", help="JSON 输出 / JSON output")] = False,
) -> None:
    """主机、地址与状态 / hosts, addresses and state."""
    import json

    from hipgate.lab import artifacts, manager

    rows = manager.status(name)
    if not rows:
        err.print(f"没有名为 {name} 的实验环境。/ No lab named {name}.")
        raise typer.Exit(3)
    if as_json:
        lab = manager.load(name)
        assert lab is not None
        print(
            json.dumps(
                {
                    "lab": name,
                    "ssh_config": str(artifacts.ssh_config_path(lab)),
                    "identity_file": str(artifacts.key_path(lab)),
                    "hosts": [
                        {
                            "name": r.name,
                            "address": r.address,
                            "groups": list(r.groups),
                            "pid": r.pid,
                            "ssh_ready": r.ssh_ready,
                        }
                        for r in rows
                    ],
                },
                ensure_ascii=False,
            )
        )
        raise typer.Exit(0 if all(r.ssh_ready for r in rows) else 1)
    table = Table("主机 host", "地址 address", "组 groups", "PID", "SSH")
    for r in rows:
        table.add_row(
            r.name, r.address, ",".join(r.groups), str(r.pid or "-"), "就绪 ready" if r.ssh_ready else "未就绪 down"
        )
    out.print(table)
    if not all(r.ssh_ready for r in rows):
        raise typer.Exit(1)


@lab_app.command("ssh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def lab_ssh(ctx: typer.Context, host: str, name: LabName = DEFAULT_LAB) -> None:
    """SSH 登录实验主机 / ssh into a lab host (extra words run as a command)."""
    from hipgate.errors import fail
    from hipgate.lab import artifacts, manager

    lab = manager.load(name)
    if lab is None:
        raise fail(
            f"lab {name}",
            "实验环境未启动。",
            "the lab is not up.",
            "先运行 hipgate lab up。",
            "run hipgate lab up first.",
        )
    lab.host(host)
    os.execvp("ssh", ["ssh", "-F", str(artifacts.ssh_config_path(lab)), host, *ctx.args])


def _words(text: str) -> list[str]:
    return [w for w in text.replace(" ", ",").split(",") if w]


def _years(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(w) for w in _words(text))
    except ValueError:
        raise fail(
            "--years",
            f"年度应为逗号分隔的整数：{text!r}。",
            f"years are comma-separated integers: {text!r}.",
            "例如 --years 2023,2024",
            "for example --years 2023,2024",
        ) from None


@lab_app.command("seed-data")
def lab_seed_data(
    name: LabName = DEFAULT_LAB,
    seed: Annotated[int, typer.Option(help="随机种子（同一种子，同样的数据）/ seed: same seed, same data")] = 1,
    regions: Annotated[
        str, typer.Option(help="地市医保区划，逗号分隔 / prefecture divisions, comma-separated")
    ] = "440100,440300,440600",
    years: Annotated[str, typer.Option(help="年度，逗号分隔 / years, comma-separated")] = "2023,2024",
    records_per_region_year: Annotated[
        int, typer.Option(help="每个区划每年每种记录的条数 / records per region, year and record type")
    ] = 10_000,
    bad_share: Annotated[float, typer.Option(help="故意错误记录的比例 / share of deliberately bad records")] = 0.01,
    record_types: Annotated[str, typer.Option(help="记录类型 / record types (setl, cross_visit, test_psn)")] = (
        "setl,cross_visit"
    ),
    out_file: Annotated[
        Path | None, typer.Option("--out", help="写入本地文件而不载入实验环境 / write a local file instead of the lab")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="copy（psql COPY 脚本）或 jsonl / copy (psql COPY script) or jsonl")
    ] = "copy",
    manifest_path: Annotated[
        Path | None, typer.Option("--manifest", help="坏记录清单文件 / manifest of the bad records")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="只生成并计数，不写出 / generate and count only")] = False,
    create_tables: Annotated[
        bool, typer.Option("--create-tables", help="先建交换表（数据集 DDL）/ create the exchange tables first")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="先删除同一分区的已有数据 / delete the same partitions first")
    ] = False,
    database: Annotated[str, typer.Option(help="数据库主机上的库名 / database on the database host")] = "exchange",
    capture: Annotated[
        bool,
        typer.Option(
            "--capture/--no-capture",
            help="记录变更供增量上传；--no-capture 作为中间件上线前的历史数据载入 / capture the rows for the "
            "incremental upload; --no-capture loads them as history that predates the middleware",
        ),
    ] = True,
) -> None:
    """生成合成交换数据（可复现）并载入实验环境数据库，或写入本地文件 / fill the exchange tables with
    reproducible synthetic records (or write them to a local file), with a manifest of the bad ones."""
    import time

    from hipgate.exchange.seed import run

    if fmt not in ("copy", "jsonl"):
        raise fail(
            "--format", f"未知格式 {fmt!r}。", f"unknown format {fmt!r}.", "用 copy 或 jsonl。", "use copy or jsonl."
        )
    if fmt == "jsonl" and out_file is None and not dry_run:
        raise fail(
            "--format jsonl",
            "JSON Lines 只能写入本地文件（数据库用 COPY）。",
            "JSON Lines go to a local file only (the database takes COPY).",
            "加 --out FILE，或去掉 --format jsonl。",
            "add --out FILE, or drop --format jsonl.",
        )
    to_tables = fmt == "copy"
    plan = run.Plan(
        seed=seed, regions=tuple(_words(regions)), years=_years(years), per_region_year=records_per_region_year,
        bad_share=bad_share, record_types=tuple(_words(record_types)), storable_only=to_tables,
    )  # fmt: skip
    run.check_plan(plan)
    manifest_to = manifest_path or run.default_manifest(out_file, name)
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    )
    started = time.monotonic()
    with run.manifest_file(manifest_to, plan) as manifest, bar:
        task = bar.add_task("生成 / generating", total=plan.total)

        def counted(pieces: Iterator[bytes]) -> Iterator[bytes]:
            for piece in pieces:
                bar.update(task, completed=sum(manifest.records.values()))
                yield piece

        if fmt == "jsonl":
            pieces = run.jsonl(plan, manifest)
        else:
            pieces = run.script(plan, manifest, create_tables=create_tables, replace=replace, capture=capture)
        if dry_run:
            size = sum(len(p) for p in counted(pieces))
            where = "（试运行，未写出）/ (dry run, nothing written)"
        elif out_file is not None:
            with run.open_output(out_file) as f:
                size = run.ship(counted(pieces), f)
            where = str(out_file)
        else:
            with run.lab_database_sink(name, database) as sink:
                size = run.ship(counted(pieces), sink)
            where = f"lab {name}: database/{database}"
        bar.update(task, completed=sum(manifest.records.values()))
    seconds = time.monotonic() - started
    summary = manifest.summary()
    made = sum(summary["records"].values())
    n_bad = sum(summary["bad"].values())
    out.print(
        f"{made} 条记录（其中故意错误 {n_bad} 条），{size / 1e6:.1f} MB，{seconds:.1f} 秒 → {where}\n"
        f"{made} records ({n_bad} deliberately bad), {size / 1e6:.1f} MB in {seconds:.1f} s → {where}"
    )
    for key, n in summary["bad"].items():
        out.print(f"  {key}: {n}")
    out.print(f"  manifest: {manifest_to}")


@inv_app.command("check")
def inventory_check(path: Path) -> None:
    """校验部署清单 / validate an inventory."""
    inv = load_inventory(path)
    out.print(
        f"清单有效 / inventory valid: {inv.path} — {len(inv.hosts)} 台主机 hosts, "
        + ", ".join(f"{g}={len(h)}" for g, h in inv.groups.items())
    )


@app.command()
def deploy(
    inventory: Annotated[Path, typer.Option("-i", "--inventory", help="部署清单目录 / inventory directory")],
    limit: Annotated[str | None, typer.Option(help="仅限这些主机 / only these hosts")] = None,
    tags: Annotated[str | None, typer.Option(help="仅运行这些标签 / only these tags")] = None,
    playbook: Annotated[str, typer.Option(help="剧本 / playbook under playbooks/")] = "site.yml",
) -> None:
    """校验清单后运行剧本 / validate the inventory, then run the playbooks."""
    from hipgate.runner import run_playbook

    inv = load_inventory(inventory)
    rc = run_playbook(playbook, inv.path, limit, tags)
    if rc != 0:
        err.print(f"部署失败（ansible-playbook 退出码 {rc}）。/ Deployment failed (ansible-playbook exit {rc}).")
        raise typer.Exit(rc)
    out.print("部署完成。/ Deployment finished.")


@app.command()
def verify(
    inventory: Annotated[Path, typer.Option("-i", "--inventory", help="部署清单目录 / inventory directory")],
    limit: Annotated[
        str | None, typer.Option(help="仅检查这些主机（逗号分隔）/ only these hosts (comma-separated)")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="结果目录 / results directory")] = None,
    policy: Annotated[Path | None, typer.Option(help="策略文件 / policy file")] = None,
    workers: Annotated[int, typer.Option(help="并行数，0 为自动 / parallel workers, 0 = auto")] = 0,
) -> None:
    """按策略检查每台受管主机（SSH，并行），输出 JSON 与 JUnit / check every managed host against the policy."""
    from hipgate.verify import run_verify

    target = out_dir or project_root() / "artifacts" / "verify" / Path(inventory).resolve().name
    hosts = [h for h in (limit or "").split(",") if h] or None
    with err.status("检查中 / checking…"):
        results, counts = run_verify(inventory, target, hosts, policy, workers)
    out.print(
        f"通过 {counts['pass']}，不符合 {counts['fail']}，豁免 {counts['waived']}。"
        f" / passed {counts['pass']}, failed {counts['fail']}, waived {counts['waived']}."
    )
    out.print(f"  results: {results}\n  junit:   {results.parent / 'junit.xml'}")
    # 3: the hosts do not conform (distinct from 2, bad input, and 1, internal error).
    raise typer.Exit(3 if counts["fail"] else 0)


@app.command()
def report(
    inventory: Annotated[
        Path | None, typer.Option("-i", "--inventory", help="清单目录（读取其最近一次检查结果）/ inventory directory")
    ] = None,
    results: Annotated[
        Path | None, typer.Option(help="hipgate verify 写出的 results.json / results.json from hipgate verify")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="报告目录 / report directory")] = None,
) -> None:
    """生成审计报告（HTML、JSON、JUnit）/ write the auditor report (HTML, JSON, JUnit) from verify results."""
    from hipgate.report.write import write_report

    if (inventory is None) == (results is None):
        raise fail(
            "hipgate report",
            "需要 -i 清单目录 或 --results 文件，二者选一。",
            "give either -i INVENTORY or --results FILE, exactly one.",
            "例如：hipgate report -i inventories/lab",
            "for example: hipgate report -i inventories/lab",
        )
    if results is not None:
        source, name = results, results.resolve().parent.name
    else:
        name = Path(str(inventory)).resolve().name
        source = project_root() / "artifacts" / "verify" / name / "results.json"
    target = out_dir or project_root() / "artifacts" / "report" / name
    rep = write_report(source, target)
    out.print(f"结论 / verdict: {rep.verdict}")
    out.print(f"  html:  {target / 'report.html'}\n  json:  {target / 'report.json'}\n  junit: {target / 'junit.xml'}")
    out.print(f"  sha256(results.json): {rep.sha256}")


@app.command()
def version() -> None:
    """版本 / version."""
    out.print(f"hipgate {__version__}")


def main() -> None:
    try:
        app()
    except UserError as exc:
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("已中断。/ Interrupted.")
        sys.exit(130)
    except Exception as exc:
        err.print(f"内部错误 / internal error: {type(exc).__name__}: {exc}", markup=False)
        if os.environ.get("HIPGATE_DEBUG"):
            raise
        sys.exit(1)


if __name__ == "__main__":
    main()
