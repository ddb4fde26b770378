"""The reference lab every lab test module shares (booted and deployed once per session by
tests/lab/conftest.py): its paths, and helpers to run commands and checks on its hosts."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import testinfra

from hipgate.conformance.checks import Context, run_check
from hipgate.policy.load import load_policy

HIPGATE = str(Path(sys.executable).parent / "hipgate")
# HIPGATE_TEST_LAB: another name lets two checkouts run their lab tests side by side.
LAB = os.environ.get("HIPGATE_TEST_LAB", "t-access")
LAB_DIR = Path(os.environ.get("HIPGATE_STATE", "/var/lib/hipgate")) / "labs" / LAB
INV = LAB_DIR / "inventory"
CA = "sslrootcert=/etc/hipgate/pki/ca.crt"


def hipgate(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([HIPGATE, *args], capture_output=True, text=True, check=False)
    if check:
        # Ansible's failures first: the tail alone often holds only the recap.
        lines = res.stdout.splitlines()
        failed = [" | ".join(lines[i : i + 4]) for i, ln in enumerate(lines) if ln.startswith(("fatal:", "failed:"))]
        assert res.returncode == 0, "\n".join(failed)[:6000] + "\n" + res.stdout[-4000:] + res.stderr[-3000:]
    return res


def sh(host: str, command: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A root command on a lab host (through the management path, as Ansible does)."""
    res = subprocess.run(
        ["ssh", "-F", str(LAB_DIR / "ssh_config"), host, "sudo", "-n", "sh", "-c", shlex.quote(command)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check:
        assert res.returncode == 0, f"{host}: {command}\n{res.stdout}{res.stderr}"
    return res


def tcp(src: str, address: str, port: int) -> int:
    """0 connected, 1 refused, 124 dropped by a firewall (timed out)."""
    return sh(src, f"timeout 3 bash -c '</dev/tcp/{address}/{port}'", check=False).returncode


def host(name: str) -> object:
    return testinfra.get_host(f"ssh://{name}", ssh_config=str(LAB_DIR / "ssh_config"))


def check_from(lab: dict, check: str, name: str):
    control = next(c for c in load_policy().controls if check in c.checks)
    return run_check(check, host(name), control.params(), Context(name, lab["inv"]))


def unseal(lab: dict, custodians: tuple[str, ...] = ("custodian-a", "custodian-c")) -> None:
    """The custodians' part after a restart: each submits their unseal key (from the lab's files)."""
    import hvac

    client = hvac.Client(url=f"https://{lab['addr']['vault']}:8200", verify=str(LAB_DIR / "pki" / "ca.crt"))
    for _ in range(30):
        try:
            if client.sys.read_seal_status()["initialized"]:
                break
        except Exception:  # still starting
            time.sleep(1)
    for c in custodians:
        client.sys.submit_unseal_key((LAB_DIR / "custody" / f"{c}.unseal-key").read_text().strip())
    assert not client.sys.read_seal_status()["sealed"]


def wait_tunnel(seconds: int = 60) -> str:
    """`swanctl --list-sas` on the front-end server once its CHILD_SA is installed."""
    for _ in range(seconds):
        out = sh("frontend", "swanctl --list-sas 2>/dev/null", check=False).stdout
        if "INSTALLED" in out:
            return out
        time.sleep(1)
    raise AssertionError(f"no CHILD_SA within {seconds} s")


def custodian_password(custodian: str) -> str:
    """A custodian's own password: the one they chose (kept 0600 in the lab dir) once they replaced
    the first password `custody setup` gave them."""
    own = LAB_DIR / "custody" / f"{custodian}.password"
    return (own if own.is_file() else LAB_DIR / "custody" / f"{custodian}.login").read_text().strip()


def replace_first_passwords(lab_addr: str) -> None:
    """What each custodian does on receiving their files: replace the first password (custody status
    and the handover gate name anyone who did not)."""
    import secrets

    from hipgate.custody import vault

    ca = str(LAB_DIR / "pki" / "ca.crt")
    for c in ("custodian-a", "custodian-b", "custodian-c"):
        own = LAB_DIR / "custody" / f"{c}.password"
        if own.is_file():
            continue
        new = secrets.token_urlsafe(18)
        vault.change_password(vault.login(lab_addr, c, custodian_password(c), ca), c, new)
        fd = os.open(own, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(new + "\n")
