"""The flow matrix: who may open which port on which host.

One module, used three ways: `hipgate inventory check` validates the matrix, the firewall role's
filter plugin turns it into each host's inbound rules, and the conformance suite probes the hosts
and compares what gets through with what the matrix allows. Keeping one resolver means the
firewall, the check and the report can never disagree about what is allowed.

Inputs are plain data (the inventory's `hipgate` settings, group membership, host addresses) so the
Ansible filter can call it with what Ansible already has.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hipgate.errors import Problem

ALL = "all"  # every managed host
# Hosts hipgate does not manage: the national platform, the lab's unauthorised host, simulated peers.
UNMANAGED_GROUPS = ("natplat", "outsider", "simulated_peers")
# Seed requirement 严禁未经授权直接访问后台数据库: only these groups may reach the database port.
# `vault` is OpenBao's database engine, which makes the short-lived logins the other two use; its
# own PostgreSQL role can create logins but is no superuser, and nobody knows its password.
DB_CLIENT_GROUPS = ("middleware", "bastion", "vault")
VAULT_PORT = 8200
BROKER_ROLE = "hipgate_vault"  # also in roles/postgresql/defaults/main.yml (postgresql_system_clients)
# The backup sites' reader on the database host (roles/backup, backup_pg_remote_user): a login with no
# password (peer on the local socket only) that may run a backup and nothing more.
BACKUP_READER_ROLE = "hipgate_backup"
DEFAULT_DB_PORT = 5432
SSH_PORT = 22
LOG_COLLECTOR_PORT = 6514
EXCHANGE_RELAY_PORT = 8443  # hipgate.exchange.relay_port's default
PROTOS = ("tcp", "udp", "esp")
# The firewall role calls this module with whatever Ansible holds (an override the inventory check
# never saw), so names and protocols are checked here too before they reach nftables.conf.
_FLOW_NAME = re.compile(r"[a-z][a-z0-9-]{1,40}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_PURPOSE_BAD = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029\"]")
IKE_PORTS = ((500, 500), (4500, 4500))
# The hosts that terminate the VPN to the national platform (roles/vpn_endpoint).
VPN_GROUP = "frontend"


@dataclass(frozen=True)
class Flow:
    name: str
    sources: tuple[str, ...]  # group names, host names or IPv4 CIDRs
    targets: tuple[str, ...]  # group or host names
    proto: str
    ports: tuple[tuple[int, int], ...]  # inclusive ranges; empty for esp
    purpose: str
    implied: bool = False

    def ports_text(self) -> str:
        return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ports)


@dataclass(frozen=True)
class Rule:
    """One inbound allowance on one destination host."""

    flow: str
    proto: str
    ports: str  # nft set syntax without braces: "22" or "80, 443" or "8000-8010"
    sources: tuple[str, ...]  # CIDRs
    purpose: str
    implied: bool


@dataclass
class Topology:
    """What the resolver needs to know about the inventory."""

    groups: dict[str, list[str]]
    addresses: dict[str, str]

    @property
    def managed(self) -> list[str]:
        skip = {h for g in UNMANAGED_GROUPS for h in self.groups.get(g, [])}
        return [h for h in self.addresses if h not in skip]

    def hosts_of(self, name: str) -> list[str] | None:
        """Hosts a name stands for: `all`, a group, or a host; None when unknown."""
        if name == ALL:
            return self.managed
        if name in self.groups:
            return list(self.groups[name])
        if name in self.addresses:
            return [name]
        return None

    def networks_of(self, name: str) -> list[ipaddress.IPv4Network] | None:
        hosts = self.hosts_of(name)
        if hosts is not None:
            return [ipaddress.IPv4Network(f"{self.addresses[h]}/32") for h in hosts]
        try:
            return [ipaddress.IPv4Network(name, strict=True)]
        except ValueError:
            return None


def _ports(raw: Iterable[Any]) -> tuple[tuple[int, int], ...] | str:
    """Parse [5432, "8000-8010"]; on error return the offending item as text."""
    out = []
    for item in raw:
        text = str(item)
        if isinstance(item, bool) or not re.fullmatch(r"[0-9]{1,5}(?:-[0-9]{1,5})?", text):
            return text
        lo, sep, hi = text.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            return text
        if not (1 <= a <= b <= 65535):
            return text
        out.append((a, b))
    return tuple(out)


def implied_db_clients(groups: dict[str, list[str]]) -> list[dict[str, Any]]:
    """pg_hba entries hipgate itself needs (the postgresql role writes the same ones): OpenBao's
    engine, and the superuser's break-glass login from the bastion with the password in custody."""
    clients = []
    if groups.get("vault"):
        clients.append({"from": "vault", "database": "postgres", "role": BROKER_ROLE, "implied": True})
    if groups.get("bastion"):
        clients.append({"from": "bastion", "database": "postgres", "role": "postgres", "implied": True})
    return clients


