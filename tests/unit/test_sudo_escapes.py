"""Administrator roles' sudo rights: the check reads `sudo -l -U` as sudo prints it and flags every
entry that gives root; the role wrappers refuse every argument form that is not their own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

from helpers import ROOT
from hipgate.conformance.checks import root_equivalent_commands

OLD_DEFAULT = """Matching Defaults entries for ops-admin on target:
    use_pty, logfile=/var/log/sudo.log, passwd_tries=3

User ops-admin may run the following commands on target:
    (root) /usr/bin/systemctl, /usr/bin/apt-get, /usr/bin/apt, /usr/sbin/ip, /usr/sbin/reboot, /usr/sbin/shutdown
"""


def listing(*entries: str) -> str:
    return "User u may run the following commands on h:\n" + "".join(f"    {e}\n" for e in entries)


def test_old_default_rules_are_flagged() -> None:
    assert root_equivalent_commands(OLD_DEFAULT) == [
        "/usr/bin/systemctl",
        "/usr/bin/apt-get",
        "/usr/bin/apt",
        "/usr/sbin/ip",
    ]


@pytest.mark.parametrize(
    "entry",
    [
        "(ALL : ALL) ALL",
        "(root) NOPASSWD: ALL",
        "(root) /usr/bin/passwd root",
        "(root) /usr/sbin/useradd -o -u 0 x",
        "(root) /usr/bin/systemctl restart *",
        "(root) /usr/bin/systemctl link /tmp/x.service",
        "(root) /usr/bin/systemctl status ssh.service",
        "(root) /usr/bin/journalctl",
        "(root) /usr/bin/apt-get update",
        "(root) /usr/sbin/ausearch --checkpoint /etc/x",
        "(root) /usr/sbin/ip netns exec x sh",
        "(root) /usr/bin/less /var/log/syslog",
        "(root) SETENV: NOPASSWD: /usr/bin/env",
    ],
)
def test_escape_entries_are_flagged(entry: str) -> None:
    assert root_equivalent_commands(listing(entry)), entry


@pytest.mark.parametrize(
    "entry",
    [
        "(root) /usr/local/sbin/hipgate-sysadm",
        '(root) /usr/sbin/reboot ""',
        "(root) /usr/sbin/shutdown -h now",
        "(root) /usr/bin/systemctl --no-pager status ssh.service",
        "(root) /usr/sbin/nft list ruleset",
        "(root) !/usr/bin/su",
    ],
)
def test_safe_entries_pass(entry: str) -> None:
    assert root_equivalent_commands(listing(entry)) == [], entry


@pytest.fixture(scope="module")
def wrappers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = jinja2.Environment(keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    defaults = yaml.safe_load((ROOT / "roles/baseline/defaults/main.yml").read_text(encoding="utf-8"))
    text = env.from_string((ROOT / "roles/baseline/templates/hipgate-admin.j2").read_text(encoding="utf-8")).render(
        baseline_admin_roles=defaults["baseline_admin_roles"]
    )
    out = tmp_path_factory.mktemp("wrappers")
    for role in ("sysadm", "secadm", "audadm"):
        (out / f"hipgate-{role}").write_text(text, encoding="utf-8")
        (out / f"hipgate-{role}").chmod(0o755)
    return out


def test_roles_run_only_their_wrapper() -> None:
    defaults = yaml.safe_load((ROOT / "roles/baseline/defaults/main.yml").read_text(encoding="utf-8"))
    for role, spec in defaults["baseline_admin_roles"].items():
        assert spec["commands"] == [f"/usr/local/sbin/hipgate-{role}"], role


# Each is refused before the wrapper runs anything (exit 2), so running them here is harmless.
REFUSED = [
    ("sysadm", ["install", "-o", "APT::Update::Pre-Invoke::=/bin/sh"]),
    ("sysadm", ["install", "--", "x"]),
    ("sysadm", ["start", "debug-shell.service"]),
    ("sysadm", ["start", "rescue.target"]),
    ("sysadm", ["status", "ssh.service;sh"]),
    ("sysadm", ["restart", "--root=/tmp", "x.service"]),
    ("sysadm", ["link", "/tmp/x.service"]),
    ("sysadm", ["update", "-o", "x"]),
    ("secadm", ["set-password", "root"]),
    ("secadm", ["set-password", "daemon"]),
    ("secadm", ["set-password", "-e"]),
    ("secadm", ["add-user", "-o"]),
    ("secadm", ["max-days", "x", "-1"]),
    ("secadm", ["useradd", "-o", "-u", "0", "x"]),
    ("audadm", ["journal", "--file", "/etc/shadow"]),
    ("audadm", ["journal", "--since"]),
    ("audadm", ["search", "--checkpoint", "/etc/sudoers"]),
    ("audadm", ["search", "-if", "/etc/shadow"]),
    ("audadm", ["report", "--start", "today; sh"]),
    ("audadm", ["vacuum"]),
]


@pytest.mark.parametrize(("role", "args"), REFUSED, ids=[f"{r}:{' '.join(a)}" for r, a in REFUSED])
def test_wrapper_refuses(wrappers: Path, role: str, args: list[str]) -> None:
    res = subprocess.run([str(wrappers / f"hipgate-{role}"), *args], capture_output=True, text=True, timeout=10)
    assert res.returncode == 2 and "refused" in res.stderr, (res.returncode, res.stdout, res.stderr)
