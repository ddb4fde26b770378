"""Lab topology: which hosts, their groups, addresses, MACs and kernel object names."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from hipgate.errors import fail

# Reference topology of a provincial deployment. `middleware` is its own host because the
# front-end must be refused at the database (issue 4); `outsider` is the unauthorised host. The
# bastion, in the management zone, also collects every host's logs.
REFERENCE_HOSTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("frontend", ("frontend",)),
    ("database", ("database",)),
    ("middleware", ("middleware",)),
    ("bastion", ("bastion", "log_collector")),
    ("vault", ("vault",)),
    ("backup-a", ("backup_sites",)),
    ("backup-b", ("backup_sites",)),
    ("natplat", ("natplat", "simulated_peers")),
    ("outsider", ("outsider",)),
)

# Each lab gets one /24 out of this /16; the gateway (bridge) is .1, hosts start at .10.
LAB_SUPERNET = ipaddress.IPv4Network("10.231.0.0/16")
# Networks that exist only inside a lab's own namespaces (one /24 per lab, same index): the simulated
# national platform network (on natplat), the leased line (医保专线) between frontend and natplat, and
# the provincial protected subnet that the VPN carries (the front-end server's fixed address).
PLATFORM_SUPERNET = ipaddress.IPv4Network("10.232.0.0/16")
LEASED_LINE_SUPERNET = ipaddress.IPv4Network("10.233.0.0/16")
PROTECTED_SUPERNET = ipaddress.IPv4Network("10.234.0.0/16")
# The lab host must never forward these anywhere (they would leave the machine through NAT).
LAB_ONLY_NETWORKS = (PLATFORM_SUPERNET, LEASED_LINE_SUPERNET, PROTECTED_SUPERNET)
# Hosts joined by the leased line: the VPN endpoint and the simulated national platform.
LEASED_LINE_ENDS = ("frontend", "natplat")
LEASED_LINE_IFACE = "eth1"
FIRST_HOST_OFFSET = 10
MAX_HOSTS = 240
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def state_root() -> Path:
    return Path(os.environ.get("HIPGATE_STATE", "/var/lib/hipgate"))


@dataclass(frozen=True)
class LabHost:
    name: str
    index: int  # 1-based position in the lab
    groups: tuple[str, ...]
    address: str
    lab_index: int

    @property
    def netns(self) -> str:
        return f"hg{self.lab_index}-{self.name}"

    @property
    def veth(self) -> str:
        # Host-side end; IFNAMSIZ is 16 including NUL, so keep it short and numeric.
        return f"hgv{self.lab_index}x{self.index}"

    @property
    def mac(self) -> str:
        # Fixed, locally administered MAC: re-created hosts keep their neighbour entries valid.
        return f"02:48:47:{self.lab_index:02x}:{self.index >> 8:02x}:{self.index & 0xFF:02x}"


@dataclass(frozen=True)
class Lab:
    name: str
    index: int  # selects the /24 and prefixes every kernel object name
    hosts: tuple[LabHost, ...]

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return list(LAB_SUPERNET.subnets(new_prefix=24))[self.index]

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def bridge(self) -> str:
        return f"hgbr{self.index}"

    @property
    def nft_table(self) -> str:
        return f"hipgate_lab{self.index}"

    def _net(self, supernet: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        return list(supernet.subnets(new_prefix=24))[self.index]

    @property
    def platform_cidr(self) -> ipaddress.IPv4Network:
        return self._net(PLATFORM_SUPERNET)

    @property
    def protected_cidr(self) -> ipaddress.IPv4Network:
        return self._net(PROTECTED_SUPERNET)

    def platform_address(self, offset: int) -> str:
        return str(self.platform_cidr.network_address + offset)

    def leased_line(self) -> tuple[LabHost, LabHost] | None:
        """(frontend, natplat) when the lab has both: a veth pair straight between their namespaces."""
        ends = [next((h for h in self.hosts if h.name == n), None) for n in LEASED_LINE_ENDS]
        return (ends[0], ends[1]) if ends[0] is not None and ends[1] is not None else None

    def leased_address(self, h: LabHost) -> str:
        """A host's address on the leased line: the same last octet as on the lab bridge."""
        return str(self._net(LEASED_LINE_SUPERNET).network_address + int(h.address.rsplit(".", 1)[1]))

    def protected_address(self, h: LabHost) -> str:
        return str(self.protected_cidr.network_address + int(h.address.rsplit(".", 1)[1]))

    @property
    def directory(self) -> Path:
        return state_root() / "labs" / self.name

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise fail(
            f"lab {self.name}: host {name}",
            f"实验环境中没有主机 {name}。",
            f"the lab has no host {name}.",
            f"使用以下之一：{known}。",
            f"use one of: {known}.",
        )


def host_specs(count: int | None, names: list[str] | None) -> list[tuple[str, tuple[str, ...]]]:
    """Hosts requested on the command line: the reference topology, N numbered hosts, or named hosts."""
    if names:
        for n in names:
            if not NAME_RE.match(n):
                raise fail(
                    f"--host {n}",
                    f"主机名 {n!r} 不合法。",
                    f"host name {n!r} is not valid.",
                    "使用小写字母开头，仅含小写字母、数字和 -，最长 31 个字符。",
                    "start with a lower-case letter; use a-z, 0-9 and -, at most 31 characters.",
                )
        return [(n, ("lab",)) for n in dict.fromkeys(names)]
    if count is not None:
        if not 1 <= count <= MAX_HOSTS:
            raise fail(
                "--count",
                f"主机数 {count} 超出范围。",
                f"host count {count} is out of range.",
                f"使用 1 到 {MAX_HOSTS} 之间的数。",
                f"use a number from 1 to {MAX_HOSTS}.",
            )
        return [(f"node{i:03d}", ("lab",)) for i in range(1, count + 1)]
    return list(REFERENCE_HOSTS)


def build_lab(name: str, index: int, specs: list[tuple[str, tuple[str, ...]]]) -> Lab:
    if not NAME_RE.match(name):
        raise fail(
            "--name",
            f"实验环境名 {name!r} 不合法。",
            f"lab name {name!r} is not valid.",
            "使用小写字母开头，仅含小写字母、数字和 -。",
            "start with a lower-case letter; use a-z, 0-9 and -.",
        )
    subnet = list(LAB_SUPERNET.subnets(new_prefix=24))[index]
    hosts = tuple(
        LabHost(n, i, groups, str(subnet.network_address + FIRST_HOST_OFFSET + i - 1), index)
        for i, (n, groups) in enumerate(specs, start=1)
    )
    return Lab(name, index, hosts)
