"""Nothing a host returns reaches a shell command of `hipgate verify` as shell text.

Each check runs its real command strings through a real shell here; only the programs they call
(sudo, runuser, psql, getent, cat) are stand-ins that answer what a hostile host would (a database
named `x;touch MARK;`, a user of that name, a forged rsyslog target) and record the argv they got.
If any value were interpolated unquoted, the shell would run `touch MARK`.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hipgate.conformance import bastion_checks, checks, database_checks


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str


STUB = r"""#!/bin/bash
# Stand-in for {name}: records its argv, answers as a hostile host would.
printf '%s\0' "{name}" "$@" >> "$STUB_LOG"; printf '\n' >> "$STUB_LOG"
HOSTILE="$HOSTILE_VALUE"
case "{name}" in
  sudo)
    if [ "$1" = -n ]; then shift; exec "$@"; fi
    if [ "$1" = -l ]; then printf 'User may run the following commands on h:\n    (root) /usr/bin/true\n'; fi ;;
  runuser) while [ "$1" != -- ]; do shift; done; shift; exec "$@" ;;
  psql)
    sql="${{@: -1}}"
    case "$sql" in
      *json_agg*datname*) python3 -c 'import json, sys; print(json.dumps(["postgres", sys.argv[1]]))' "$HOSTILE" ;;
      *datname*) printf 'postgres,%s\n' "$HOSTILE" ;;
      *has_schema_privilege*) echo f ;;
    esac ;;
  getent)
    if [ "$1" = group ]; then
      shift; for g in "$@"; do echo "$g:x:900:$HOSTILE"; done
    else
      echo "$HOSTILE:/usr/bin/tlog-rec-session"
    fi ;;
  id) echo "$HOSTILE" ;;
  passwd) echo "$HOSTILE L" ;;
  cat) case "$*" in
         *rsyslog*) printf 'action(type="omfwd" target="%s" port="6514" ' "$HOSTILE"
                    printf 'StreamDriverMode="1" StreamDriverAuthMode="x509/name")\n' ;;
         *tlog*) echo '{{"writer":"journal"}}' ;;
       esac ;;
  systemctl) echo active ;;
  ss) echo "ESTAB 0 0 10.0.0.1:40000 $HOSTILE:6514" ;;
esac
exit 0
"""
STUBS = ("sudo", "runuser", "psql", "getent", "id", "passwd", "cat", "systemctl", "stat", "logger", "ss", "rsyslogd")


class LocalHost:
    """testinfra's host.run, through a real bash with the stand-ins first on PATH."""

    def __init__(self, tmp: Path, hostile: str) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for name in STUBS:
            path = self.bin / name
            path.write_text(STUB.format(name=name))
            path.chmod(0o755)
        self.log = tmp / "argv.log"
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "STUB_LOG": str(self.log),
            "HOSTILE_VALUE": hostile,
        }

    def run(self, command: str) -> Result:
        res = subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, env=self.env, timeout=30, check=False
        )
        return Result(res.returncode, res.stdout, res.stderr)

    def argvs(self, name: str) -> list[list[str]]:
        if not self.log.exists():
            return []
        rows = [r.split("\0") for r in self.log.read_text().split("\0\n") if r]
        return [r[1:] for r in rows if r and r[0] == name]


@pytest.fixture
def mark(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def hostile_for(mark: Path) -> str:
    return f"x';touch {mark};'\"$(touch {mark})\";touch {mark};#"


def run_check(fn: Any, host: LocalHost, params: dict[str, Any]) -> Any:
    try:
        return fn(host, params)
    except (ValueError, KeyError, json.JSONDecodeError):
        return None  # a crash on hostile data is a failed check, never a command run


def test_database_names_are_never_shell_text(tmp_path: Path, mark: Path) -> None:
    host = LocalHost(tmp_path, hostile_for(mark))
    run_check(database_checks.postgresql_access_rules, host, {})
    assert not mark.exists(), "a database name ran as a shell command"
    # The hostile database was still checked, by name, as one argument.
    dbargs = [argv[argv.index("-d") + 1] for argv in host.argvs("psql") if "has_schema_privilege" in argv[-1]]
    assert database_checks._conninfo_db(hostile_for(mark)) in dbargs, host.argvs("psql")


def test_user_names_from_the_host_are_never_shell_text(tmp_path: Path, mark: Path) -> None:
    host = LocalHost(tmp_path, hostile_for(mark))
    params = {"admin_roles": ["sysadm", "secadm", "audadm"], "unrestricted_groups": ["sudo", "wheel"]}
    run_check(checks.admin_roles_separated, host, params)
    run_check(checks.sudo_restricted, host, {})
    run_check(bastion_checks.bastion_session_recording, host, {"recorded_groups": ["sysadm"]})
    assert not mark.exists(), "a user name ran as a shell command"


def test_rsyslog_target_is_never_shell_text(tmp_path: Path, mark: Path) -> None:
    # Inside action(...) and target="...": no parenthesis or double quote, or the parser stops early.
    host = LocalHost(tmp_path, f"x';touch {mark};'")
    run_check(checks.log_forwarding_tls, host, {})
    assert not mark.exists(), "an rsyslog target ran as a shell command"


def test_stand_ins_do_run_injected_text(tmp_path: Path, mark: Path) -> None:
    """The harness can see an injection: the same hostile value, interpolated, does touch MARK."""
    host = LocalHost(tmp_path, hostile_for(mark))
    host.run(f"getent passwd {hostile_for(mark)}")
    assert mark.exists()
