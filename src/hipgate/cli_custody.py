"""`hipgate custody ...`: split custody of the database superuser password, and OpenBao's dynamic
database logins. Tokens come from the environment or a 0600 file, custodians' passwords from a
prompt; no secret is ever accepted on the command line."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hipgate.errors import fail
from hipgate.inventory import load_inventory

custody_app = typer.Typer(
    help="数据库口令分段保管 / split custody of database passwords (OpenBao/Vault).", no_args_is_help=True
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

System = Annotated[str, typer.Argument(help="数据库主机名 / database host name")]
Inv = Annotated[Path, typer.Option("-i", "--inventory", help="部署清单目录 / inventory directory")]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file", help="含令牌的 0600 文件（否则读 BAO_TOKEN）/ 0600 file holding the token (else BAO_TOKEN)"
    ),
]
Journal = Annotated[
    Path | None, typer.Option("--journal", help="保管日志文件 / custody journal file (JSON lines, 0600)")
]
SUPERUSER = "postgres"


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        if not token_file.is_file():
            raise fail(
                str(token_file), "令牌文件不存在。", "the token file does not exist.", "检查路径。", "check the path."
            )
        if token_file.stat().st_mode & 0o077:
            raise fail(
                str(token_file),
                "令牌文件可被他人读取。",
                "the token file is readable by others.",
                f"执行 chmod 600 {token_file}。",
                f"run chmod 600 {token_file}.",
            )
        return token_file.read_text().strip()
    token = os.environ.get("BAO_TOKEN") or os.environ.get("VAULT_TOKEN")
    if not token:
        raise fail(
            "BAO_TOKEN",
            "没有 Vault 令牌。",
            "no Vault token.",
            "在环境变量 BAO_TOKEN（或 VAULT_TOKEN）或 --token-file 指定的 0600 文件中提供令牌，不要写在命令行上。",
            "put the token in BAO_TOKEN (or VAULT_TOKEN) or in a 0600 file given with --token-file, "
            "never on the command line.",
        )
    return token


def _journal(inv: Any, journal: Path | None) -> Path:
    from hipgate.paths import province_state

    configured = (inv.settings.get("custody") or {}).get("journal")
    if journal or configured:
        return Path(journal or configured)
    return province_state(str(inv.settings["province_id"]), "custody") / "journal.jsonl"


def _operator() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


@custody_app.command("status")
def status(system: System, inventory: Inv, token_file: TokenFile = None) -> None:
    """保管人、门限、当前口令的代次与设置时间 / custodians, threshold, generation and time of the password in force."""
    from hipgate.custody import ceremony, vault

    inv = load_inventory(inventory)
    addr, ca = vault.address(inv)
    client = vault.connect(addr, _token(token_file), ca)
    state = ceremony.status(client, system)
    if not state["in_custody"]:
        out.print(f"{system}：尚无分段保管的口令。/ {system}: no password in split custody.")
        raise typer.Exit(5)
    shown = ceremony.generation_to_recover(state)
    out.print(
        f"{system}: 代次 generation {state.get('generation', '-')}，设置于 set at {state.get('set_at', '-')}，"
        f"门限 threshold {shown['threshold']}/{len(shown['custodians'])}，保管人 custodians: "
        + ", ".join(shown["custodians"])
    )
    # Reported on stderr; the handover gate is what refuses them.
    if state.get("pending"):
        err.print(
            f"待定代次 pending generation {shown['generation']}：口令更换后未能标记生效，恢复将使用该代；"
            "请运行 custody rotate。/ the password changed but was not marked in force; recover uses this "
            "generation; run custody rotate."
        )
    kept = vault.first_password_kept(client, [c["id"] for c in inv.settings["custodians"]])
    if kept:
        err.print(
            f"从未更换初始口令的保管人 / first password never changed: {', '.join(kept)}"
            "（运行 hipgate custody passwd --custodian ID / run hipgate custody passwd --custodian ID）"
        )


def _new_generation(system: str, inventory: Path, token_file: Path | None, journal: Path | None, rotate: bool) -> None:
    from hipgate.custody import ceremony, remote, vault

    inv = load_inventory(inventory)
    db = inv.database_host(system)
    addr, ca = vault.address(inv)
    writer = vault.connect(addr, _token(token_file), ca)
    state = vault.current(writer, system)
    if rotate and state is None:
        raise fail(
            system,
            "尚无分段保管的口令。",
            "no password is in custody yet.",
            "先运行 custody init。",
            "run custody init first.",
        )
    held = (state or {}).get("generation") or ((state or {}).get("pending") or {}).get("generation")
    if not rotate and state is not None:
        raise fail(
            system,
            f"口令已在分段保管中（代次 {held}）。",
            f"a password is already in custody (generation {held}).",
            "要更换口令请用 custody rotate。",
            "use custody rotate to replace it.",
        )
    custodians = [c["id"] for c in inv.settings["custodians"]]
    threshold = int(inv.settings["custody"]["threshold"])
    generation = ceremony.init(
        system, writer, custodians, threshold, remote.superuser(inv, db), SUPERUSER, _journal(inv, journal), _operator()
    )
    out.print(
        f"{system}：新口令已生效并分为 {len(custodians)} 段（门限 {threshold}），代次 {generation}。"
        "口令未在任何地方显示或保存。\n"
        f"{system}: a new password is in force, split into {len(custodians)} shares (threshold {threshold}), "
        f"generation {generation}. It was shown and stored nowhere."
    )


@custody_app.command("init")
def init(system: System, inventory: Inv, token_file: TokenFile = None, journal: Journal = None) -> None:
    """生成超级用户口令、生效并分段保管 / generate the superuser password, set it, split it.

    令牌只需 hipgate-custody-writer 策略，读不到任何分段 /
    the token needs only the writer policy, which cannot read shares."""
    _new_generation(system, inventory, token_file, journal, rotate=False)


@custody_app.command("rotate")
def rotate(system: System, inventory: Inv, token_file: TokenFile = None, journal: Journal = None) -> None:
    """更换口令并重新分段；旧代次标记为作废 / replace the password and re-split; the old generation is burned."""
    _new_generation(system, inventory, token_file, journal, rotate=True)


def _require_custodians(inv: Any, ids: list[str]) -> None:
    """Every id names a custodian of the inventory, once."""
    known = {c["id"] for c in inv.settings["custodians"]}
    unknown = [c for c in ids if c not in known]
    if unknown or len(set(ids)) != len(ids):
        shown = ", ".join(unknown or ids)
        raise fail(
            "--custodian",
            f"保管人无效或重复：{shown}",
            f"unknown or repeated custodian: {shown}",
            "清单中的保管人：" + "、".join(sorted(known)),
            "custodians in the inventory: " + ", ".join(sorted(known)),
        )


@custody_app.command("recover")
def recover(
    system: System,
    inventory: Inv,
    custodian: Annotated[
        list[str], typer.Option("--custodian", help="到场的保管人 id（每人一次）/ a custodian present (repeat)")
    ],
    print_once: Annotated[
        bool, typer.Option("--print", help="在终端显示一次口令 / show the password once on the terminal")
    ] = False,
    session: Annotated[
        int,
        typer.Option(
            "--session",
            min=0,
            max=240,
            help="经堡垒机开启 N 分钟的应急 psql 会话 / break-glass psql from the bastion for N minutes",
        ),
    ] = 0,
    journal: Journal = None,
) -> None:
    """保管人各自输入口令，恢复超级用户口令 / a quorum of custodians recover it, each typing their own password.

    之后必须运行 custody rotate / custody rotate must follow."""
    from hipgate.custody import ceremony, remote, vault

    inv = load_inventory(inventory)
    db = inv.database_host(system)
    if print_once == bool(session):
        raise fail(
            "--print/--session",
            "请选择且只选择一种用法：--print 或 --session 分钟数。",
            "choose exactly one use: --print or --session MINUTES.",
            "应急操作优先用 --session（口令不显示）。",
            "prefer --session for break-glass work (the password is never shown).",
        )
    if print_once and not sys.stdout.isatty():
        raise fail(
            "--print",
            "标准输出不是终端，拒绝显示口令（以免写入文件或管道）。",
            "standard output is not a terminal; refusing to print the password into a file or pipe.",
            "在终端中运行，或使用 --session。",
            "run it on a terminal, or use --session.",
        )
    _require_custodians(inv, custodian)
    addr, ca = vault.address(inv)
    vault.connect(addr, ca=ca)  # sealed or unreachable: say so before anyone types a password
    clients = {}
    for c in custodian:
        secret = typer.prompt(f"保管人 {c} 的口令 / password of custodian {c}", hide_input=True, err=True)
        clients[c] = vault.login(addr, c, secret, ca)
    password = ceremony.recover(system, clients, _journal(inv, journal))
    err.print("已恢复。完成后必须运行 custody rotate。/ Recovered. custody rotate must follow.")
    if print_once:
        out.print(password, markup=False, highlight=False)
        return
    sql = None if sys.stdin.isatty() else sys.stdin.read()
    rc = remote.breakglass(inv, db, password, session, tty=sys.stdin.isatty(), sql=sql)
    raise typer.Exit(rc)


MIN_PASSWORD = 12


@custody_app.command("passwd")
def passwd(
    inventory: Inv,
    custodian: Annotated[str, typer.Option("--custodian", help="保管人 id / custodian id")],
) -> None:
    """保管人更换本人口令（首次登录后必须更换）/ a custodian replaces their own password (the first one must go).

    口令只在提示符下输入 / passwords are typed at a prompt only."""
    from hipgate.custody import vault

    inv = load_inventory(inventory)
    _require_custodians(inv, [custodian])
    addr, ca = vault.address(inv)
    vault.connect(addr, ca=ca)
    old = typer.prompt(f"当前口令 / current password of custodian {custodian}", hide_input=True, err=True)
    client = vault.login(addr, custodian, old, ca)
    new = typer.prompt(f"新口令 / new password of custodian {custodian}", hide_input=True, err=True)
    again = typer.prompt(f"再输入一次 / new password of custodian {custodian} again", hide_input=True, err=True)
    if len(new) < MIN_PASSWORD or new == old:
        raise fail(
            custodian,
            f"新口令至少 {MIN_PASSWORD} 个字符，且不同于当前口令。",
            f"the new password needs at least {MIN_PASSWORD} characters and must differ from the current one.",
            "换一个更长的口令。",
            "choose a longer password.",
        )
    if new != again:
        raise fail(
            custodian, "两次输入的新口令不一致。", "the new passwords do not match.", "重新运行。", "run it again."
        )
    vault.change_password(client, custodian, new)
    err.print(f"{custodian}：口令已更换。/ {custodian}: password replaced.")


def _configure_engine(admin: Any, inventory: Path, client_ca: Path) -> list[str]:
    """The database engine for every database host of the inventory; lines saying who gets what."""
    from hipgate.custody import engine, remote

    inv = load_inventory(inventory)
    matrix = inv.flow_matrix()
    clients = (inv.settings.get("database") or {}).get("clients") or []
    groups = sorted({c["role"] for c in clients})
    lines = []
    for system in inv.group_hosts("database"):
        conn = engine.Connection(system, inv.address(system), matrix.db_port, sslrootcert=remote.CA_ON_HOSTS)
        if engine.connect_broker(admin, conn, remote.superuser(inv, system), groups):
            lines.append(f"{system}: 已连接并轮换 OpenBao 的数据库口令 / connected, OpenBao's DB password rotated")
        by_host: dict[str, list[str]] = {}
        for c in clients:
            engine.define_role(admin, system, c["role"])
            for h in matrix.topology.hosts_of(c["from"]) or []:
                by_host.setdefault(h, []).append(engine.policy_name(system, c["role"]))
        engine.grant_hosts(admin, by_host, client_ca.read_text(), {h: inv.address(h) for h in by_host})
        lines += [f"  {h}: {', '.join(p)}" for h, p in sorted(by_host.items())]
    return lines


ClientCa = Annotated[
    Path | None,
    typer.Option("--client-ca", help="签发主机证书的 CA / CA that issued the hosts' certificates"),
]


@custody_app.command("engine")
def engine_setup(inventory: Inv, client_ca: ClientCa, token_file: TokenFile = None) -> None:
    """数据库引擎：为中间件与堡垒机签发短期账号 / database engine: short-lived logins for middleware and bastion.

    需要可管理挂载与策略的令牌（generate-root 生成的 root 令牌）/
    needs a token that manages mounts and policies (a root token from generate-root)."""
    from hipgate.custody import vault

    inv = load_inventory(inventory)
    addr, ca = vault.address(inv)
    admin = vault.connect(addr, _token(token_file), ca)
    out.print("\n".join(_configure_engine(admin, inventory, _required_ca(client_ca))))


def _required_ca(client_ca: Path | None) -> Path:
    if client_ca is None or not client_ca.is_file():
        raise fail(
            "--client-ca",
            "缺少签发主机证书的 CA 文件。",
            "the CA file that issued the hosts' certificates is missing.",
            "指定 pki 目录中的 ca.crt。",
            "give ca.crt from the pki directory.",
        )
    return client_ca


@custody_app.command("setup")
def setup(
    addr: Annotated[str, typer.Option("--addr", help="OpenBao 地址 / OpenBao address")],
    custodian: Annotated[list[str], typer.Option("--custodian", help="保管人 id（每人一次）/ custodian id (repeat)")],
    threshold: Annotated[int, typer.Option("--threshold", min=2, help="门限 / threshold")],
    key_dir: Annotated[Path, typer.Option("--key-dir", help="保管人文件目录 / directory for custodians' files")],
    ca: Annotated[Path | None, typer.Option("--ca", help="校验服务器证书的 CA / CA of the server")] = None,
    pgp_key: Annotated[
        list[str] | None, typer.Option("--pgp-key", help="ID=FILE：保管人 PGP 公钥 / a custodian's PGP public key")
    ] = None,
    engine_inventory: Annotated[
        Path | None, typer.Option("--engine-inventory", help="同时配置其数据库引擎 / also set up its database engine")
    ] = None,
    client_ca: ClientCa = None,
) -> None:
    """初始化并配置新的 OpenBao（一次），再吊销 root 令牌 / initialise and configure a new OpenBao once, revoke root.

    已初始化且没有 root 令牌时什么也不改 / with the server initialised and no root token, changes nothing.
    Prints one JSON line: {"changed", "initialised", "configured", "enrolled", "engine"}."""
    import json

    import hvac

    from hipgate.custody import server, vault

    if threshold > len(custodian):
        raise fail("--threshold", "门限大于保管人数。", "threshold exceeds the custodians.", "减小门限。", "lower it.")
    bad = [item for item in pgp_key or [] if "=" not in item or item.split("=", 1)[0] not in custodian]
    if bad:
        raise fail(
            "--pgp-key",
            f"格式应为 保管人ID=文件，且 ID 须为 --custodian 之一：{', '.join(bad)}",
            f"expected CUSTODIAN_ID=FILE with an ID given by --custodian: {', '.join(bad)}",
            "例如 --pgp-key custodian-a=/path/a.pub.b64",
            "e.g. --pgp-key custodian-a=/path/a.pub.b64",
        )
    pgp = dict(item.split("=", 1) for item in pgp_key or [])
    people = [{"id": c, "pgp_public_key_file": pgp.get(c)} for c in custodian]
    keys = server.pgp_keys(people)  # all or none, before anything is touched
    verify: str | bool = str(ca) if ca else True
    client = hvac.Client(url=addr, verify=verify, timeout=30)
    initialised = server.initialise(client, people, threshold, key_dir)
    root_token = os.environ.get("BAO_TOKEN") or server.pending_root(key_dir)
    if client.sys.read_seal_status().get("sealed") and server.pending_root(key_dir) and keys:
        raise server.sealed_after_pgp_init(addr, threshold)
    report: dict[str, Any] = {"changed": initialised, "initialised": initialised, "configured": False}
    if root_token:
        root = vault.connect(addr, root_token, str(ca) if ca else None)
        report["enrolled"] = server.configure(root, custodian, key_dir, keys or None)
        if engine_inventory is not None:
            report["engine"] = _configure_engine(root, engine_inventory, _required_ca(client_ca))
        server.finish(root, key_dir)
        report.update(changed=True, configured=True)
    else:
        vault.ready(client)  # sealed or unreachable: say so
    out.print(json.dumps(report, ensure_ascii=False), markup=False, highlight=False)
