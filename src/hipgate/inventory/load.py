"""Load and validate a provincial inventory; every problem names file, field and fix."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hipgate.errors import Problem, UserError, fail
from hipgate.flows import FlowMatrix, build_matrix, topology_from_inventory
from hipgate.inventory import schema
from hipgate.inventory.yamlio import read_yaml
from hipgate.validation import validate_document

HOSTS_NAMES = ("hosts.yml", "hosts.yaml")


@dataclass
class Inventory:
    """A validated deployment: hosts with their vars, group membership and hipgate settings."""

    path: Path
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)  # all.vars of hosts.yml
    # Wide-open settings the province accepted on purpose ([{risk, reason}]), shown in reports.
    acknowledged: list[dict[str, str]] = field(default_factory=list)

    def address(self, host: str) -> str:
        return str(self.hosts[host]["ansible_host"])

    def group_hosts(self, group: str) -> list[str]:
        return list(self.groups.get(group, []))

    def database_host(self, system: str) -> str:
        """`system` as named on the command line: it must be a host of the database group."""
        if system not in self.group_hosts("database"):
            raise fail(
                "SYSTEM",
                f"{system!r} 不是清单中 database 组的主机。",
                f"{system!r} is not a host of the inventory's database group.",
                "可选：" + "、".join(self.group_hosts("database")),
                "choose one of: " + ", ".join(self.group_hosts("database")),
            )
        return system

    def flow_matrix(self) -> FlowMatrix:
        return build_matrix(self.settings, topology_from_inventory(self.groups, self.hosts), "")[0]


def _find_hosts_file(path: Path) -> Path:
    if path.is_dir():
        for name in HOSTS_NAMES:
            if (path / name).is_file():
                return path / name
        return path / HOSTS_NAMES[0]  # read_yaml reports it missing
    return path


def settings_path(inv_dir: Path) -> Path:
    """The file the hipgate settings are read from: group_vars/all/hipgate.yml (or group_vars/all.yml)."""
    for candidate in (inv_dir / "group_vars" / "all" / "hipgate.yml", inv_dir / "group_vars" / "all.yml"):
        if candidate.is_file():
            return candidate
    return inv_dir / "group_vars" / "all" / "hipgate.yml"


def _read_settings(inv_dir: Path) -> tuple[Path, Any]:
    path = settings_path(inv_dir)
    return path, read_yaml(path)


# Ansible reads host_vars/<host>[.yml|/...] and group_vars/<group>[.yml|/...] for every run; these
# are the file names it loads there (hidden files and editor backups are skipped, as Ansible does).
VAR_FILE_SUFFIXES = ("", ".yml", ".yaml", ".json")
MAX_VAR_FILES = 500


def _var_files(inv_dir: Path) -> list[Path]:
    found: list[Path] = []
    for top in ("host_vars", "group_vars"):
        root = inv_dir / top
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if any(part.startswith(".") or part.endswith("~") for part in rel.parts):
                continue
            if path.suffix not in VAR_FILE_SUFFIXES or path.is_dir():
                continue
            found.append(path)
            if len(found) > MAX_VAR_FILES:
                return found
    return found


# Ansible, given the inventory directory, parses every other file in it -- and in its subdirectories --
# as one more inventory source (hosts, groups and vars nobody validated); it skips only these endings
# (INVENTORY_IGNORE_EXTS).
IGNORED_BY_ANSIBLE = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")


def _inventory_sources(inv_dir: Path, hosts_file: Path) -> list[Path]:
    """Every file Ansible reads as an inventory source besides the hosts file (subdirectories too)."""
    found: list[Path] = []
    todo = [inv_dir]
    while todo and len(found) <= MAX_VAR_FILES:
        for path in sorted(todo.pop().iterdir()):
            if path == hosts_file or path.name.startswith("."):
                continue
            if path.parent == inv_dir and path.name in ("group_vars", "host_vars"):
                continue
            if path.is_dir():
                todo.append(path)
            elif not path.name.endswith(IGNORED_BY_ANSIBLE):
                found.append(path)
    return found


def _extra_sources(inv_dir: Path, hosts_file: Path) -> list[Problem]:
    problems = []
    for path in _inventory_sources(inv_dir, hosts_file):
        problems.append(
            Problem(
                str(path),
                "Ansible 会把该文件当作另一份清单读取，其中的主机与变量不经校验。",
                "Ansible would read this file as one more inventory source, with hosts and vars nobody validated.",
                f"删除或移出清单目录；主机只写在 {hosts_file.name}。",
                f"remove it or move it out of the inventory directory; hosts belong in {hosts_file.name} only.",
            )
        )
    return problems


def _var_file_problems(inv_dir: Path, settings_file: Path) -> list[Problem]:
    """Every other vars file Ansible reads: no `hipgate` key (it would replace the validated
    settings), and the connection variables in it obey the hosts.yml rules."""
    problems: list[Problem] = []
    files = _var_files(inv_dir)
    if len(files) > MAX_VAR_FILES:
        return [
            Problem(
                str(inv_dir),
                f"host_vars/group_vars 下文件超过 {MAX_VAR_FILES} 个。",
                f"more than {MAX_VAR_FILES} files under host_vars/group_vars.",
                "删除无关文件。",
                "remove unrelated files.",
            )
        ]
    rules = {"vars": {"type": "dict", "allow_unknown": True, "schema": schema.HOST_VARS_IN_VARS}}
    for path in files:
        if path == settings_file:
            continue
        try:
            doc = read_yaml(path)
        except UserError as exc:
            problems += exc.problems
            continue
        if doc is None:
            continue
        found = validate_document(path, {"vars": doc} if isinstance(doc, dict) else doc, rules)
        # Name the field as it is written in that file (without the wrapper key).
        problems += [
            Problem(p.where.replace(f"{path}: vars.", f"{path}: ", 1), p.zh, p.en, p.fix_zh, p.fix_en) for p in found
        ]
    return problems


def _acknowledgement_problems(settings_file: Path, hip: dict[str, Any]) -> list[Problem]:
    """Wide-open settings pass only when `hipgate.acknowledge` names their risk with a reason."""
    acked = {a.get("risk") for a in hip.get("acknowledge") or []}
    where = f"{settings_file}: hipgate"
    found: list[tuple[str, str, str]] = []  # (risk, field, value)
    for i, net in enumerate((hip.get("network") or {}).get("management_networks") or []):
        if ipaddress.ip_network(net).prefixlen < schema.WIDE_PREFIX:
            found.append(("wide_management_network", f"network.management_networks.[{i}]", net))
    for i, flow in enumerate(hip.get("flows") or []):
        for src in flow.get("from") or []:
            try:
                wide = ipaddress.IPv4Network(src, strict=True).prefixlen < schema.WIDE_PREFIX
            except ValueError:
                continue
            if wide:
                found.append(("wide_flow_source", f"flows.[{i}].from", src))
    addr = (hip.get("custody") or {}).get("vault_addr")
    if isinstance(addr, str) and addr.startswith("http://"):
        found.append(("plaintext_vault_addr", "custody.vault_addr", addr))
    problems = []
    for risk, fld, value in found:
        if risk in acked:
            continue
        zh, en = schema.ACK_RISKS[risk]
        problems.append(
            Problem(
                f"{where}.{fld}",
                f"{value!r}：{zh}，默认拒绝。",
                f"{value!r}: {en}; refused by default ({risk}).",
                f"收窄该设置；确需如此时在 hipgate.acknowledge 中写明 {{risk: {risk}, reason: 理由}}（写入报告）。",
                f"narrow it; if it is really meant, add {{risk: {risk}, reason: why}} to hipgate.acknowledge "
                "(shown in the report).",
            )
        )
    return problems


def _cross_checks(hosts_file: Path, settings_file: Path, inv: Inventory, raw_hosts: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    children = raw_hosts["all"]["children"]
    for group, (desc_zh, desc_en) in schema.REQUIRED_GROUPS.items():
        if group not in children:
            problems.append(
                Problem(
                    f"{hosts_file}: all.children.{group}",
                    f"缺少主机组 {group}（{desc_zh}）。",
                    f"host group {group} ({desc_en}) is missing.",
                    f"在 all.children 下添加 {group}: 及其 hosts:。",
                    f"add {group}: with its hosts: under all.children.",
                )
            )
    sites = inv.group_hosts("backup_sites")
    if "backup_sites" in children and len(sites) < schema.MIN_BACKUP_SITES:
        problems.append(
            Problem(
                f"{hosts_file}: all.children.backup_sites.hosts",
                f"异地备份站点至少需要 {schema.MIN_BACKUP_SITES} 个，当前 {len(sites)} 个。",
                f"at least {schema.MIN_BACKUP_SITES} off-site backup sites are required, found {len(sites)}.",
                "再添加一个由另一方保管的异地备份站点。",
                "add another off-site backup site, held by the other party.",
            )
        )
    # One host may sit in several groups, but must keep one address; two hosts must not share one.
    owner: dict[str, str] = {}
    first_addr: dict[str, str] = {}
    for group, members in children.items():
        for name, hvars in (members.get("hosts") or {}).items():
            addr = (hvars or {}).get("ansible_host")
            where = f"{hosts_file}: all.children.{group}.hosts.{name}.ansible_host"
            known = first_addr.setdefault(name, addr) if addr is not None else None
            if known is not None and addr is not None and addr != known:
                problems.append(
                    Problem(
                        where,
                        f"主机 {name} 在不同组中地址不一致（{known} 与 {addr}）。",
                        f"host {name} has two addresses ({known} and {addr}) in different groups.",
                        "同一主机在各组中使用同一个地址。",
                        "give the host one address in every group.",
                    )
                )
            if addr is not None and owner.setdefault(addr, name) != name:
                problems.append(
                    Problem(
                        where,
                        f"IP 地址 {addr} 重复（已被主机 {owner[addr]} 使用）。",
                        f"duplicate IP address {addr} (already used by host {owner[addr]}).",
                        "为每台主机分配唯一的固定 IP。",
                        "give every host its own fixed IP.",
                    )
                )
    hip = inv.settings
    custodians = hip.get("custodians") or []
    threshold = (hip.get("custody") or {}).get("threshold")
    if isinstance(threshold, int) and threshold > len(custodians):
        problems.append(
            Problem(
                f"{settings_file}: hipgate.custody.threshold",
                f"门限 {threshold} 大于保管人数量 {len(custodians)}，密码将无法恢复。",
                f"threshold {threshold} exceeds the {len(custodians)} custodians; "
                "the password could never be recovered.",
                f"将门限设为 {schema.MIN_THRESHOLD} 到 {len(custodians)} 之间，或增加保管人。",
                f"set the threshold between {schema.MIN_THRESHOLD} and {len(custodians)}, or add custodians.",
            )
        )
    seen: set[str] = set()
    for i, cust in enumerate(custodians):
        cid = cust.get("id")
        if cid in seen:
            problems.append(
                Problem(
                    f"{settings_file}: hipgate.custodians.[{i}].id",
                    f"保管人 id {cid!r} 重复。",
                    f"custodian id {cid!r} is duplicated.",
                    "每名保管人使用唯一的 id。",
                    "give every custodian a unique id.",
                )
            )
        seen.add(cid)
    problems += _vpn_checks(settings_file, hip)
    problems += _exchange_checks(settings_file, inv.path, hip)
    problems += _acknowledgement_problems(settings_file, hip)
    problems += build_matrix(hip, topology_from_inventory(inv.groups, inv.hosts), str(settings_file))[1]
    return problems


def exchange_interface_path(inv_dir: Path, exchange: dict[str, Any]) -> Path | None:
    """The interface document the inventory names (relative paths from the inventory folder), or None
    for hipgate's own."""
    named = exchange.get("interface")
    if not isinstance(named, str):
        return None
    path = Path(named).expanduser()
    return path if path.is_absolute() else inv_dir / path


