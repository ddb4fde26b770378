"""The wheelhouse the hosts install hipgate's services from (`hipgate_runtime` role), built on the control node.

    python -m hipgate.wheelhouse --requirements roles/hipgate_runtime/files/requirements.txt \\
        --out artifacts/wheelhouse --python 3.11 --machine x86_64

Hosts never reach PyPI: every wheel is fetched here, for the hosts' Python and machine (binary wheels
only, so nothing compiles on a host), with hipgate's own wheel built from this checkout. Building it
again from the same sources gives the same bytes (SOURCE_DATE_EPOCH), so a second deployment copies
nothing. The dependency wheels are cached per requirements file, Python and machine; the result is a
directory `<out>/<python>-<machine>/` with the wheels and MANIFEST.json (file names and SHA-256), printed
as JSON.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hipgate.paths import project_root

PYTHON_RE = re.compile(r"3\.[0-9]{1,2}")
MACHINE_RE = re.compile(r"x86_64|aarch64")
# Wheels built for glibc 2.17 or later run on Debian 12 (glibc 2.36).
PLATFORMS = ("manylinux2014", "manylinux_2_17", "manylinux_2_28", "manylinux_2_34")
# Any fixed time after 1980 (zip's epoch): the same sources give the same wheel.
SOURCE_DATE_EPOCH = "315532800"
# What goes into hipgate's own wheel (the build runs on a copy, so the checkout stays clean).
BUILD_INPUTS = ("pyproject.toml", "README.md", "src")
# One archive per kind travels to the host (one copy, one checksum, instead of one per file).
WHEELS_TAR = "wheels.tar"
SHARE_TAR = "share.tar"


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be built; the message says why in Chinese and English."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout)[-2000:]
        raise WheelhouseError(f"{what} 失败 / failed (exit {res.returncode}):\n{tail}")


def download_dependencies(requirements: Path, dest: Path, python: str, machine: str) -> None:
    """Binary wheels of every pinned requirement for the hosts' interpreter, no resolver on the host."""
    tag = python.replace(".", "")
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "-r", str(requirements), "-d", str(dest),
            "--python-version", python, "--implementation", "cp",
            "--abi", f"cp{tag}", "--abi", "abi3", "--abi", "none"]  # fmt: skip
    for p in PLATFORMS:
        argv += ["--platform", f"{p}_{machine}"]
    argv += ["--platform", "any"]
    _run(argv, "下载依赖 wheel / downloading the dependency wheels")


def sources_digest(root: Path) -> str:
    """SHA-256 over the names and bytes of everything that goes into hipgate's wheel."""
    h = hashlib.sha256()
    for name in BUILD_INPUTS:
        item = root / name
        files = sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]
        for f in files:
            rel = f.relative_to(root)
            if "__pycache__" in rel.parts or any(part.endswith(".egg-info") for part in rel.parts):
                continue
            h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def build_hipgate(root: Path, dest: Path) -> Path:
    """hipgate's wheel from a copy of the checkout's sources, byte for byte reproducible; not rebuilt
    while the sources are the ones it was built from."""
    digest = sources_digest(root)
    stamp = dest / ".hipgate-sources.sha256"
    if stamp.exists():
        name, _, built_from = stamp.read_text().strip().partition(" ")
        if built_from == digest and (dest / name).is_file():
            return dest / name
    with tempfile.TemporaryDirectory(prefix="hipgate-wheel-") as tmp:
        src = Path(tmp) / "src-copy"
        src.mkdir()
        for name in BUILD_INPUTS:
            item = root / name
            if item.is_dir():
                shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(item, src / name)
        out = Path(tmp) / "out"
        env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH, PIP_DISABLE_PIP_VERSION_CHECK="1")
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
             "构建 hipgate wheel / building hipgate's wheel", env)  # fmt: skip
        (built,) = out.glob("hipgate-*.whl")
        target = dest / built.name
        # Replace only when the bytes differ: the copy on the host then stays unchanged too.
        if not target.exists() or sha256(target) != sha256(built):
            tmp_target = dest / f".{built.name}.tmp"
            shutil.copyfile(built, tmp_target)
            tmp_target.replace(target)
        stamp.write_text(f"{target.name} {digest}\n")
        return target


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def write_tar(target: Path, members: list[tuple[Path, str]]) -> None:
    """A tar of (file, name in the archive), sorted, with fixed owners, modes and times: the same files give
    the same bytes, so the host's copy stays unchanged. Replaced only when the bytes differ."""
    tmp = target.with_name(f".{target.name}.tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for path, name in sorted(members, key=lambda m: m[1]):
            tar.add(path, arcname=name, recursive=False, filter=_reset)
    if target.exists() and sha256(target) == sha256(tmp):
        tmp.unlink()
    else:
        tmp.replace(target)


def tree_members(folder: Path, prefix: str) -> list[tuple[Path, str]]:
    files = [p for p in folder.rglob("*") if "__pycache__" not in p.parts]
    return [(folder, prefix)] + [(p, f"{prefix}/{p.relative_to(folder)}") for p in files]


def build(requirements: Path, out: Path, python: str, machine: str, root: Path | None = None) -> dict[str, Any]:
    if not PYTHON_RE.fullmatch(python):
        raise WheelhouseError(f"--python {python!r}: 应为 3.N / expected 3.N")
    if not MACHINE_RE.fullmatch(machine):
        raise WheelhouseError(f"--machine {machine!r}: 仅支持 x86_64、aarch64 / only x86_64 and aarch64")
    root = root or project_root()
    dest = out / f"{python}-{machine}"
    dest.mkdir(parents=True, exist_ok=True)
    # Several hosts of one play build at once: one builder at a time per directory.
    with (dest / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_locked(requirements, dest, python, machine, root)


def _build_locked(requirements: Path, dest: Path, python: str, machine: str, root: Path) -> dict[str, Any]:
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = dest / ".dependencies.sha256"
    if not stamp.exists() or stamp.read_text().strip() != key:
        for old in dest.glob("*.whl"):
            old.unlink()
        download_dependencies(requirements, dest, python, machine)
        stamp.write_text(key + "\n")
    wheel = build_hipgate(root, dest)
    wheels = sorted(p.name for p in dest.glob("*.whl"))
    manifest = {
        "python": python,
        "machine": machine,
        "hipgate": wheel.name,
        "wheels": {name: sha256(dest / name) for name in wheels},
    }
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    path = dest / "MANIFEST.json"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    write_tar(
        dest / WHEELS_TAR,
        [(dest / n, n) for n in wheels] + [(path, "MANIFEST.json"), (requirements, "requirements.txt")],
    )
    write_tar(dest / SHARE_TAR, tree_members(root / "datasets", "datasets"))
    return {"dir": str(dest), "wheels_tar": str(dest / WHEELS_TAR), "share_tar": str(dest / SHARE_TAR), **manifest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hipgate.wheelhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--python", required=True)
    parser.add_argument("--machine", required=True)
    args = parser.parse_args(argv)
    try:
        result = build(args.requirements, args.out, args.python, args.machine)
    except WheelhouseError as exc:
        print(f"错误 / error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
