"""`hipgate preflight network`: before go-live, can each host reach the national platform the way the
deployment declares? DNS server, names, TCP ports, UDP 53, ICMP, the leased-line route, the VPN and
time, each result with what to ask the network operator when it fails (zh/en)."""

from __future__ import annotations

import base64
import concurrent.futures
import ipaddress
import json
import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hipgate.conformance.vpn_checks import parse_list_sas, tunnels_up
from hipgate.flows import VPN_GROUP
from hipgate.inventory.load import Inventory

PROBE_SOURCE = Path(__file__).with_name("remote_probe.py")
DEFAULT_GROUPS = (VPN_GROUP,)
DEFAULT_PORTS = (443,)
TUNNEL_DEVICES = ("ipsec", "tun", "vti", "xfrm")
PROBE_TIMEOUT_S = 2.0

# Check ids in the order they are shown, with their titles.
TITLES: dict[str, tuple[str, str]] = {
    "dns_server": ("DNS 服务器应答（UDP 53）", "DNS server answers (UDP 53)"),
    "name": ("平台域名解析到平台网段", "platform name resolves into the platform network"),
    "tcp": ("TCP 端口可达", "TCP port reachable"),
    "icmp": ("ICMP 可达", "ICMP reaches the platform"),
    "route": ("平台路由走医保专线网卡", "platform route leaves through the leased-line NIC"),
    "vpn": ("VPN 隧道已建立", "VPN tunnel established"),
    "time": ("时间已同步", "time synchronised"),
}


@dataclass
class Row:
    host: str
    check: str
    target: str
    ok: bool
    observed_zh: str
    observed_en: str
    fix_zh: str = ""
    fix_en: str = ""
    # Passes, but below a recommended value (terminal memory, disk).
    warning: bool = False

    def __post_init__(self) -> None:
        if self.ok:  # a hint only where something must be done
            self.fix_zh = self.fix_en = ""


def platform_networks(settings: dict[str, Any]) -> list[ipaddress.IPv4Network]:
    vpn = settings.get("vpn") or {}
    cidrs = [settings["network"]["platform_cidr"], *(vpn.get("remote_subnets") or [])]
    return [ipaddress.IPv4Network(c, strict=False) for c in dict.fromkeys(cidrs)]


def preflight_hosts(inv: Inventory, limit: list[str] | None = None) -> list[str]:
    groups = inv.settings["network"].get("preflight_groups") or list(DEFAULT_GROUPS)
    hosts = [h for g in groups for h in inv.group_hosts(g)]
    return [h for h in dict.fromkeys(hosts) if not limit or h in limit]


def leased_line_interface(inv: Inventory, host: str) -> str:
    return str(inv.hosts[host].get("hipgate_leased_line_interface") or inv.settings["network"]["leased_line_interface"])


def has_vpn(inv: Inventory, host: str) -> bool:
    return bool(inv.settings.get("vpn")) and host in inv.group_hosts(VPN_GROUP)


def spec_for(inv: Inventory, host: str) -> dict[str, Any]:
    """What the probe measures on `host` (no secrets: this travels on the command line)."""
    network = inv.settings["network"]
    nets = platform_networks(inv.settings)
    probes = [str(nets[0].network_address + 1)]
    if has_vpn(inv, host):
        probes.append(inv.settings["vpn"]["peer_address"])
    return {
        "dns_servers": list(network["dns_servers"]),
        "names": list(network.get("platform_names") or []),
        "tcp_ports": list(network.get("platform_ports") or DEFAULT_PORTS),
        "icmp": True,
        "route_probes": probes,
        "vpn": has_vpn(inv, host),
        "time": True,
        "timeout": PROBE_TIMEOUT_S,
    }


def probe_command(spec: dict[str, Any], source_file: Path = PROBE_SOURCE) -> str:
    """The probe's source travels base64-encoded on stdin of `python3 -`; the spec is its argument."""
    source = base64.b64encode(source_file.read_bytes()).decode()
    return f"echo {source} | base64 -d | sudo -n python3 - {shlex.quote(json.dumps(spec))}"


def _in(address: str, nets: list[ipaddress.IPv4Network]) -> bool:
    return any(ipaddress.IPv4Address(address) in n for n in nets)


