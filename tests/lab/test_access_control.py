"""No direct database access, on the reference lab deployed by site.yml: the firewall and pg_hba
both refuse, the declared clients log in over TLS with OpenBao's short-lived logins only, the
playbook keeps its own ssh path
and changes nothing when run again; and pass/fail cases for every check that needs the database,
the bastion or the whole inventory (ComplianceAsCode style).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import browser_render
from hipgate.conformance.checks import CHECK_SCOPE, CHECKS
from lab_reference import INV, LAB_DIR, check_from, hipgate, sh, tcp, unseal


def test_second_deploy_changes_nothing_and_keeps_the_management_path(lab: dict) -> None:
    # First, before any test changes a host: re-running site.yml right after the firewall went up.
    again = hipgate("deploy", "-i", str(INV))
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", again.stdout, re.M)
    assert len(recap) >= 8, again.stdout[-3000:]
    assert all(changed == "0" and unreach == "0" and failed == "0" for _, changed, unreach, failed in recap), recap
    # The firewall was in place for the whole run: Ansible's own ssh path survived it.
    assert sh("database", "nft list chain inet hipgate input | grep -c 'flow management-ssh'").stdout.strip() == "1"


def test_firewall_refuses_to_cut_ansibles_own_path(lab: dict) -> None:
    """With management networks that do not hold the control node, the role stops before any change."""
    before = sh("vault", "sha256sum /etc/nftables.conf").stdout
    env = {**os.environ, "ANSIBLE_CONFIG": str(Path(__file__).resolve().parents[2] / "ansible.cfg")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cut = '{"firewall_management_networks": ["192.0.2.0/24"]}'
    res = subprocess.run(
        ["ansible-playbook", "-i", str(INV), "playbooks/site.yml", "-l", "vault", "-t", "firewall", "-e", cut],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    control_node = lab["inv"].settings["network"]["management_networks"][0].split("/")[0]
    assert res.returncode != 0, res.stdout[-3000:]
    assert f"Ansible connects from {control_node}, which no flow" in res.stdout, res.stdout[-3000:]
    assert sh("vault", "sha256sum /etc/nftables.conf").stdout == before


def test_outsider_and_frontend_are_dropped_by_the_firewall(lab: dict) -> None:
    db = lab["addr"]["database"]
    for src in ("outsider", "frontend"):
        assert tcp(src, db, 5432) == 124, src
        assert tcp(src, db, 22) == 124, src  # administrators come through the bastion
    assert tcp("middleware", db, 5432) == 0
    assert tcp("bastion", db, 5432) == 0
    assert tcp("bastion", db, 22) == 0  # ProxyJump


@pytest.fixture
def frontend_let_through(lab: dict):
    """Test set-up: the database's firewall lets the front-end server through, as a misconfigured
    firewall would; pg_hba does not list it. Undone afterwards."""
    fe = lab["addr"]["frontend"]
    sh("database", f"nft insert rule inet hipgate input ip saddr {fe} tcp dport 5432 accept")
    yield
    sh("database", "nft -f /etc/nftables.conf")
    assert tcp("frontend", lab["addr"]["database"], 5432) == 124


def test_host_past_the_firewall_but_not_in_pg_hba_is_refused_by_postgresql(
    lab: dict, frontend_let_through: None, tmp_path: Path
) -> None:
    outcome = check_from(lab, "database_access_enforced", "frontend")
    attempts = outcome.data["database_access"]["attempts"]
    assert attempts
    # Every attempt reached PostgreSQL and was refused by pg_hba, with TLS and without.
    assert all("pg_hba.conf" in a["answer"] and a["answer"].startswith("refused") for a in attempts), attempts
    assert {a["tls"] for a in attempts} == {True, False}
    # ... and the check still fails: the firewall no longer matches the declared flow matrix.
    assert not outcome.ok
    # The report of a verify run shows both: the reachability cell in red and pg_hba's answers.
    results, _ = run_verify_limited(tmp_path, ["frontend"])
    hipgate("report", "--results", str(results), "--out", str(tmp_path / "report"))
    dom = browser_render(tmp_path / "report" / "report.html", tmp_path / "report.png")
    cell = re.search(r'<td class="cell (\w+)" data-from="frontend" data-to="database:5432" data-observed="(\w+)"', dom)
    assert cell and cell.groups() == ("fail", "open"), cell
    rows = re.findall(
        r'<tr class="(\w+)" data-from="frontend" data-role="([\w]+)" data-tls="(\w+)">.*?</tr>', dom, re.S
    )
    assert rows and all(status == "fail" for status, _, _ in rows)
    assert "pg_hba.conf rejects connection for host" in dom


def run_verify_limited(tmp_path: Path, limit: list[str]) -> tuple[Path, dict[str, int]]:
    from hipgate.verify import run_verify

    return run_verify(INV, tmp_path / "verify", limit=limit)


def test_outsider_is_refused_in_the_verify_report(lab: dict, tmp_path: Path) -> None:
    results, _ = run_verify_limited(tmp_path, ["outsider", "middleware"])
    doc = json.loads(results.read_text(encoding="utf-8"))
    by = {(r["check"], r["host"]): r for r in doc["results"]}
    # The outsider is probed only for what concerns it: reachability and database access.
    assert {c for c, h in by if h == "outsider"} == {"flow_matrix_enforced", "database_access_enforced"}
    reach = by[("flow_matrix_enforced", "outsider")]
    assert reach["status"] == "pass"
    probes = reach["data"]["reachability"]["probes"]
    assert {(p["to"], p["port"]) for p in probes if p["observed"] != "dropped"} == set()
    assert any(p["to"] == "database" and p["port"] == 5432 for p in probes)
    db = by[("database_access_enforced", "outsider")]["data"]["database_access"]["attempts"]
    assert db and all(a["answer"] == "dropped" for a in db)
    mw = by[("database_access_enforced", "middleware")]["data"]["database_access"]["attempts"]
    assert {(a["role"], a["tls"], a["answer"]) for a in mw if a["answer"] == "auth-requested"} == {
        ("exchange_app", True, "auth-requested")
    }
    # auditd cannot run on the lab kernel; its waiver is scoped to the inventory named `lab`.
    failed = [(r["check"], r["host"]) for r in doc["results"] if r["status"] == "fail"]
    assert failed == [("auditd_running", "middleware")], failed


@pytest.mark.parametrize(("client", "role"), [("middleware", "exchange_app"), ("bastion", "ops_admin")])
def test_declared_clients_log_in_only_with_short_lived_logins_over_tls(lab: dict, client: str, role: str) -> None:
    """The host's certificate gets it a login from OpenBao; no static password exists anywhere."""
    # pg_stat_ssl hides the session from its group role, so psql's \conninfo shows the TLS.
    res = sh(client, f"hipgate-db-login {role} -d exchange -XAt -c 'select current_user, session_user' -c '\\conninfo'")
    first, *conninfo = res.stdout.strip().splitlines()
    current, session = first.split("|")
    assert current == role and session.startswith("v-"), res.stdout
    assert any(line.startswith("SSL connection (protocol: TLS") for line in conninfo), res.stdout
    # The login OpenBao made expires; the group role itself cannot log in and has no password.
    q = (
        f"select rolcanlogin, rolpassword is null from pg_authid where rolname = '{role}' "
        f"union all select rolvaliduntil is not null, left(rolpassword, 14) = 'SCRAM-SHA-256$' "
        f"from pg_authid where rolname = '{session}'"
    )
    rows = sh("database", f'runuser -u postgres -- psql -XAtc "{q}"').stdout.split()
    assert rows == ["f|t", "t|t"], rows
    # Nothing on the client holds a database password.
    found = sh(client, "grep -rlis password /etc/hipgate /root /home 2>/dev/null || true").stdout.split()
    assert not [f for f in found if not f.endswith((".crt", "db-login.json"))], found
    # Another host's role is refused by OpenBao's policy.
    other = "ops_admin" if role == "exchange_app" else "exchange_app"
    refused = sh(client, f"hipgate-db-login {other} -c 'select 1'", check=False)
    assert refused.returncode != 0, refused.stdout