def implied_flows(
    groups: dict[str, list[str]],
    management_networks: list[str],
    db_port: int,
    vpn: dict[str, Any] | None = None,
    exchange: dict[str, Any] | None = None,
) -> list[Flow]:
    """Flows hipgate itself needs on every deployment; never cut, shown in the report as implied."""
    flows = vpn_flows(vpn) if vpn and groups.get(VPN_GROUP) else []
    flows += [
        Flow(
            "management-ssh",
            tuple(management_networks),
            (ALL,),
            "tcp",
            ((SSH_PORT, SSH_PORT),),
            "管理网段 SSH（Ansible 与运维入口）/ SSH from the management networks (Ansible, operators)",
            True,
        )
    ]
    if groups.get("bastion"):
        flows.append(
            Flow(
                "bastion-ssh",
                ("bastion",),
                (ALL,),
                "tcp",
                ((SSH_PORT, SSH_PORT),),
                "经堡垒机运维（ProxyJump）/ administration through the bastion (ProxyJump)",
                True,
            )
        )
    if groups.get("log_collector"):
        flows.append(
            Flow(
                "log-collection",
                (ALL,),
                ("log_collector",),
                "tcp",
                ((LOG_COLLECTOR_PORT, LOG_COLLECTOR_PORT),),
                "日志经 TLS 汇集（GBT22239-8.1.4.3-c）/ logs forwarded over TLS (GBT22239-8.1.4.3-c)",
                True,
            )
        )
    if groups.get("vault"):
        flows.append(
            Flow(
                "custody-api",
                tuple(management_networks),
                ("vault",),
                "tcp",
                ((VAULT_PORT, VAULT_PORT),),
                "保管人与运维人员使用 OpenBao / custodians and operators reach OpenBao",
                True,
            )
        )
        if groups.get("database"):
            flows.append(
                Flow(
                    "secrets-to-db",
                    ("vault",),
                    ("database",),
                    "tcp",
                    ((db_port, db_port),),
                    "OpenBao 创建短期数据库账号 / OpenBao makes short-lived database logins",
                    True,
                )
            )
    if groups.get("database") and groups.get("backup_sites"):
        flows += backup_flows()
    if exchange is not None and groups.get("middleware") and groups.get(VPN_GROUP):
        flows.append(exchange_flow(exchange))
    return flows


def exchange_flow(exchange: dict[str, Any]) -> Flow:
    """The middleware's requests to the relay on the front-end server (TLS, both sides' host
    certificates). Only this direction: the host facing the national network never connects inward."""
    port = int(exchange.get("relay_port", EXCHANGE_RELAY_PORT))
    return Flow(
        "exchange-relay",
        ("middleware",),
        (VPN_GROUP,),
        "tcp",
        ((port, port),),
        "中间件经前置机中继与国家平台交换数据 / the middleware exchanges data with the platform through the relay",
        True,
    )


def vpn_flows(vpn: dict[str, Any]) -> list[Flow]:
    """IKE and ESP from the national platform's VPN peer to the front-end server (either side may
    start an exchange: rekeying, dead-peer detection)."""
    peer = (f"{vpn['peer_address']}/32",)
    return [
        Flow(
            "vpn-ike",
            peer,
            (VPN_GROUP,),
            "udp",
            IKE_PORTS,
            "国家平台 VPN 对端的 IKEv2 与 NAT-T / IKEv2 and NAT-T from the national platform's VPN peer",
            True,
        ),
        Flow(
            "vpn-esp",
            peer,
            (VPN_GROUP,),
            "esp",
            (),
            "国家平台 VPN 对端的 ESP / ESP from the national platform's VPN peer",
            True,
        ),
    ]