def judge(inv: Inventory, host: str, spec: dict[str, Any], raw: dict[str, Any]) -> list[Row]:
    """Rows for one host from the probe's raw observations."""
    nets = platform_networks(inv.settings)
    net_text = ", ".join(str(n) for n in nets)
    me = inv.address(host)
    rows: list[Row] = []

    def row(check: str, target: str, ok: bool, obs: tuple[str, str], fix: tuple[str, str] = ("", "")) -> None:
        rows.append(Row(host, check, target, ok, obs[0], obs[1], *(("", "") if ok else fix)))

    for server in spec["dns_servers"]:
        asked = [d for d in raw["dns"] if d["server"] == server]
        answered = [d for d in asked if d["rcode"] is not None]
        if not asked:
            row(
                "dns_server",
                server,
                False,
                ("未检查（清单未列出平台域名）", "not checked (no platform_names listed)"),
                (
                    "在 hipgate.network.platform_names 中列出平台域名。",
                    "list the platform's names in hipgate.network.platform_names.",
                ),
            )
        elif answered:
            row("dns_server", server, True, (f"{answered[0]['ms']} ms 内应答", f"answered in {answered[0]['ms']} ms"))
        else:
            err = asked[0]["error"]
            row(
                "dns_server",
                server,
                False,
                (f"无应答（{err}）", f"no answer ({err})"),
                (
                    f"请网络运营方放通 {me} 到 {server} 的 UDP 53，并确认该 DNS 服务器在运行。",
                    f"ask the network operator to open UDP 53 from {me} to {server}, and confirm that DNS server runs.",
                ),
            )
    for name in spec["names"]:
        answered = [d for d in raw["dns"] if d["name"] == name and d["rcode"] is not None]
        found = sorted({a for d in answered for a in d["answers"]})
        outside = [a for a in found if not _in(a, nets)]
        if not answered:
            row(
                "name",
                name,
                False,
                ("未解析：没有 DNS 服务器应答", "not resolved: no DNS server answered"),
                ("先解决 DNS 服务器不可达的问题。", "fix the unreachable DNS server first."),
            )
        elif not found:
            rcode = answered[0]["rcode"]
            why = (
                ("域名不存在（NXDOMAIN）", "no such name (NXDOMAIN)")
                if rcode == 3
                else (f"无 A 记录（rcode {rcode}）", f"no A record (rcode {rcode})")
            )
            row(
                "name",
                name,
                False,
                why,
                (
                    f"请国家平台确认域名 {name} 已登记，并确认使用的是平台提供的 DNS 服务器。",
                    f"ask the platform to confirm {name} is registered, and that these are the platform's DNS servers.",
                ),
            )
        elif outside:
            row(
                "name",
                name,
                False,
                (
                    f"解析到平台网段外：{', '.join(outside)}",
                    f"resolves outside the platform network: {', '.join(outside)}",
                ),
                (
                    f"平台域名应解析到 {net_text}：请确认 DNS 服务器为平台提供的服务器。",
                    f"platform names must resolve into {net_text}: make sure the DNS servers are the platform's.",
                ),
            )
        else:
            row("name", name, True, (f"解析为 {', '.join(found)}", f"resolves to {', '.join(found)}"))
    for t in raw["tcp"]:
        target = f"{t['address']}:{t['port']}"
        result = t["result"]
        if result == "open":
            row("tcp", target, True, (f"已连通（{t['ms']} ms）", f"open ({t['ms']} ms)"))
        elif result == "refused":
            row(
                "tcp",
                target,
                False,
                ("到达对端但端口未开放（连接被拒绝）", "reached the peer, but the port is closed (refused)"),
                (
                    f"请国家平台确认 {target} 上的服务在运行。",
                    f"ask the platform to confirm the service on {target} runs.",
                ),
            )
        elif result == "timeout":
            row(
                "tcp",
                target,
                False,
                ("超时：途中被防火墙丢弃", "timed out: dropped on the way by a firewall"),
                (
                    f"请网络运营方放通 {me} 到 {target} 的 TCP {t['port']}（含平台侧防火墙）。",
                    f"ask the network operator to open TCP {t['port']} from {me} to {t['address']} "
                    "(the platform's firewall too).",
                ),
            )
        else:
            row(
                "tcp",
                target,
                False,
                (
                    f"无法到达（{result}）：本机或途中拒绝/无路由",
                    f"unreachable ({result}): refused locally or no route",
                ),
                (
                    "检查到平台网段的路由与 VPN 隧道（见 route、vpn 两项）。",
                    "check the route and the VPN tunnel to the platform (see the route and vpn rows).",
                ),
            )
    for p in raw["icmp"]:
        ok = p["rc"] == 0
        row(
            "icmp",
            p["address"],
            ok,
            ("可 ping 通", "answers ping") if ok else ("ping 不通", "no answer to ping"),
            (
                f"请网络运营方放通 {me} 到 {p['address']} 的 ICMP echo。",
                f"ask the network operator to allow ICMP echo from {me} to {p['address']}.",
            ),
        )
    rows += _route_rows(inv, host, spec, raw)
    if spec["vpn"]:
        rows.append(_vpn_row(inv, host, raw["vpn"], nets))
    if spec["time"]:
        rows.append(_time_row(host, raw["time"]))
    return rows


def _route_dev(res: dict[str, Any] | None) -> tuple[str, str]:
    """(device, source address) of `ip -j route get`, or ("", error)."""
    if not res or res["rc"] != 0:
        return "", (res or {}).get("stderr", "").strip() or "no route"
    route = json.loads(res["stdout"])[0]
    return str(route.get("dev", "")), str(route.get("prefsrc", ""))


