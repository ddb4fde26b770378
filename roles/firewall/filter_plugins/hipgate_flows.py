"""Ansible filter: this host's inbound rules from the inventory's flow matrix.

The resolver lives in the hipgate package (hipgate.flows) so that the firewall, `hipgate inventory
check` and the reachability check in `hipgate verify` read the matrix the same way.
"""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

try:
    from hipgate.flows import build_matrix, topology_from_inventory
except ImportError as exc:  # the control node runs Ansible from hipgate's virtualenv
    raise AnsibleFilterError(
        "the hipgate Python package is not importable: run Ansible from hipgate's virtualenv "
        "(scripts/setup). 无法导入 hipgate：请使用 hipgate 的虚拟环境运行 Ansible。"
    ) from exc


def firewall_plan(
    flows: list[dict[str, Any]],
    host: str,
    groups: dict[str, list[str]],
    hostvars: Any,
    management_networks: list[str],
    db_port: int,
    ssh_client: str = "",
    vpn: dict[str, Any] | None = None,
    exchange: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """{"rules": [...], "ssh_client_allowed": bool} for one host; any matrix problem fails the play."""
    hosts = {h: {"ansible_host": hostvars[h].get("ansible_host", h)} for h in groups.get("all", [])}
    topo = topology_from_inventory({g: m for g, m in groups.items() if g not in ("all", "ungrouped")}, hosts)
    settings = {
        "network": {"management_networks": list(management_networks)},
        "flows": list(flows),
        "database": {"port": int(db_port)},
        "vpn": dict(vpn or {}),
    }
    if exchange:  # the implied middleware -> relay flow (hipgate.flows.exchange_flow)
        settings["exchange"] = dict(exchange)
    matrix, problems = build_matrix(settings, topo, "firewall_flows")
    if problems:
        raise AnsibleFilterError("\n\n".join(p.render() for p in problems))
    allowed = True
    if ssh_client:
        allowed = matrix.allows(ssh_client, host, "tcp", 22) is not None
    return {
        "rules": [
            {
                "flow": r.flow,
                "proto": r.proto,
                "ports": r.ports,
                "sources": list(r.sources),
                "purpose": r.purpose.replace("\n", " "),
                "implied": r.implied,
            }
            for r in matrix.rules_for(host)
        ],
        "ssh_client_allowed": allowed,
    }


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"hipgate_firewall_plan": firewall_plan}
