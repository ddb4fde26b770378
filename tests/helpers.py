"""Helpers shared by the unit tests: the project root and editing scratch copies of inventories."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "inventories" / "example-province"


def copy_example(dest: Path) -> Path:
    target = dest / "province"
    shutil.copytree(EXAMPLE, target)
    return target


def inventory_hosts(inv: Path) -> Path:
    return inv / "hosts.yml"


def inventory_settings(inv: Path) -> Path:
    return inv / "group_vars" / "all" / "hipgate.yml"


def problems_of(inv: Path) -> list[Any]:
    """The problems `load_inventory` reports for a bad inventory (exit code 2)."""
    import pytest

    from hipgate.errors import UserError
    from hipgate.inventory.load import load_inventory

    with pytest.raises(UserError) as caught:
        load_inventory(inv)
    assert caught.value.exit_code == 2
    return caught.value.problems


def edit_yaml(path: Path, change: Callable[[Any], object]) -> None:
    """Load a YAML file, let `change` mutate it in place (its return value is ignored), write it back."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def browser_render(page: Path, png: Path, width: int = 1400, height: int = 2400) -> str:
    """Open a local page in headless Chromium as an auditor's browser would: save a screenshot to
    `png` and return the DOM after parsing (what the browser understood, not the file's text)."""
    base = [
        shutil.which("chromium") or "chromium",
        "--headless",
        "--no-sandbox",  # running as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--no-first-run",
        f"--user-data-dir={png.parent / 'chromium-profile'}",
        f"--window-size={width},{height}",
    ]
    subprocess.run([*base, f"--screenshot={png}", page.as_uri()], capture_output=True, timeout=120, check=True)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return dom.stdout


# Custody tests: the custodians the OpenBao fixture enrols.
CUSTODIANS = ["custodian-a", "custodian-b", "custodian-c"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_login(
    port: int, password: str, role: str = "postgres", sql: str = "select 1"
) -> subprocess.CompletedProcess[str]:
    """A password login over TCP; the password goes through the environment of psql only."""
    return subprocess.run(
        ["psql", "-XAt", "-h", "127.0.0.1", "-p", str(port), "-U", role, "-d", "postgres", "-c", sql],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        check=False,
    )


def on_terminal(argv: list[str], answers: list[str]) -> tuple[int, str]:
    """Run on a pseudo-terminal, typing each answer only once its prompt is shown (as a custodian
    would: getpass discards anything typed before it turns echo off). Returns (rc, screen)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    screen, pending, typed = b"", list(answers), 0
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not chunk:
            break
        screen += chunk
        # One answer per prompt shown: the echo of an answer's newline must not count as a new prompt.
        prompts = screen.count(b"password of custodian")
        if pending and prompts > typed and screen.rstrip().endswith(b":"):
            time.sleep(0.2)  # let getpass switch echo off first
            os.write(master, pending.pop(0).encode() + b"\n")
            typed += 1
    os.close(master)
    return proc.wait(timeout=60), screen.decode(errors="replace")


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server this test started, by its PID: SIGTERM, then SIGKILL after 20 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def postgres_cluster(
    auth_local: str = "peer", settings: Sequence[str] = (), auth_host: str = "scram-sha-256"
) -> Iterator[dict]:
    """A throwaway PostgreSQL 15 cluster (Debian's postgresql-15 binaries) in a temporary directory, run
    as the unprivileged `postgres` user (as yourself when not root), on a loopback port and a socket in
    that directory; stopped by PID and removed afterwards. `settings` are `-c name=value` for the
    server; "{base}" in them is the cluster's directory. Yields base, sock, port and `as_pg`, the
    prefix that runs a command as the cluster's owner."""
    # Outside pytest's 0700 temporary tree, which the postgres user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="hipgate-pg-"))
    base.chmod(0o755)
    data, sock = base / "data", base / "sock"
    sock.mkdir(mode=0o700)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        subprocess.run(["chown", "-R", "postgres:postgres", str(base)], check=True)
    proc = None
    try:
        subprocess.run(
            [
                *as_pg,
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                f"--auth-local={auth_local}",
                f"--auth-host={auth_host}",
            ],
            check=True,
            capture_output=True,
        )
        port = free_port()
        extra = [a for setting in settings for a in ("-c", setting.format(base=base))]
        proc = subprocess.Popen(
            [*as_pg, str(PG_BIN / "postgres"), "-D", str(data), "-k", str(sock), "-p", str(port),
             "-c", "listen_addresses=127.0.0.1", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            ok = subprocess.run(
                [*as_pg, str(PG_BIN / "pg_isready"), "-h", str(sock), "-p", str(port)], capture_output=True
            )
            if ok.returncode == 0:
                break
            time.sleep(0.1)
        yield {"base": base, "sock": sock, "port": port, "as_pg": tuple(as_pg), "proc": proc}
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(base, ignore_errors=True)
