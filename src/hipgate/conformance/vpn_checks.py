"""Checks of the IPsec VPN to the national platform: GB/T 22239 8.1.2.2 (integrity and confidentiality
in transit) and 8.1.3.1-a (traffic to the platform crosses the boundary only through the tunnel)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from hipgate.conformance.checks import Context, Outcome, Probe, scoped
from hipgate.flows import VPN_GROUP

# strongSwan's names of algorithms an assessment treats as weak (3DES, DES, MD5, SHA-1, small MODP, NULL).
WEAK = re.compile(r"3DES|(?<![A-Z0-9])DES(?![A-Z])|MD5|SHA1|MODP_(768|1024|1536)\b|NULL")
LEAK_TABLE = "inet hipgate_vpn"


@dataclass
class ChildSA:
    name: str
    state: str
    esp: str
    local_ts: list[str] = field(default_factory=list)
    remote_ts: list[str] = field(default_factory=list)


@dataclass
class IkeSA:
    name: str
    state: str
    local: str = ""
    remote: str = ""
    suite: str = ""
    children: list[ChildSA] = field(default_factory=list)


def parse_list_sas(text: str) -> list[IkeSA]:
    """`swanctl --list-sas` (human format): IKE SAs at column 0, their CHILD_SAs indented by two."""
    sas: list[IkeSA] = []
    child: ChildSA | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        words = line.split()
        if indent == 0 and ": #" in line:
            name, rest = line.split(": #", 1)
            parts = [w.strip() for w in rest.split(",")]
            sas.append(IkeSA(name, parts[1] if len(parts) > 1 else ""))
            child = None
        elif not sas:
            continue
        elif indent == 2 and ": #" in line:
            name, rest = line.strip().split(": #", 1)
            parts = [w.strip() for w in rest.split(",")]
            esp = next((p for p in parts if p.startswith(("ESP:", "AH:"))), "")
            child = ChildSA(name, parts[2] if len(parts) > 2 else "", esp)
            sas[-1].children.append(child)
        elif indent == 2 and words[0] in ("local", "remote"):
            setattr(sas[-1], words[0], " ".join(words[1:]))
        elif indent == 2 and "/" in words[0] and child is None:
            sas[-1].suite = words[0]
        elif indent >= 4 and child is not None and words[0] in ("local", "remote"):
            (child.local_ts if words[0] == "local" else child.remote_ts).extend(words[1:])
    return sas


def remote_subnets(ctx: Context) -> list[str]:
    settings = ctx.inventory.settings
    vpn = settings.get("vpn") or {}
    return list(vpn.get("remote_subnets") or [settings["network"]["platform_cidr"]])


def _covers(selectors: list[str], subnet: str) -> bool:
    net = ipaddress.ip_network(subnet, strict=False)
    return any(net.subnet_of(ipaddress.ip_network(ts, strict=False)) for ts in selectors if "/" in ts)


def tunnels_up(sas: list[IkeSA], subnets: list[str]) -> list[tuple[IkeSA, ChildSA]]:
    """Established IKE SAs with an installed CHILD_SA whose remote selectors cover every subnet."""
    return [
        (sa, c)
        for sa in sas
        if sa.state == "ESTABLISHED"
        for c in sa.children
        if c.state == "INSTALLED" and all(_covers(c.remote_ts, s) for s in subnets)
    ]


@scoped(VPN_GROUP, context=True)
def vpn_tunnel_strong(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """An established IKE SA with an installed CHILD_SA covering every platform subnet, negotiated with
    strong algorithms only; the suite in use is the evidence."""
    p = Probe(host)
    _, out = p.run("swanctl --list-sas 2>/dev/null")
    wanted = remote_subnets(ctx)
    up = tunnels_up(parse_list_sas(out), wanted)
    weak = sorted({m.group(0) for sa, c in up for m in WEAK.finditer(f"{sa.suite} {c.esp}")})
    ok = bool(up) and not weak
    suites = [f"IKE {sa.suite}; {c.esp}; {' '.join(c.local_ts)} === {' '.join(c.remote_ts)}" for sa, c in up]
    return p.outcome(
        ok,
        (f"隧道已建立：{'；'.join(suites)}" if up else f"没有覆盖平台网段 {', '.join(wanted)} 的已建立隧道")
        + (f"；弱算法：{', '.join(weak)}" if weak else ""),
        (
            f"tunnel up: {'; '.join(suites)}"
            if up
            else f"no established tunnel covering the platform {', '.join(wanted)}"
        )
        + (f"; weak algorithms: {', '.join(weak)}" if weak else ""),
        {"vpn": [{"ike": sa.suite, "esp": c.esp, "local_ts": c.local_ts, "remote_ts": c.remote_ts} for sa, c in up]},
    )


@scoped(VPN_GROUP, context=True)
def vpn_leak_guard(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """Traffic to every platform subnet that does not go through the tunnel is refused on the host."""
    p = Probe(host)
    rc, table = p.run(f"nft list table {LEAK_TABLE}")
    wanted = remote_subnets(ctx)
    elements = re.search(r"elements = \{([^}]*)\}", table)
    listed = [e.strip() for e in elements.group(1).split(",")] if elements else []
    missing = [s for s in wanted if not _covers(listed, s)]
    rules = [ln.strip() for ln in table.splitlines() if "ip daddr @platform" in ln]
    refuses = bool(rules) and re.search(r"\b(reject|drop)\b", rules[-1]) is not None
    only_tunnel = all(re.search(r"\b(reject|drop)\b", r) or "ipsec" in r or " log " in r for r in rules)
    hooked = "hook output" in table
    refused = refuses and only_tunnel
    ok = rc == 0 and hooked and not missing and refused
    return p.outcome(
        ok,
        f"防泄漏规则表{'存在' if rc == 0 else '不存在'}；未覆盖的平台网段：{', '.join(missing) or '无'}；"
        f"隧道外流量{'被拒绝' if refused else '未被拒绝'}",
        f"leak-guard table {'present' if rc == 0 else 'absent'}; platform subnets not covered: "
        f"{', '.join(missing) or 'none'}; traffic outside the tunnel {'refused' if refused else 'not refused'}",
    )
