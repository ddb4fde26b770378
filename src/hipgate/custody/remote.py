"""Reaching a deployed system the way Ansible does (the inventory's ssh settings): psql as the
cluster's superuser on the database host, and the break-glass session from the bastion.
Secrets travel on ssh's stdin only, never on a command line."""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

from hipgate.custody import postgres
from hipgate.errors import fail

PSQL = "psql -XAtq -v ON_ERROR_STOP=1"
CA_ON_HOSTS = "/etc/hipgate/pki/ca.crt"  # the pki role's CA certificate on every managed host


def _host_vars(inv: Any, host: str) -> dict[str, Any]:
    return {**inv.vars, **inv.hosts[host]}


def ssh(inv: Any, host: str, remote: str, tty: bool = False) -> list[str]:
    """ssh argv for one remote shell command on an inventory host, with the inventory's options."""
    hv = _host_vars(inv, host)
    argv = ["ssh", *shlex.split(str(hv.get("ansible_ssh_common_args", "")))]
    if hv.get("ansible_ssh_private_key_file"):
        argv += ["-i", str(hv["ansible_ssh_private_key_file"])]
    if hv.get("ansible_user"):
        argv += ["-l", str(hv["ansible_user"])]
    if hv.get("ansible_port"):
        argv += ["-p", str(hv["ansible_port"])]
    argv += ["-o", "BatchMode=yes"]
    if tty:
        argv.append("-t")
    return [*argv, str(hv["ansible_host"]), remote]


def superuser(inv: Any, db_host: str) -> postgres.Superuser:
    """SQL as `postgres` on the database host (peer authentication over the local socket)."""
    return postgres.Superuser(tuple(ssh(inv, db_host, f"sudo -n -u postgres {PSQL} -f -")), db_host)


STASH = "/usr/local/sbin/hipgate-breakglass-stash"  # roles/bastion: root-only, through sudo
SESSION = "/usr/local/sbin/hipgate-breakglass"


def breakglass(inv: Any, db_host: str, password: str, minutes: int, tty: bool, sql: str | None) -> int:
    """A psql session as the superuser from the bastion (the only host pg_hba lets it log in from),
    ended after `minutes`. The password goes over ssh's stdin to a root-only stash (sudo does not
    record that call), and from there to a psql that runs as a dedicated account from an
    execute-only binary, inside a systemd scope killed at the deadline (roles/bastion): nothing in
    the session, not even a `\\!` shell, can read it, and nothing of the session outlives it."""
    bastions = inv.group_hosts("bastion")
    if not bastions:
        raise fail(
            "bastion",
            "清单中没有堡垒机，无法开启应急会话。",
            "the inventory has no bastion; no break-glass session is possible.",
            "在 bastion 组中加入堡垒机，或只用 --print。",
            "add the bastion to the bastion group, or use --print.",
        )
    bastion, seconds = bastions[0], max(60, minutes * 60)
    port = int((inv.settings.get("database") or {}).get("port", 5432))
    res = subprocess.run(
        ssh(inv, bastion, f"sudo -n {STASH} {seconds}"),
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ident = res.stdout.strip()
    if res.returncode != 0 or not re.fullmatch(r"[0-9a-f]{32}", ident):
        raise fail(
            bastion,
            f"无法在堡垒机上准备会话：{res.stderr.strip()[:200]}",
            f"could not prepare the session on the bastion: {res.stderr.strip()[:200]}",
            "确认可以 ssh 登录堡垒机，且 bastion 角色已部署（hipgate-breakglass）。",
            "make sure ssh to the bastion works and the bastion role is deployed (hipgate-breakglass).",
            exit_code=4,
        )
    session = f"sudo -n {SESSION} {ident} {shlex.quote(inv.address(db_host))} {port} {seconds}"
    return subprocess.run(ssh(inv, bastion, session, tty=tty), input=sql, text=True, check=False).returncode


AUDIT_LOG = "/var/log/openbao/audit.log"  # the vault role's file audit device (0600 openbao)


def audit_share_events(inv: Any) -> list[str]:
    """Successful share reads and writes from the vault host's audit log (exposure.FILTER, as root:
    paths, operations, times and readers only, never a value). Raises a bilingual error when the
    log cannot be read."""
    from hipgate.custody import exposure

    hosts = inv.group_hosts("vault")
    remote_cmd = f"sudo -n python3 -c {shlex.quote(exposure.FILTER)} {AUDIT_LOG}"
    res = (
        subprocess.run(ssh(inv, hosts[0], remote_cmd), capture_output=True, text=True, timeout=120, check=False)
        if hosts
        else None
    )
    if res is None or res.returncode != 0:
        raise fail(
            hosts[0] if hosts else "vault",
            "无法读取 OpenBao 审计日志，不能确认恢复过的口令已轮换。",
            "cannot read OpenBao's audit log, so cannot confirm recovered passwords were rotated.",
            f"确认可以 ssh 登录该主机并以 sudo 读取 {AUDIT_LOG}。",
            f"make sure ssh to the host works and sudo can read {AUDIT_LOG}.",
            exit_code=4,
        )
    return res.stdout.splitlines()