def backup_flows() -> list[Flow]:
    """pgBackRest and backup logs between the database host and the off-site repository hosts."""
    ssh = ((SSH_PORT, SSH_PORT),)
    return [
        Flow(
            "backup-to-sites",
            ("database",),
            ("backup_sites",),
            "tcp",
            ssh,
            "WAL 归档与备份日志写入异地仓库 / WAL archiving and backup logs to the off-site repositories",
            True,
        ),
        Flow(
            "backup-from-sites",
            ("backup_sites",),
            ("database",),
            "tcp",
            ssh,
            "异地站点经 SSH 拉取备份（pgBackRest 仓库主机）/ sites take their backups over SSH "
            "(pgBackRest repository hosts)",
            True,
        ),
        Flow(
            "backup-logs-between-sites",
            ("backup_sites",),
            ("backup_sites",),
            "tcp",
            ssh,
            "备份日志复制到每个异地站点 / backup logs copied to every off-site site",
            True,
        ),
    ]


def _problem(where: str, zh: str, en: str, fix_zh: str, fix_en: str) -> Problem:
    return Problem(where, zh, en, fix_zh, fix_en)


def parse_flows(raw: list[dict[str, Any]], topo: Topology, where: str) -> tuple[list[Flow], list[Problem]]:
    """Declared flows (already shape-checked by the inventory schema) with name/host/port problems."""
    flows: list[Flow] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    known = ", ".join(sorted({ALL, *topo.groups, *topo.addresses}))
    for i, f in enumerate(raw):
        at = f"{where}.[{i}]"
        name = str(f.get("name", ""))
        if not _FLOW_NAME.fullmatch(name):
            problems.append(
                _problem(
                    f"{at}.name",
                    f"流名称 {name!r} 格式不正确。",
                    f"flow name {name!r} is malformed.",
                    "小写字母开头，仅含小写字母、数字与 -，如 app-to-db。",
                    "start with a lower-case letter; use lower case, digits and - only, e.g. app-to-db.",
                )
            )
            continue
        proto = f.get("proto", "tcp")
        purpose = f.get("purpose", "")
        if proto not in PROTOS or not isinstance(purpose, str) or _PURPOSE_BAD.search(purpose):
            problems.append(
                _problem(
                    f"{at}.proto",
                    f"流 {name} 的协议 {proto!r} 或用途含不允许的内容。",
                    f"flow {name} has a protocol {proto!r} other than tcp/udp/esp, "
                    "or a purpose with a newline or quote.",
                    "proto 只能是 tcp、udp 或 esp；purpose 为单行文本。",
                    "proto must be exactly tcp, udp or esp; purpose one line of text.",
                )
            )
            continue
        if name in seen:
            problems.append(
                _problem(
                    f"{at}.name",
                    f"流名称 {name!r} 重复。",
                    f"flow name {name!r} is used twice.",
                    "每条流使用唯一的名称。",
                    "give every flow its own name.",
                )
            )
        seen.add(name)
        bad = False
        for key in ("from", "to"):
            for item in f.get(key) or []:
                if not isinstance(item, str) or not (_NAME.fullmatch(item) or (key == "from" and "/" in item)):
                    ok = False
                else:
                    ok = topo.networks_of(item) is not None if key == "from" else topo.hosts_of(item) is not None
                if not ok:
                    bad = True
                    problems.append(
                        _problem(
                            f"{at}.{key}",
                            f"流 {name} 引用了未知的主机或组 {item!r}。",
                            f"flow {name} names an unknown host or group {item!r}.",
                            f"使用清单中的组名或主机名（{known}）"
                            + ("，或 IPv4 网段如 10.86.0.0/24。" if key == "from" else "。"),
                            f"use a group or host of the inventory ({known})"
                            + (", or an IPv4 network such as 10.86.0.0/24." if key == "from" else "."),
                        )
                    )
        ports = _ports(f.get("ports") or [])
        if isinstance(ports, str):
            bad = True
            problems.append(
                _problem(
                    f"{at}.ports",
                    f"流 {name} 的端口 {ports!r} 无效。",
                    f"flow {name} has an invalid port {ports!r}.",
                    '端口为 1-65535 的整数，或 "起-止" 范围如 "8000-8010"（起 ≤ 止）。',
                    'a port is an integer 1-65535, or a range "first-last" such as "8000-8010" (first ≤ last).',
                )
            )
            ports = ()
        elif proto == "esp" and ports:
            bad = True
            problems.append(
                _problem(
                    f"{at}.ports",
                    f"流 {name} 协议为 esp，没有端口。",
                    f"flow {name} is esp, which has no ports.",
                    "删除 ports，或把协议改为 tcp/udp。",
                    "remove ports, or change proto to tcp/udp.",
                )
            )
        elif proto != "esp" and not ports:
            bad = True
            problems.append(
                _problem(
                    f"{at}.ports",
                    f"流 {name} 没有端口。",
                    f"flow {name} has no ports.",
                    "为 tcp/udp 流列出端口，如 ports: [5432]。",
                    "list the ports of a tcp/udp flow, e.g. ports: [5432].",
                )
            )
        if not bad:
            flows.append(Flow(name, tuple(f["from"]), tuple(f["to"]), proto, ports, str(f.get("purpose", "")), False))
    return flows, problems