def _exchange_checks(settings_file: Path, inv_dir: Path, hip: dict[str, Any]) -> list[Problem]:
    """Regions outside the province, and an interface document that is not there."""
    exchange = hip.get("exchange")
    if not isinstance(exchange, dict):
        return []
    where = f"{settings_file}: hipgate.exchange"
    problems = []
    sender = exchange.get("sender_code")
    province = sender[:2] if isinstance(sender, str) else None
    for i, region in enumerate(exchange.get("regions") or []):
        if province and isinstance(region, str) and not region.startswith(province):
            problems.append(
                Problem(
                    f"{where}.regions.[{i}]",
                    f"统筹地区 {region} 不属于本省（发送方代码 {sender} 的省级区划 {province}0000）。",
                    f"region {region} is not in this province (sender code {sender}: province {province}0000).",
                    f"只列本省的统筹地区（以 {province} 开头的 6 位代码）。",
                    f"list only the province's own pooling regions (6-digit codes starting {province}).",
                )
            )
    path = exchange_interface_path(inv_dir, exchange)
    if path is not None and path.resolve().is_relative_to(inv_dir.resolve()):
        problems.append(
            Problem(
                f"{where}.interface",
                f"接口文档 {path} 位于清单目录内，Ansible 会把它当作清单读取。",
                f"the interface document {path} is inside the inventory folder, where Ansible reads it as inventory.",
                "把文档放在清单目录之外，如 ../interfaces/national-platform.openapi.yaml。",
                "keep the document outside the inventory folder, e.g. ../interfaces/national-platform.openapi.yaml.",
            )
        )
    elif path is not None and not path.is_file():
        problems.append(
            Problem(
                f"{where}.interface",
                f"接口文档 {path} 不存在或不是普通文件。",
                f"the interface document {path} does not exist or is not a regular file.",
                "指向国家平台下发的 OpenAPI 3 文档，或删除此项以使用 hipgate 自带文档。",
                "point it at the OpenAPI 3 document the national platform issued, or remove it to use hipgate's own.",
            )
        )
    return problems


