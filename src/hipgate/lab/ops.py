"""pyinfra facts and operations for the lab's kernel objects on the local machine.

Each operation reads a fact and yields commands only when the machine differs from what is
asked, so `lab up` and `lab down` are idempotent by construction.
"""

from __future__ import annotations

import shlex
from collections.abc import Generator

from pyinfra import host
from pyinfra.api import FactBase, FunctionCommand, StringCommand, operation


class _SetFact(FactBase):
    """A fact whose empty output means an empty set (pyinfra returns default() then)."""

    @staticmethod
    def default() -> set[str]:
        return set()


class Links(_SetFact):
    """Network interface names in the root namespace."""

    def command(self) -> str:
        return "ip -o link show"

    def process(self, output: list[str]) -> set[str]:
        return {line.split(":")[1].strip().split("@")[0] for line in output if ":" in line}


class NetnsNames(_SetFact):
    def command(self) -> str:
        return "ip netns list"

    def process(self, output: list[str]) -> set[str]:
        return {line.split()[0] for line in output if line.strip()}


class MountPoints(_SetFact):
    def command(self) -> str:
        return "cat /proc/self/mountinfo"

    def process(self, output: list[str]) -> set[str]:
        # Field 5 is the mount point, octal-escaped (\040 for a space).
        return {line.split()[4].encode().decode("unicode_escape") for line in output if len(line.split()) > 4}


class NftTables(_SetFact):
    def requires_command(self) -> str:
        return "nft"

    def command(self) -> str:
        return "nft list tables"

    def process(self, output: list[str]) -> set[str]:
        return {" ".join(line.split()[1:3]) for line in output if line.startswith("table ")}


class NetnsAddresses(_SetFact):
    """IPv4 addresses (CIDR) and link names inside one network namespace."""

    def command(self, ns: str) -> str:
        # Empty while the namespace does not exist yet (facts are read when operations are added).
        n = shlex.quote(ns)
        return f"ip -n {n} -o -4 addr show 2>/dev/null; ip -n {n} -o link show 2>/dev/null; true"

    def process(self, output: list[str]) -> set[str]:
        found = set()
        for line in output:
            parts = line.split()
            if len(parts) > 3 and parts[2] == "inet":
                found.add(parts[3])
            elif len(parts) > 1 and parts[1].endswith(":"):
                found.add("link:" + parts[1].rstrip(":").split("@")[0])
        return found


def q(*words: object) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


@operation()
def bridge(name: str, cidr: str, mtu: int, present: bool = True) -> Generator:
    exists = name in host.get_fact(Links)
    if present and not exists:
        yield StringCommand(q("ip", "link", "add", name, "mtu", mtu, "type", "bridge"))
        yield StringCommand(q("ip", "addr", "add", cidr, "dev", name))
        yield StringCommand(q("ip", "link", "set", name, "up"))
    elif not present and exists:
        yield StringCommand(q("ip", "link", "del", name))


@operation()
def nat_table(table: str, subnet: str, bridge_name: str, lab_only: list[str], present: bool = True) -> Generator:
    exists = f"ip {table}" in host.get_fact(NftTables)
    if present and not exists:
        rules = (
            f"add table ip {table}; "
            f"add chain ip {table} postrouting {{ type nat hook postrouting priority srcnat; }}; "
            f"add rule ip {table} postrouting ip saddr {subnet} ip daddr != {subnet} masquerade; "
            f"add chain ip {table} forward {{ type filter hook forward priority filter; }}; "
            # Networks simulated inside the lab never leave this machine, whatever a host routes.
            f"add rule ip {table} forward ip daddr {{ {', '.join(lab_only)} }} drop; "
            f'add rule ip {table} forward iifname "{bridge_name}" accept; '
            f'add rule ip {table} forward oifname "{bridge_name}" ct state established,related accept'
        )
        yield StringCommand(q("nft", rules))
    elif not present and exists:
        yield StringCommand(q("nft", "delete", "table", "ip", table))


@operation()
def netns(name: str, present: bool = True) -> Generator:
    exists = name in host.get_fact(NetnsNames)
    if present and not exists:
        yield StringCommand(q("ip", "netns", "add", name))
    elif not present and exists:
        yield StringCommand(q("ip", "netns", "del", name))


@operation()
def veth(
    name: str, ns: str, mac: str, cidr: str, gateway: str, bridge_name: str, mtu: int, present: bool = True
) -> Generator:
    """A veth pair: `name` on the bridge, `eth0` (fixed MAC, address, default route) inside `ns`."""
    exists = name in host.get_fact(Links)
    if present and not exists:
        yield StringCommand(
            q("ip", "link", "add", name, "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", ns)
        )
        yield StringCommand(q("ip", "link", "set", name, "master", bridge_name, "up"))
        yield StringCommand(q("ip", "-n", ns, "link", "set", "eth0", "address", mac, "mtu", mtu, "up"))
        yield StringCommand(q("ip", "-n", ns, "link", "set", "lo", "up"))
        yield StringCommand(q("ip", "-n", ns, "addr", "add", cidr, "dev", "eth0"))
        yield StringCommand(q("ip", "-n", ns, "route", "add", "default", "via", gateway))
    elif not present and exists:
        yield StringCommand(q("ip", "link", "del", name))


@operation()
def leased_line(ns_a: str, ns_b: str, iface: str, mtu: int, addrs_a: list[str], addrs_b: list[str]) -> Generator:
    """A veth pair straight between two namespaces (`iface` in both) and their addresses; the
    namespaces' removal removes it. Addresses on `lo` are given as "lo:CIDR"."""
    create = f"link:{iface}" not in host.get_fact(NetnsAddresses, ns=ns_a)
    if create:
        yield StringCommand(
            q("ip", "link", "add", iface, "netns", ns_a, "mtu", mtu, "type", "veth")
            + " "
            + q("peer", "name", iface, "netns", ns_b, "mtu", mtu)
        )
    for ns, addrs in ((ns_a, addrs_a), (ns_b, addrs_b)):
        have = host.get_fact(NetnsAddresses, ns=ns)
        if create:
            yield StringCommand(q("ip", "-n", ns, "link", "set", iface, "up"))
        for a in addrs:
            dev, _, cidr = a.rpartition(":")
            if cidr not in have:
                yield StringCommand(q("ip", "-n", ns, "addr", "add", cidr, "dev", dev or iface))


@operation()
def overlay(lower: str, upper: str, work: str, merged: str, present: bool = True) -> Generator:
    mounted = merged in host.get_fact(MountPoints)
    if present and not mounted:
        yield StringCommand(q("mkdir", "-p", upper, work, merged))
        yield StringCommand(
            q("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}", merged)
        )
    elif not present and mounted:
        yield StringCommand(q("umount", merged))


@operation(is_idempotent=False)
def call(function: object, *args: object, needed: bool = True) -> Generator:
    """Run a Python function on the local machine when `needed` (decided by the caller's check)."""
    if needed:
        yield FunctionCommand(function, args, {})