@dataclass
class FlowMatrix:
    topology: Topology
    flows: list[Flow]
    db_port: int = DEFAULT_DB_PORT

    def rules_for(self, host: str) -> list[Rule]:
        """Inbound allowances on one host, in flow order."""
        rules = []
        for f in self.flows:
            targets = {h for t in f.targets for h in self.topology.hosts_of(t) or []}
            if host not in targets:
                continue
            sources = sorted(
                {str(n) for s in f.sources for n in self.topology.networks_of(s) or []},
                key=lambda s: ipaddress.IPv4Network(s),
            )
            # A host never needs a rule for itself: loopback is accepted before any flow.
            own = f"{self.topology.addresses.get(host)}/32"
            sources = [s for s in sources if s != own]
            if sources:
                rules.append(Rule(f.name, f.proto, f.ports_text(), tuple(sources), f.purpose, f.implied))
        return rules

    def allows(self, source_address: str, dest: str, proto: str, port: int) -> Flow | None:
        """The flow that lets source_address reach dest:port, or None."""
        addr = ipaddress.IPv4Address(source_address)
        for f in self.flows:
            if f.proto != proto or not any(a <= port <= b for a, b in f.ports):
                continue
            if dest not in {h for t in f.targets for h in self.topology.hosts_of(t) or []}:
                continue
            if any(addr in n for s in f.sources for n in self.topology.networks_of(s) or []):
                return f
        return None

    def protected_tcp_ports(self) -> list[tuple[str, int]]:
        """(managed host, tcp port) pairs a reachability probe covers: every tcp port any flow opens,
        plus ssh and the database port, on every managed host."""
        ports = {SSH_PORT, self.db_port}
        for f in self.flows:
            if f.proto == "tcp":
                for a, b in f.ports:
                    ports.update(range(a, min(b, a + 3) + 1))  # a range is sampled at its start
        return [(h, p) for h in self.topology.managed for p in sorted(ports)]


def _expand(f: Flow, topo: Topology) -> list[tuple[ipaddress.IPv4Network, str, tuple[int, int]]]:
    dests = {h for t in f.targets for h in topo.hosts_of(t) or []}
    nets = [n for s in f.sources for n in topo.networks_of(s) or []]
    return [(n, d, p) for n in nets for d in sorted(dests) for p in f.ports or ((0, 0),)]


