"""The Debian base rootfs every lab host boots from: built once, cached by recipe hash."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from hipgate.errors import fail
from hipgate.lab.topology import state_root

SUITE = "bookworm"
# Packages every lab host has before any role runs: what Ansible and the lab need, nothing more.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "sudo",
    "iputils-ping",
    "ca-certificates",
    "netcat-openbsd",
    "procps",
)
ADMIN_USER = "hipgate"
# Bump when the post-install steps below change, so cached bases are rebuilt.
RECIPE_REVISION = 3
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def recipe() -> dict[str, object]:
    return {
        "suite": SUITE,
        "variant": "minbase",
        "packages": PACKAGES,
        "admin": ADMIN_USER,
        "revision": RECIPE_REVISION,
    }


def recipe_hash() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def base_path() -> Path:
    return state_root() / "base" / f"{SUITE}-{recipe_hash()}"


def host_mirror() -> str:
    """The Debian mirror this machine's apt already uses (never a hard-coded host)."""
    sources = [HOST_SOURCES, Path("/etc/apt/sources.list")]
    for src in sources:
        if not src.is_file():
            continue
        for line in src.read_text().splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in words[1]:
                return words[1] if not words[1].startswith("[") else words[2]
    raise fail(
        "/etc/apt/sources.list.d",
        "找不到本机的 Debian 软件源。",
        "no Debian mirror found in this machine's apt sources.",
        "先配置本机 apt 软件源（apt-get update 能成功）。",
        "configure this machine's apt sources first (apt-get update must succeed).",
    )


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise fail(
            " ".join(args[:3]),
            f"构建基础系统失败：{tail}",
            f"building the base rootfs failed: {tail}",
            "检查网络与软件源后重试 hipgate lab up。",
            "check the network and apt sources, then rerun hipgate lab up.",
            exit_code=1,
        )


def _apt_check_valid_until() -> str:
    out = subprocess.run(
        ["apt-config", "dump", "Acquire::Check-Valid-Until"], capture_output=True, text=True, check=False
    ).stdout
    return "false" if '"false"' in out else "true"


def _post_install(root: Path) -> None:
    # Every host would otherwise share one machine-id (lab-notes): leave it empty, systemd fills it.
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    # Host keys are made per host (ed25519 only: ssh-keygen -A costs ~1.3 s CPU per host).
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/ssh/sshd_config.d/hipgate-lab.conf").write_text("HostKey /etc/ssh/ssh_host_ed25519_key\n")
    (root / "etc/hostname").unlink(missing_ok=True)
    # Same apt sources as this machine, so hosts apt-get through the lab's NAT like it does.
    if HOST_SOURCES.is_file():
        shutil.copy(HOST_SOURCES, root / "etc/apt/sources.list.d/debian.sources")
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/apt.conf.d/90hipgate-lab").write_text(
        f'Acquire::Check-Valid-Until "{_apt_check_valid_until()}";\nAcquire::Retries "3";\n'
        'APT::Install-Recommends "false";\n'
    )
    # The administrator account Ansible uses; root SSH login is turned off by the baseline role.
    _run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", ADMIN_USER])
    sudoers = root / f"etc/sudoers.d/{ADMIN_USER}"
    sudoers.write_text(f"{ADMIN_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    # Units with nothing to do in a lab host; they only slow boots down.
    for unit in (
        "systemd-networkd-wait-online.service",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
        "systemd-resolved.service",
    ):
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")


def build_base(target: Path) -> None:
    """debootstrap into a temporary folder, finish it, then rename: a half-built base is never used."""
    if target.is_dir():
        return
    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp), host_mirror()])
    _post_install(tmp)
    (tmp / "etc/hipgate-base.json").write_text(json.dumps(recipe(), sort_keys=True) + "\n")
    tmp.rename(target)
