"""Start, stop and probe lab hosts (systemd-nspawn processes), always by recorded PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from hipgate.lab.base import ADMIN_USER
from hipgate.lab.topology import Lab, LabHost


def host_dir(lab: Lab, h: LabHost) -> Path:
    return lab.directory / "hosts" / h.name


def merged_dir(lab: Lab, h: LabHost) -> Path:
    return host_dir(lab, h) / "merged"


def read_pid(lab: Lab, h: LabHost) -> int | None:
    try:
        return int((host_dir(lab, h) / "nspawn.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def is_our_nspawn(pid: int, merged: Path) -> bool:
    """True when `pid` is alive and is the nspawn we started for `merged` (PIDs get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    if "\nState:\tZ" in status:
        _reap(pid)
        return False
    return bool(cmdline) and cmdline[0].endswith(b"systemd-nspawn") and str(merged).encode() in cmdline


def _reap(pid: int) -> None:
    # Not our child (started by an earlier hipgate process): init reaps it.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def running_pid(lab: Lab, h: LabHost) -> int | None:
    pid = read_pid(lab, h)
    return pid if pid is not None and is_our_nspawn(pid, merged_dir(lab, h)) else None


def prepare_files(lab: Lab, h: LabHost, admin_pubkey: str) -> None:
    """Per-host identity written into the overlay: hostname, hosts, ssh host key, admin key."""
    root = merged_dir(lab, h)
    (root / "etc/hostname").write_text(h.name + "\n")
    hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{h.name}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{o.address}\t{o.name}" for o in lab.hosts if o.name != h.name]
    (root / "etc/hosts").write_text("\n".join(hosts) + "\n")
    key = root / "etc/ssh/ssh_host_ed25519_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.name, "-f", str(key)], check=True)
    uid, gid = _admin_ids(root)
    ssh_dir = root / "home" / ADMIN_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text(admin_pubkey.strip() + "\n")
    auth.chmod(0o600)
    for p in (ssh_dir, auth):
        os.chown(p, uid, gid)


def host_public_key(lab: Lab, h: LabHost) -> str:
    return (merged_dir(lab, h) / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[1]


def _admin_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == ADMIN_USER:
            return int(fields[2]), int(fields[3])
    raise RuntimeError(f"{ADMIN_USER} missing from the base rootfs")


def start(lab: Lab, h: LabHost) -> None:
    """Boot the host in the background (own session) and record its PID before anything else."""
    if running_pid(lab, h) is not None:
        return
    log = open(host_dir(lab, h) / "console.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            "systemd-nspawn",
            "-D",
            str(merged_dir(lab, h)),
            "--register=no",
            "--keep-unit",
            f"--network-namespace-path=/run/netns/{h.netns}",
            "--console=passive",
            f"--machine={lab.name}-{h.name}",
            "--capability=CAP_NET_ADMIN",
            "--resolv-conf=copy-host",
            "-b",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    (host_dir(lab, h) / "nspawn.pid").write_text(str(proc.pid))


def stop_all(lab: Lab, hosts: Sequence[LabHost], timeout: float = 20.0) -> None:
    """Power hosts off together: SIGTERM to every nspawn first (each takes ~1 s to shut down), then
    wait for all; SIGKILL only those still running at the deadline."""
    running = {h: pid for h in hosts if (pid := running_pid(lab, h)) is not None}
    for pid in running.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        running = {h: pid for h, pid in running.items() if is_our_nspawn(pid, merged_dir(lab, h))}
        time.sleep(0.1)
    for pid in running.values():
        os.kill(pid, signal.SIGKILL)
    while running:
        running = {h: pid for h, pid in running.items() if is_our_nspawn(pid, merged_dir(lab, h))}
        time.sleep(0.05)
    for h in hosts:
        (host_dir(lab, h) / "nspawn.pid").unlink(missing_ok=True)


def ssh_banner(address: str, timeout: float = 0.5) -> bool:
    """sshd is accepting connections when it sends its version banner."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_ssh_ready(hosts: list[LabHost], timeout: float, on_ready=None) -> list[LabHost]:
    """Poll until every host's sshd answers; returns the hosts that never did."""
    pending = list(hosts)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for h in list(pending):
            if ssh_banner(h.address):
                pending.remove(h)
                if on_ready:
                    on_ready(h)
        if pending:
            time.sleep(0.2)
    return pending