def _conflicts(flows: list[Flow], topo: Topology, db_port: int, where: str) -> list[Problem]:
    problems: list[Problem] = []
    expanded = [(f, _expand(f, topo)) for f in flows]
    for i, (f, ef) in enumerate(expanded):
        for g, eg in expanded[i + 1 :]:
            if (f.implied and g.implied) or f.proto != g.proto:
                continue
            hit = next(
                (
                    (d1, max(p1[0], p2[0]))
                    for n1, d1, p1 in ef
                    for n2, d2, p2 in eg
                    if d1 == d2 and n1.overlaps(n2) and p1[0] <= p2[1] and p2[0] <= p1[1]
                ),
                None,
            )
            if hit:
                user = f if g.implied else g
                problems.append(
                    _problem(
                        f"{where}: {user.name}",
                        f"流 {f.name} 与 {g.name} 重叠：二者都允许访问 {hit[0]} 的 {f.proto}/{hit[1]}。",
                        f"flows {f.name} and {g.name} overlap: both allow {f.proto}/{hit[1]} on {hit[0]}.",
                        "合并或删除其中一条，保持规则最少（GBT22239-8.1.3.2-b）"
                        + ("；隐含流由 hipgate 自动提供。" if f.implied or g.implied else "。"),
                        "merge or remove one of them to keep the rule set minimal (GBT22239-8.1.3.2-b)"
                        + ("; implied flows are provided by hipgate." if f.implied or g.implied else "."),
                    )
                )
    allowed = {h for grp in DB_CLIENT_GROUPS for h in topo.groups.get(grp, [])}
    allowed_nets = [ipaddress.IPv4Network(f"{topo.addresses[h]}/32") for h in allowed]
    databases = set(topo.groups.get("database", []))
    for f, ef in expanded:
        if f.proto != "tcp":
            continue
        for net, dest, (a, b) in ef:
            if dest in databases and a <= db_port <= b and net not in allowed_nets:
                problems.append(
                    _problem(
                        f"{where}: {f.name}",
                        f"流 {f.name} 允许 {net} 访问数据库 {dest}:{db_port}，违反“严禁未经授权直接访问后台数据库”。",
                        f"flow {f.name} lets {net} reach the database {dest}:{db_port}, which contradicts "
                        "'no unauthorised direct access to the backend database'.",
                        f"只允许 {'、'.join(DB_CLIENT_GROUPS)} 组访问数据库端口；运维人员经堡垒机访问。",
                        f"only the {' and '.join(DB_CLIENT_GROUPS)} groups may reach the database port; "
                        "administrators go through the bastion.",
                    )
                )
                break
    return problems


def build_matrix(settings: dict[str, Any], topo: Topology, where: str) -> tuple[FlowMatrix, list[Problem]]:
    """The whole matrix (implied + declared flows) and every problem found in it."""
    network = settings.get("network") or {}
    database = settings.get("database") or {}
    db_port = int(database.get("port", DEFAULT_DB_PORT))
    declared, problems = parse_flows(settings.get("flows") or [], topo, f"{where}: hipgate.flows")
    vpn = settings.get("vpn") if isinstance(settings.get("vpn"), dict) and settings["vpn"].get("peer_address") else None
    exchange = settings.get("exchange") if isinstance(settings.get("exchange"), dict) else None
    networks = list(network.get("management_networks") or [])
    flows = implied_flows(topo.groups, networks, db_port, vpn, exchange) + declared
    problems += _conflicts(flows, topo, db_port, f"{where}: hipgate.flows")
    matrix = FlowMatrix(topo, flows, db_port)
    problems += _db_client_problems(database.get("clients") or [], matrix, f"{where}: hipgate.database.clients")
    return matrix, problems


def _db_client_problems(clients: list[dict[str, Any]], matrix: FlowMatrix, where: str) -> list[Problem]:
    """pg_hba and the firewall must agree: every listed client must also pass the firewall."""
    topo = matrix.topology
    problems: list[Problem] = []
    for i, c in enumerate(clients):
        hosts = topo.hosts_of(str(c.get("from", "")))
        if hosts is None:
            problems.append(
                _problem(
                    f"{where}.[{i}].from",
                    f"数据库客户端引用了未知的主机或组 {c.get('from')!r}。",
                    f"database client names an unknown host or group {c.get('from')!r}.",
                    "使用 middleware、bastion 组或其中的主机名。",
                    "use the middleware or bastion group, or one of their hosts.",
                )
            )
            continue
        for h in hosts:
            for db in topo.groups.get("database", []):
                if not matrix.allows(topo.addresses[h], db, "tcp", matrix.db_port):
                    problems.append(
                        _problem(
                            f"{where}.[{i}].from",
                            f"{h} 列入 pg_hba，但防火墙不允许它访问 {db}:{matrix.db_port}。",
                            f"{h} is listed for pg_hba but the firewall does not let it reach {db}:{matrix.db_port}.",
                            "在 hipgate.flows 中为它添加到数据库端口的流，或删除该客户端。",
                            "add a flow for it to the database port in hipgate.flows, or remove the client.",
                        )
                    )
    return problems


def topology_from_inventory(groups: dict[str, list[str]], hosts: dict[str, dict[str, Any]]) -> Topology:
    return Topology({g: list(m) for g, m in groups.items()}, {h: str(v["ansible_host"]) for h, v in hosts.items()})