def test_bastion_records_administrator_sessions(lab: dict) -> None:
    """A real recorded session: an administrator logs in to the bastion with a terminal and the
    journal holds tlog's record of what was typed and shown."""
    key = LAB_DIR / "admin_ops"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    pub = key.with_suffix(".pub").read_text()
    sh(
        "bastion",
        "install -d -m 0700 -o ops-admin -g ops-admin ~ops-admin/.ssh && cat > ~ops-admin/.ssh/authorized_keys "
        "&& chown ops-admin: ~ops-admin/.ssh/authorized_keys && chmod 0600 ~ops-admin/.ssh/authorized_keys",
        stdin=pub,
    )
    marker = f"hipgate-recorded-{int(time.time())}"
    # Typed into a terminal once the shell is up (input sent before that never reaches it).
    options = ["-tt", "-i", str(key), "-o", "User=ops-admin", "-o", "ControlMaster=no", "-o", "ControlPath=none"]
    login = shlex.join(["ssh", "-F", str(LAB_DIR / "ssh_config"), *options, "bastion"])
    res = subprocess.run(
        ["bash", "-c", f"(sleep 2; echo 'echo {marker}'; sleep 2; echo exit; sleep 1) | {login}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert marker in res.stdout and "recorded" in res.stdout, res.stdout + res.stderr
    assert "Failed creating lock file" not in res.stdout + res.stderr  # the recorder runs as _tlog
    for _ in range(20):  # tlog flushes within its latency (10 s by default)
        found = sh("bastion", f"journalctl -q -o cat --since -10min | grep -c {marker}", check=False)
        if found.stdout.strip() not in ("", "0"):
            break
        time.sleep(1)
    assert found.stdout.strip() not in ("", "0"), "no tlog record of the session in the journal"


# Checks that need the database, the bastion or the whole inventory: (host to break, break, undo,
# host the check runs on). Each must pass on the deployed lab, fail once broken, pass once undone.
def psql_set(setting: str, value: str) -> tuple[str, str]:
    run = "runuser -u postgres -- psql -XAtc"
    return (
        f"{run} \"alter system set {setting} = '{value}'\" && {run} 'select pg_reload_conf()' && sleep 1",
        f"{run} \"alter system reset {setting}\" && {run} 'select pg_reload_conf()' && sleep 1",
    )


HBA = "/etc/postgresql/15/main/pg_hba.conf"
PG = "/usr/lib/postgresql/15/bin"
# Checksums can only be switched with the cluster stopped.
CHECKSUMS = (
    "systemctl stop postgresql@15-main && "
    f"runuser -u postgres -- {PG}/pg_checksums {{}} -D /var/lib/postgresql/15/main >/dev/null && "
    "systemctl start postgresql@15-main"
)
RESTORE_TESTS = "/var/lib/pgbackrest-restore-tests"
FE_THROUGH = "nft insert rule inet hipgate input ip saddr {frontend} tcp dport 5432 accept"
REFERENCE_CASES: dict[str, tuple[str, str, str | Callable[[dict], None], str]] = {
    "postgresql_tls": ("database", *psql_set("ssl_min_protocol_version", "TLSv1"), "database"),
    "postgresql_scram_only": ("database", *psql_set("password_encryption", "md5"), "database"),
    "postgresql_idle_timeout": ("database", *psql_set("idle_session_timeout", "0"), "database"),
    "postgresql_audit_logging": ("database", *psql_set("log_connections", "off"), "database"),
    "postgresql_access_rules": (
        "database",
        f"cp -a {HBA} /root/hgcase-hba && sed -i '1i host all all 0.0.0.0/0 trust' {HBA} && "
        "runuser -u postgres -- psql -XAtc 'select pg_reload_conf()'",
        f"mv /root/hgcase-hba {HBA} && runuser -u postgres -- psql -XAtc 'select pg_reload_conf()'",
        "database",
    ),
    "postgresql_data_checksums": ("database", CHECKSUMS.format("-d"), CHECKSUMS.format("-e"), "database"),
    "bastion_session_recording": (
        "bastion",
        "usermod -s /bin/bash ops-admin",
        "usermod -s /usr/bin/tlog-rec-session ops-admin",
        "bastion",
    ),
    # The database's firewall lets the front-end server through: both probes from it notice.
    "flow_matrix_enforced": ("database", FE_THROUGH, "nft -f /etc/nftables.conf", "frontend"),
    "database_access_enforced": ("database", FE_THROUGH, "nft -f /etc/nftables.conf", "frontend"),
    "database_no_static_passwords": (
        "database",
        "runuser -u postgres -- psql -XAtc 'alter role exchange_app login'",
        "runuser -u postgres -- psql -XAtc 'alter role exchange_app nologin'",
        "database",
    ),
    "vault_audit_device": (
        "vault",
        "chmod 0644 /var/log/openbao/audit.log",
        "chmod 0600 /var/log/openbao/audit.log",
        "vault",
    ),
    # A quorum's share reads 48 h ago of a generation never replaced (forged into the audit log; openbao
    # appends to the same file, so the restore rewrites it in place).
    "custody_recovered_rotated": (
        "vault",
        'python3 -c "import json, datetime as d; t = (d.datetime.now(d.timezone.utc) - d.timedelta(hours=48))'
        ".strftime('%Y-%m-%dT%H:%M:%SZ'); [print(json.dumps({{'time': t, 'type': 'response', 'request': "
        "{{'operation': 'read', 'path': 'hipgate-custody/data/hgcase-db/g1/shares/' + c}}}})) "
        "for c in ('custodian-a', 'custodian-b')]\" >> /var/log/openbao/audit.log",
        "grep -v hgcase-db /var/log/openbao/audit.log > /root/hgcase-audit; "
        "cat /root/hgcase-audit > /var/log/openbao/audit.log; rm -f /root/hgcase-audit",
        "vault",
    ),
    # The break fails no WAL segment for good: a failed one is retried once the setting is back.
    "backup_wal_archiving": ("database", *psql_set("archive_command", "/bin/false"), "database"),
    "backup_repository_current": (
        "backup-a",
        "systemctl disable --now hipgate-backup-full.timer",
        "systemctl enable --now hipgate-backup-full.timer",
        "backup-a",
    ),
    # A newer, failed restore test on record (result files sort by time of finishing).
    "backup_restore_tested": (
        "backup-a",
        # Doubled braces: the case is str.format-ed with the lab's addresses.
        f'echo \'{{{{"ok": false, "finished": "9999", "error": "case"}}}}\' > {RESTORE_TESTS}/9999.json',
        f"rm {RESTORE_TESTS}/9999.json",
        "backup-a",
    ),
    # The tunnel is down while strongSwan is stopped; starting it brings the tunnel back (start_action).
    "vpn_tunnel_strong": ("frontend", "systemctl stop strongswan", "systemctl start strongswan", "frontend"),
    "vpn_leak_guard": (
        "frontend",
        "nft delete table inet hipgate_vpn",
        "nft -f /etc/nftables.d/hipgate-vpn.nft",
        "frontend",
    ),
    # The simulated platform's DNS server stops answering.
    "platform_network_preflight": ("natplat", "systemctl stop dnsmasq", "systemctl start dnsmasq", "frontend"),
    "exchange_running": (
        "frontend",
        "systemctl stop hipgate-exchange-relay",
        "systemctl start hipgate-exchange-relay",
        "frontend",
    ),
    # A restart seals OpenBao: the undo is the custodians' part, two unseal keys.
    "vault_unseal_split": ("vault", "systemctl restart openbao", unseal, "vault"),
}


def test_every_scoped_check_has_a_case_here() -> None:
    assert set(REFERENCE_CASES) == set(CHECK_SCOPE), set(REFERENCE_CASES) ^ set(CHECK_SCOPE)
    assert set(CHECK_SCOPE) <= set(CHECKS)


@pytest.mark.parametrize("check", sorted(REFERENCE_CASES))
def test_scoped_check_passes_then_fails_when_broken(lab: dict, check: str) -> None:
    target, breaking, undo, probe_from = REFERENCE_CASES[check]
    before = check_from(lab, check, probe_from)
    assert before.ok, f"pass case: {before.en}\n{before.evidence}"
    sh(target, breaking.format(**lab["addr"]))
    try:
        broken = check_from(lab, check, probe_from)
        assert not broken.ok, f"fail case did not fail: {broken.en}\n{broken.evidence}"
    finally:
        undo(lab) if callable(undo) else sh(target, undo)
    for _ in range(10):
        again = check_from(lab, check, probe_from)
        if again.ok:
            break
        time.sleep(1)
    assert again.ok, f"after undo: {again.en}"