def _route_rows(inv: Inventory, host: str, spec: dict[str, Any], raw: dict[str, Any]) -> list[Row]:
    want = leased_line_interface(inv, host)
    probe = spec["route_probes"][0]
    dev, src = _route_dev(raw["routes"].get(probe))
    via = dev
    if dev.startswith(TUNNEL_DEVICES) and len(spec["route_probes"]) > 1:
        # Userspace IPsec routes through its TUN device; the tunnel itself must use the leased line.
        via, _ = _route_dev(raw["routes"].get(spec["route_probes"][1]))
    ok = via == want
    shown = dev if via == dev else f"{dev}（隧道经 {via}）"
    shown_en = dev if via == dev else f"{dev} (tunnel over {via})"
    cidr = str(platform_networks(inv.settings)[0])
    return [
        Row(
            host,
            "route",
            cidr,
            ok,
            f"经 {shown or '无'}，源地址 {src}" if dev else f"无路由：{src}",
            f"via {shown_en or 'none'}, source {src}" if dev else f"no route: {src}",
            ""
            if ok
            else f"平台路由应走医保专线网卡 {want}：为 {cidr} 配置经 {want} 的路由，"
            f"删除经 {via or '其他网卡'} 的路由。",
            ""
            if ok
            else f"the platform route must leave through the leased-line NIC {want}: route {cidr} via {want} "
            f"and remove the route via {via or 'the other NIC'}.",
        )
    ]


def _vpn_row(inv: Inventory, host: str, res: dict[str, Any] | None, nets: list[ipaddress.IPv4Network]) -> Row:
    sas = parse_list_sas((res or {}).get("stdout", ""))
    up = tunnels_up(sas, [str(n) for n in nets])
    peer = inv.settings["vpn"]["peer_address"]
    if up:
        sa, c = up[0]
        return Row(host, "vpn", peer, True, f"已建立：{sa.suite}，{c.esp}", f"established: {sa.suite}, {c.esp}")
    states = ", ".join(sa.state for sa in sas) or ("swanctl 不可用" if not res or res["rc"] != 0 else "无 SA")
    states_en = ", ".join(sa.state for sa in sas) or ("swanctl unavailable" if not res or res["rc"] != 0 else "no SA")
    return Row(
        host,
        "vpn",
        peer,
        False,
        f"未建立（{states}）",
        f"not established ({states_en})",
        f"启动隧道（systemctl start strongswan 或 swanctl --initiate）；请国家平台确认放通来自本机专线地址的 "
        f"UDP 500/4500 与 ESP，且对端 {peer} 已配置本端身份与网段。",
        f"start the tunnel (systemctl start strongswan or swanctl --initiate); ask the platform to allow UDP "
        f"500/4500 and ESP from this host's leased-line address, and to configure this side's identity and subnets "
        f"on {peer}.",
    )


def _time_row(host: str, res: dict[str, Any] | None) -> Row:
    values = {}
    for line in (res or {}).get("stdout", "").splitlines():
        key, _, value = line.partition(":")
        values[key.strip()] = value.strip()
    leap, ref = values.get("Leap status", "unknown"), values.get("Reference ID", "")
    ok = leap == "Normal" and bool(ref) and not ref.startswith(("00000000", "7F7F0101"))
    return Row(
        host,
        "time",
        ref or "-",
        ok,
        f"同步状态 {leap}，参考源 {ref or '无'}",
        f"leap status {leap}, reference {ref or 'none'}",
        "检查 chronyc sources；请网络运营方放通到 NTP 服务器的 UDP 123。",
        "check chronyc sources; ask the network operator to open UDP 123 to the NTP servers.",
    )


def run_probe(inv: Inventory, host: str, connection: Any, spec: dict[str, Any], source: Path) -> dict[str, Any] | Row:
    """The probe's raw observations, or the failed row of a host that could not be probed."""
    res = connection.run(probe_command(spec, source))
    try:
        return dict(json.loads(res.stdout))
    except ValueError:
        err = (res.stderr or res.stdout).strip()[-300:]
        return Row(
            host,
            "probe",
            inv.address(host),
            False,
            f"无法检查：{err}",
            f"could not probe: {err}",
            "确认可以 SSH 登录该主机并使用 sudo，且已安装 python3。",
            "make sure ssh and sudo work on this host and python3 is installed.",
        )


def probe_host(inv: Inventory, host: str, connection: Any) -> list[Row]:
    """Run the probe on one host and judge it; a host that cannot be probed is one failed row."""
    spec = spec_for(inv, host)
    raw = run_probe(inv, host, connection, spec, PROBE_SOURCE)
    return [raw] if isinstance(raw, Row) else judge(inv, host, spec, raw)


def run_preflight(
    inv: Inventory, hosts: list[str], connect: Any, workers: int = 32, probe: Any = None, titles: Any = None
) -> tuple[list[Row], float]:
    """Probe every host in parallel; rows in host order, then check order. Returns (rows, seconds)."""
    probe = probe or probe_host
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(hosts)))) as pool:
        done = dict(zip(hosts, pool.map(lambda h: probe(inv, h, connect(h)), hosts), strict=True))
    order = list(titles or TITLES)
    rows = [r for h in hosts for r in sorted(done[h], key=lambda r: order.index(r.check) if r.check in order else -1)]
    return rows, time.monotonic() - start


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