def _vpn_checks(settings_file: Path, hip: dict[str, Any]) -> list[Problem]:
    """Traffic selectors that cannot work: the peer on our protected side, or one subnet on both sides."""
    vpn = hip.get("vpn") or {}
    try:
        peer = ipaddress.ip_address(vpn["peer_address"])
        local = [ipaddress.ip_network(c) for c in vpn["local_subnets"]]
        platform = (hip.get("network") or {}).get("platform_cidr")
        remote = [ipaddress.ip_network(c) for c in vpn.get("remote_subnets") or [platform]]
    except (KeyError, TypeError, ValueError):
        return []  # missing or malformed fields are already reported by the schema
    where = f"{settings_file}: hipgate.vpn"
    problems = [
        Problem(
            f"{where}.peer_address",
            f"对端地址 {peer} 位于本端受保护网段 {net} 内，隧道无法建立。",
            f"peer address {peer} lies inside the local protected subnet {net}; the tunnel cannot form.",
            "peer_address 填国家平台 VPN 网关地址；local_subnets 只填本省一侧的网段。",
            "set peer_address to the platform's VPN gateway and local_subnets to provincial subnets only.",
        )
        for net in local
        if peer in net
    ]
    problems += [
        Problem(
            f"{where}.local_subnets",
            f"本端网段 {mine} 与平台网段 {theirs} 重叠，流量无法区分走向。",
            f"local subnet {mine} overlaps platform subnet {theirs}; traffic could not be told apart.",
            "与国家平台协商互不重叠的地址段，或更正 local_subnets / remote_subnets。",
            "agree non-overlapping ranges with the platform, or correct local_subnets / remote_subnets.",
        )
        for mine in local
        for theirs in remote
        if mine.overlaps(theirs)
    ]
    return problems


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate an inventory directory (or its hosts.yml); raise UserError listing every problem."""
    path = Path(path)
    hosts_file = _find_hosts_file(path)
    inv_dir = hosts_file.parent
    raw_hosts = read_yaml(hosts_file)
    problems = validate_document(hosts_file, raw_hosts, schema.HOSTS_FILE)
    settings_file, raw_settings = _read_settings(inv_dir)
    problems += validate_document(settings_file, raw_settings, schema.SETTINGS)
    problems += _var_file_problems(inv_dir, settings_file)
    if path.is_dir():  # a hosts file given on its own is the only source Ansible reads
        problems += _extra_sources(inv_dir, hosts_file)
    if problems:
        raise UserError(problems)
    inv = Inventory(path=inv_dir, settings=raw_settings["hipgate"], vars=dict(raw_hosts["all"].get("vars") or {}))
    inv.acknowledged = [dict(a) for a in inv.settings.get("acknowledge") or []]
    for group, members in raw_hosts["all"]["children"].items():
        for name, hvars in members["hosts"].items():
            inv.groups.setdefault(group, []).append(name)
            inv.hosts.setdefault(name, dict(hvars or {}))
    cross = _cross_checks(hosts_file, settings_file, inv, raw_hosts)
    if cross:
        raise UserError(cross)
    return inv
