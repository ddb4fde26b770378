"""`hipgate preflight terminal`: can a Linux terminal of an agency or institution use the platform?
OS release, RAM (≥ 2 GiB, 8 GiB recommended), free disk (≥ 50 GiB, 100 GiB recommended), a supported
browser - in the same output forms as the network preflight."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hipgate.inventory.load import Inventory
from hipgate.preflight.network import Row, run_probe

PROBE_SOURCE = Path(__file__).with_name("terminal_probe.py")
GROUP = "terminals"
GIB = 1024**3
RAM_MIN, RAM_RECOMMENDED = 2 * GIB, 8 * GIB
DISK_MIN, DISK_RECOMMENDED = 50 * GIB, 100 * GIB
# os-release IDs of Linux distributions terminals run (incl. 统信 UOS, 麒麟 Kylin, openEuler, Deepin).
SUPPORTED_OS = (
    "debian",
    "ubuntu",
    "uos",
    "kylin",
    "openeuler",
    "deepin",
    "rhel",
    "centos",
    "rocky",
    "almalinux",
    "anolis",
    "opencloudos",
)
BROWSERS = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "microsoft-edge",
    "microsoft-edge-stable",
    "firefox",
    "firefox-esr",
    "browser360-cn-stable",
    "qaxbrowser-safe-stable",
)

TITLES: dict[str, tuple[str, str]] = {
    "os": ("操作系统", "operating system"),
    "ram": ("内存", "memory"),
    "disk": ("可用磁盘空间", "free disk space"),
    "browser": ("支持的浏览器", "supported browser"),
}


def terminal_hosts(inv: Inventory, limit: list[str] | None = None) -> list[str]:
    """The `terminals` group, or any inventory hosts named with --limit."""
    if limit:
        return [h for h in limit if h in inv.hosts]
    return inv.group_hosts(GROUP)


def spec() -> dict[str, Any]:
    return {"browsers": list(BROWSERS), "disk_path": "/"}


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def _sized(host: str, check: str, have: int, minimum: int, recommended: int, fix: tuple[str, str]) -> Row:
    if have < minimum:
        return Row(
            host,
            check,
            _gib(have),
            False,
            f"{_gib(have)}，低于最低要求 {_gib(minimum)}",
            f"{_gib(have)}, below the minimum {_gib(minimum)}",
            *fix,
        )
    if have < recommended:
        return Row(
            host,
            check,
            _gib(have),
            True,
            f"{_gib(have)}：满足最低要求，低于推荐值 {_gib(recommended)}",
            f"{_gib(have)}: meets the minimum, below the recommended {_gib(recommended)}",
            warning=True,
        )
    return Row(
        host,
        check,
        _gib(have),
        True,
        f"{_gib(have)}（≥ 推荐值 {_gib(recommended)}）",
        f"{_gib(have)} (≥ recommended {_gib(recommended)})",
    )


def judge(host: str, raw: dict[str, Any]) -> list[Row]:
    osr = raw["os"]
    ids = {osr.get("ID", ""), *osr.get("ID_LIKE", "").split()}
    name = osr.get("PRETTY_NAME") or osr.get("ID") or "unknown"
    supported = bool(ids & set(SUPPORTED_OS))
    rows = [
        Row(
            host,
            "os",
            name,
            supported,
            f"{name}{'' if supported else '：不在支持列表中'}",
            f"{name}{'' if supported else ': not in the supported list'}",
            f"请改用受支持的发行版：{'、'.join(SUPPORTED_OS)}。",
            f"use a supported distribution: {', '.join(SUPPORTED_OS)}.",
        ),
        _sized(
            host,
            "ram",
            raw["mem_total_kib"] * 1024,
            RAM_MIN,
            RAM_RECOMMENDED,
            (
                f"内存至少 {_gib(RAM_MIN)}，建议 {_gib(RAM_RECOMMENDED)}：请增加内存。",
                f"at least {_gib(RAM_MIN)} of memory, {_gib(RAM_RECOMMENDED)} recommended: add memory.",
            ),
        ),
        _sized(
            host,
            "disk",
            raw["disk_free_bytes"],
            DISK_MIN,
            DISK_RECOMMENDED,
            (
                f"{raw['disk_path']} 可用空间至少 {_gib(DISK_MIN)}：请清理或扩容。",
                f"at least {_gib(DISK_MIN)} free on {raw['disk_path']}: free space or add disk.",
            ),
        ),
    ]
    found = raw["browsers"]
    shown = "; ".join(f"{b['version'] or b['name']} ({b['path']})" for b in found)
    rows.append(
        Row(
            host,
            "browser",
            ", ".join(b["name"] for b in found) or "-",
            bool(found),
            shown or "未找到支持的浏览器",
            shown or "no supported browser found",
            "请安装 Chromium、Chrome、Edge 或 Firefox ESR 等受支持的浏览器。",
            "install a supported browser such as Chromium, Chrome, Edge or Firefox ESR.",
        )
    )
    return rows


def probe_host(inv: Inventory, host: str, connection: Any) -> list[Row]:
    raw = run_probe(inv, host, connection, spec(), PROBE_SOURCE)
    return [raw] if isinstance(raw, Row) else judge(host, raw)
