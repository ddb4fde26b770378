"""lab up / down / status: the pyinfra deploy that builds or removes a lab on this machine."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from pyinfra.api import BaseStateCallback, Config, Inventory, State
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.operation import add_op
from pyinfra.api.operations import run_ops
from pyinfra.operations import server

from hipgate.errors import fail
from hipgate.lab import artifacts, machine, ops
from hipgate.lab.base import base_path, build_base
from hipgate.lab.topology import (
    LAB_ONLY_NETWORKS,
    LAB_SUPERNET,
    LEASED_LINE_IFACE,
    Lab,
    LabHost,
    build_lab,
    state_root,
)

HOST_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    # ~19 hosts exhaust the default inotify instances (lab-notes); 100 hosts need far more.
    "fs.inotify.max_user_instances": "8192",
    "fs.inotify.max_user_watches": "1048576",
}
READY_TIMEOUT_BASE = 90.0
Progress = Callable[[str, int, int], None]  # (phase, done, total)


def require_root() -> None:
    if os.geteuid() != 0:
        raise fail(
            "hipgate lab",
            "实验环境需要 root 权限（网络命名空间、systemd-nspawn、挂载）。",
            "the lab needs root (network namespaces, systemd-nspawn, mounts).",
            "以 root 运行，例如 sudo hipgate lab up。",
            "run it as root, e.g. sudo hipgate lab up.",
        )


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    """Serialise changes to this machine: two `lab up` at once must not pick the same subnet or
    build the base twice (molecule scenarios and tests may run in parallel)."""
    state_root().mkdir(parents=True, exist_ok=True)
    with open(state_root() / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _state_file(name: str) -> Path:
    return state_root() / "labs" / name / "lab.json"


@dataclass
class _Record:
    name: str
    index: int
    hosts: list[tuple[str, list[str]]]


def load(name: str) -> Lab | None:
    try:
        rec = json.loads(_state_file(name).read_text())
    except FileNotFoundError:
        return None
    return build_lab(rec["name"], rec["index"], [(n, tuple(g)) for n, g in rec["hosts"]])


def all_labs() -> list[Lab]:
    labs_dir = state_root() / "labs"
    found = [load(p.name) for p in sorted(labs_dir.iterdir())] if labs_dir.is_dir() else []
    return [lab for lab in found if lab is not None]


def _routes_in_use() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "route", "show"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line and line.split()[0] != "default"]


def _allocate_index(name: str) -> int:
    """Lowest /24 that no other lab holds and no route on this machine overlaps."""
    import ipaddress

    taken = {lab.index for lab in all_labs() if lab.name != name}
    subnets = list(LAB_SUPERNET.subnets(new_prefix=24))
    routes = [ipaddress.ip_network(r, strict=False) for r in _routes_in_use() if "/" in r or r[0].isdigit()]
    for idx in range(1, len(subnets)):
        if idx not in taken and not any(subnets[idx].overlaps(r) for r in routes if r.version == 4):
            return idx
    raise fail(
        "lab",
        "没有空闲的实验网段。",
        "no free lab subnet left.",
        "先用 hipgate lab down 删除不用的实验环境。",
        "remove unused labs with hipgate lab down first.",
    )


def _uplink_mtu() -> int:
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "default"], capture_output=True, text=True, check=False
    ).stdout.split()
    if "dev" in out:
        try:
            return int(Path(f"/sys/class/net/{out[out.index('dev') + 1]}/mtu").read_text())
        except (OSError, ValueError):
            pass
    return 1500


class _Callback(BaseStateCallback):
    def __init__(self, progress: Progress | None, phase: str, total: int) -> None:
        self.progress, self.phase, self.total, self.done = progress, phase, total, 0

    def operation_end(self, state: State, op_hash: str) -> None:  # type: ignore[override]
        self.done += 1
        if self.progress:
            self.progress(self.phase, min(self.done, self.total), self.total)


def _run_deploy(phase: str, build: Callable[[State], int], progress: Progress | None) -> int:
    """Run pyinfra operations on @local; returns how many operations changed something."""
    logging.getLogger("pyinfra").setLevel(logging.CRITICAL)
    state = State(inventory=Inventory((["@local"], {})), config=Config())
    connect_all(state)
    try:
        metas: list[tuple[str, object]] = []
        orig_add = add_op

        def add(name: str, op, *args, **kwargs):
            result = orig_add(state, op, *args, name=name, **kwargs)
            metas.extend((name, m) for m in result.values())

        state.hipgate_add = add  # type: ignore[attr-defined]
        total = build(state)
        state.add_callback_handler(_Callback(progress, phase, total))
        run_ops(state)
        failed = [(n, m) for n, m in metas if m.did_error()]  # type: ignore[attr-defined]
        if failed or state.failed_hosts:
            name, meta = failed[0] if failed else ("?", None)
            detail = (meta.stderr if meta is not None else "").strip()[-1500:]  # type: ignore[attr-defined]
            raise fail(
                f"lab {phase}: {name}",
                f"操作失败：{detail}",
                f"operation failed: {detail}",
                "查看上面的错误；修正后重新运行（lab up 可重复执行）。",
                "see the error above; fix it and run again (lab up is safe to repeat).",
                exit_code=1,
            )
        return sum(1 for _, m in metas if m.did_change())  # type: ignore[attr-defined]
    finally:
        disconnect_all(state)


def _record_host_sysctls() -> None:
    saved = state_root() / "host-sysctl.json"
    if saved.exists():
        return
    saved.parent.mkdir(parents=True, exist_ok=True)
    values = {k: Path("/proc/sys", k.replace(".", "/")).read_text().strip() for k in HOST_SYSCTLS}
    saved.write_text(json.dumps(values))


def _restore_host_sysctls() -> None:
    saved = state_root() / "host-sysctl.json"
    if not saved.exists() or all_labs():
        return
    for key, value in json.loads(saved.read_text()).items():
        Path("/proc/sys", key.replace(".", "/")).write_text(value)
    saved.unlink()


def up(
    name: str,
    specs: list[tuple[str, tuple[str, ...]]],
    progress: Progress | None = None,
    inventory_dir: Path | None = None,
) -> tuple[Lab, int]:
    """Bring a lab to ssh-ready; safe to repeat. Returns the lab and how many operations changed."""
    require_root()
    with _host_lock():
        existing = load(name)
        if existing is not None:
            wanted = [(n, tuple(g)) for n, g in specs]
            have = [(h.name, h.groups) for h in existing.hosts]
            if wanted != have:
                raise fail(
                    f"lab {name}",
                    "同名实验环境已存在且主机不同。",
                    "a lab of that name exists with other hosts.",
                    f"先运行 hipgate lab down --name {name}，或换一个 --name。",
                    f"run hipgate lab down --name {name} first, or choose another --name.",
                )
            lab = existing
        else:
            lab = build_lab(name, _allocate_index(name), specs)
        lab.directory.mkdir(parents=True, exist_ok=True)
        # Record intent before creating anything, so `down` can clean up even a half-built lab.
        rec = _Record(lab.name, lab.index, [(h.name, list(h.groups)) for h in lab.hosts])
        _state_file(name).write_text(json.dumps(asdict(rec)))
        _record_host_sysctls()
        pubkey = artifacts.ensure_key(lab)
        base = base_path()
        mtu = _uplink_mtu()

        def build(state: State) -> int:
            add = state.hipgate_add  # type: ignore[attr-defined]
            for key, value in HOST_SYSCTLS.items():
                add(f"sysctl {key}", server.sysctl, key=key, value=value)
            add("base rootfs", ops.call, build_base, base, needed=not base.is_dir())
            add("bridge", ops.bridge, lab.bridge, f"{lab.gateway}/24", mtu)
            lab_only = [str(n) for n in LAB_ONLY_NETWORKS]
            add("nat", ops.nat_table, lab.nft_table, str(lab.subnet), lab.bridge, lab_only)
            for h in lab.hosts:
                hdir = machine.host_dir(lab, h)
                running = machine.running_pid(lab, h) is not None
                add(
                    f"{h.name}: overlay",
                    ops.overlay,
                    str(base),
                    str(hdir / "upper"),
                    str(hdir / "work"),
                    str(hdir / "merged"),
                )
                add(f"{h.name}: files", ops.call, machine.prepare_files, lab, h, pubkey, needed=not running)
                add(f"{h.name}: netns", ops.netns, h.netns)
                add(
                    f"{h.name}: veth", ops.veth, h.veth, h.netns, h.mac, f"{h.address}/24", lab.gateway, lab.bridge, mtu
                )
                add(f"{h.name}: boot", ops.call, machine.start, lab, h, needed=not running)
            line = lab.leased_line()
            if line is not None:
                fe, peer = line
                add(
                    "leased line",
                    ops.leased_line,
                    fe.netns,
                    peer.netns,
                    LEASED_LINE_IFACE,
                    mtu,
                    [f"{lab.leased_address(fe)}/24", f"{lab.protected_address(fe)}/32"],
                    # The simulated platform network lives on natplat's loopback, one address per service.
                    [f"{lab.leased_address(peer)}/24", f"lo:{lab.platform_address(1)}/24"]
                    + [f"lo:{lab.platform_address(o)}/32" for o in artifacts.PLATFORM_SERVICE_OFFSETS],
                )
            return len(HOST_SYSCTLS) + 3 + 5 * len(lab.hosts) + (line is not None)

        changed = _run_deploy("up", build, progress)
    done = 0

    def ready(_: LabHost) -> None:
        nonlocal done
        done += 1
        if progress:
            progress("ssh", done, len(lab.hosts))

    missing = machine.wait_ssh_ready(list(lab.hosts), READY_TIMEOUT_BASE + len(lab.hosts), ready)
    if missing:
        names = ", ".join(h.name for h in missing)
        logs = ", ".join(str(machine.host_dir(lab, h) / "console.log") for h in missing)
        raise fail(
            f"lab {name}",
            f"主机未能就绪（sshd 无响应）：{names}。",
            f"hosts never became ssh-ready: {names}.",
            f"查看控制台日志 {logs}；然后 hipgate lab down 再 up。",
            f"read the console logs {logs}; then hipgate lab down and up again.",
            exit_code=1,
        )
    artifacts.write_ssh_config(lab)
    artifacts.write_inventory(lab, lab.directory / "inventory")
    if inventory_dir is not None:
        artifacts.write_inventory(lab, inventory_dir)
    return lab, changed


def down(name: str, progress: Progress | None = None) -> bool:
    """Remove everything the lab made: processes (by PID), mounts, links, namespaces, nft table, files."""
    require_root()
    lab = load(name)
    if lab is None:
        return False

    def build(state: State) -> int:
        add = state.hipgate_add  # type: ignore[attr-defined]
        add(
            "stop hosts",
            ops.call,
            machine.stop_all,
            lab,
            lab.hosts,
            needed=any(machine.read_pid(lab, h) is not None for h in lab.hosts),
        )
        for h in lab.hosts:
            hdir = machine.host_dir(lab, h)
            add(f"{h.name}: veth", ops.veth, h.veth, h.netns, h.mac, "", "", lab.bridge, 0, present=False)
            add(f"{h.name}: netns", ops.netns, h.netns, present=False)
            add(
                f"{h.name}: overlay",
                ops.overlay,
                "",
                str(hdir / "upper"),
                str(hdir / "work"),
                str(hdir / "merged"),
                present=False,
            )
        add("nat", ops.nat_table, lab.nft_table, str(lab.subnet), lab.bridge, [], present=False)
        add("bridge", ops.bridge, lab.bridge, "", 0, present=False)
        return 3 * len(lab.hosts) + 3

    artifacts.close_ssh_masters(lab)
    with _host_lock():
        _run_deploy("down", build, progress)
        shutil.rmtree(lab.directory)
        _restore_host_sysctls()
    return True


@dataclass
class HostStatus:
    name: str
    address: str
    groups: tuple[str, ...]
    pid: int | None
    ssh_ready: bool


def status(name: str) -> list[HostStatus]:
    # A loaded machine (parallel test workers) can take over a second to send the banner: not "down".
    lab = load(name)
    if lab is None:
        return []
    out = []
    for h in lab.hosts:
        pid = machine.running_pid(lab, h)
        out.append(
            HostStatus(h.name, h.address, h.groups, pid, pid is not None and machine.ssh_banner(h.address, timeout=3.0))
        )
    return out
