"""Checks of the host firewall (GB/T 22239 8.1.3.2) and of who can reach what (the flow matrix)."""

from __future__ import annotations

import re
from typing import Any

from hipgate.conformance.checks import MANAGED, Context, Outcome, Probe, check, scoped

PROBE_TIMEOUT_S = 2
# bash's /dev/tcp: 0 connected, 1 refused (passed the firewall, nothing listening), 124 timed out (dropped).
REACHED = {0: "open", 1: "refused"}
DROPPED = 124


def _input_chains(ruleset: str) -> list[list[str]]:
    """The rule lines of every base chain hooked on input."""
    chains: list[list[str]] = []
    current: list[str] | None = None
    for raw in ruleset.splitlines():
        line = raw.strip()
        if line.startswith("chain "):
            current = []
        elif current is not None and line == "}":
            if any("hook input" in ln for ln in current):
                chains.append(current)
            current = None
        elif current is not None and line:
            current.append(line)
    return chains


def _is_base_allowance(line: str) -> bool:
    """Rules every host has that are not flows: loopback, replies of allowed sessions, ICMP."""
    return (
        line.startswith('iif "lo"')
        or line.startswith("ct state established,related")
        or bool(re.match(r"meta l4proto \{ (icmp|1), (ipv6-icmp|58) \} accept", line))
    )


@check
def firewall_default_deny(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, enabled = p.run("systemctl is-enabled nftables")
    _, ruleset = p.run("nft list ruleset")
    heads = [ln.strip() for ln in ruleset.splitlines() if "hook input" in ln]
    chains = _input_chains(ruleset)
    logged = bool(chains) and all(any(" log prefix " in ln for ln in c) for c in chains)
    # Every base chain hooked on input must drop by default, and say what it drops.
    ok = enabled.strip() == "enabled" and bool(heads) and all("policy drop" in ln for ln in heads) and logged
    return p.outcome(
        ok,
        f"nftables 开机启用={enabled.strip()}；input 基础链：{'; '.join(heads) or '无'}；"
        f"拒绝记录日志={'是' if logged else '否'}",
        f"nftables enabled at boot={enabled.strip()}; input base chains: {'; '.join(heads) or 'none'}; "
        f"drops logged={'yes' if logged else 'no'}",
    )


@check
def firewall_stateful(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, ruleset = p.run("nft list ruleset")
    chains = _input_chains(ruleset)
    bad = []
    for rules in chains:
        est = next((i for i, ln in enumerate(rules) if ln.startswith("ct state established,related accept")), None)
        invalid = any(ln.startswith("ct state invalid drop") for ln in rules)
        first_flow = next(
            (i for i, ln in enumerate(rules) if " accept" in ln and not _is_base_allowance(ln)), len(rules)
        )
        if est is None or est > first_flow or not invalid:
            bad.append(rules[0] if rules else "?")
    ok = bool(chains) and not bad
    return p.outcome(
        ok,
        f"{len(chains)} 条 input 链；缺少会话状态规则（established 先于业务规则、invalid 丢弃）的链：{len(bad)}",
        f"{len(chains)} input chains; chains without session-state rules (established before service rules, "
        f"invalid dropped): {len(bad)}",
    )


@check
def firewall_rules_specific(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, ruleset = p.run("nft list ruleset")
    chains = _input_chains(ruleset)
    loose = []
    for rules in chains:
        for ln in rules:
            if " accept" not in ln or _is_base_allowance(ln):
                continue
            names_source = "saddr" in ln and "0.0.0.0/0" not in ln
            names_port = "dport" in ln or "l4proto esp" in ln or "l4proto 50" in ln
            if not (names_source and names_port):
                loose.append(ln)
    ok = bool(chains) and not loose
    return p.outcome(
        ok,
        f"未同时限定源地址、协议与目的端口的放行规则：{'; '.join(loose) or '无'}",
        f"accept rules that do not name source address, protocol and destination port: {'; '.join(loose) or 'none'}",
    )


def _probe_script(targets: list[tuple[str, int]]) -> str:
    lines = " ".join(f"{ip}:{port}" for ip, port in targets)
    return (
        f"for t in {lines}; do ( ip=${{t%:*}}; port=${{t#*:}}; "
        f'timeout {PROBE_TIMEOUT_S} bash -c "</dev/tcp/$ip/$port" 2>/dev/null; echo "$ip $port $?" ) & done; wait'
    )


@scoped(MANAGED, "outsider", context=True)
def flow_matrix_enforced(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """From this host, open TCP to every protected port of every managed host and compare what gets
    through the firewalls with what the flow matrix allows."""
    inv = ctx.inventory
    matrix = inv.flow_matrix()
    me = inv.address(ctx.host)
    targets = [(inv.address(h), port, h) for h, port in matrix.protected_tcp_ports() if h != ctx.host]
    p = Probe(host)
    _, out = p.run(_probe_script([(ip, port) for ip, port, _ in targets]), sudo=False)
    seen = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            seen[(parts[0], int(parts[1]))] = int(parts[2])
    rows = []
    wrong = []
    for ip, port, name in targets:
        rc = seen.get((ip, port))
        flow = matrix.allows(me, name, "tcp", port)
        observed = REACHED.get(rc, "dropped" if rc == DROPPED else f"error rc={rc}")
        ok = (flow is not None) == (rc in REACHED)
        rows.append(
            {
                "to": name,
                "port": port,
                "expected": "allow" if flow else "deny",
                "flow": flow.name if flow else "",
                "observed": observed,
                "ok": ok,
            }
        )
        if not ok:
            wrong.append(f"{name}:{port} {observed} ({'flow ' + flow.name if flow else 'no flow'})")
    return p.outcome(
        bool(rows) and not wrong,
        f"探测 {len(rows)} 个受保护端口，与访问关系矩阵不符：{'; '.join(wrong) or '无'}",
        f"probed {len(rows)} protected ports; differences from the flow matrix: {'; '.join(wrong) or 'none'}",
        {"reachability": {"from": ctx.host, "address": me, "probes": rows}},
    )
