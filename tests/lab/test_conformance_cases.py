"""ComplianceAsCode-style pass and fail cases for every check in the policy, on a real lab host.

The target is hardened by the baseline role; each check must pass there, fail once its control is
broken on the host, and pass again once the break is undone.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

from hipgate.conformance.checks import CHECK_SCOPE, CHECKS
from hipgate.policy.load import load_policy

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAB = os.environ.get("HIPGATE_TEST_CONFORMANCE_LAB", "t-conformance")
LAB_DIR = Path(os.environ.get("HIPGATE_STATE", "/var/lib/hipgate")) / "labs" / LAB


def backup(path: str, change: str) -> tuple[str, str]:
    """Break by editing a file after saving it (outside its directory: include dirs read every file);
    undo by putting it back."""
    saved = "/root/hgcase-" + path.strip("/").replace("/", "_")
    return f"cp -a {path} {saved} && {change}", f"mv {saved} {path}"


WAIT_SYNC = "for i in $(seq 60); do chronyc -n tracking | grep -q 'Leap status     : Normal' && break; sleep 1; done"
LISTENER = (
    'python3 -c \'import socket,time; s=socket.socket(); s.setsockopt(1, 2, 1); s.bind(("0.0.0.0", 23)); '
    "s.listen(); time.sleep(900)' >/dev/null 2>&1 & echo $! > /run/hgcase-listener.pid; sleep 0.5"
)

# check name -> (break, undo), run as root on the target.
FAIL_CASES: dict[str, tuple[str, str]] = {
    "password_complexity": backup(
        "/etc/security/pwquality.conf", "sed -i 's/^minlen.*/minlen = 4/' /etc/security/pwquality.conf"
    ),
    "password_ageing": backup("/etc/login.defs", "sed -i 's/^PASS_MAX_DAYS.*/PASS_MAX_DAYS 99999/' /etc/login.defs"),
    "no_empty_passwords": ("useradd -M hgempty && passwd -d hgempty", "userdel hgempty"),
    # Edited in place: userdel refuses a UID that the logged-in admin's processes use.
    "unique_uids": backup("/etc/passwd", "echo 'hgdup:x:1000:1000::/nonexistent:/usr/sbin/nologin' >> /etc/passwd"),
    "login_failure_lockout": backup(
        "/etc/security/faillock.conf", "sed -i 's/^deny.*/deny = 0/' /etc/security/faillock.conf"
    ),
    "idle_timeout": backup("/etc/profile.d/hipgate-tmout.sh", "sed -i '/readonly/d' /etc/profile.d/hipgate-tmout.sh"),
    "ssh_strong_crypto": (
        "echo 'Ciphers aes128-cbc,aes256-ctr' > /etc/ssh/sshd_config.d/0-hgcase.conf",
        "rm /etc/ssh/sshd_config.d/0-hgcase.conf",
    ),
    "root_ssh_login_disabled": (
        "echo 'PermitRootLogin yes' > /etc/ssh/sshd_config.d/0-hgcase.conf",
        "rm /etc/ssh/sshd_config.d/0-hgcase.conf",
    ),
    "sensitive_file_permissions": ("chmod 0644 /etc/shadow", "chmod 0640 /etc/shadow"),
    "audit_rules_configured": backup(
        "/etc/audit/rules.d/hipgate.rules", "sed -i '/-k identity/d' /etc/audit/rules.d/hipgate.rules"
    ),
    "audit_rules_immutable": (
        "mv /etc/audit/rules.d/zz-immutable.rules /root/hgcase.rules",
        "mv /root/hgcase.rules /etc/audit/rules.d/zz-immutable.rules",
    ),
    "auditd_running": ("systemctl stop auditd || true", "true"),
    "time_synchronised": ("systemctl stop chrony", f"systemctl start chrony && {WAIT_SYNC}"),
    "forbidden_packages_absent": (
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends tftpd-hpa >/dev/null",
        "apt-get purge -y -q tftpd-hpa >/dev/null",
    ),
    "no_cleartext_listeners": (LISTENER, "kill $(cat /run/hgcase-listener.pid) && rm /run/hgcase-listener.pid"),
    "firewall_default_deny": ("nft 'chain inet hipgate input { policy accept; }'", "nft -f /etc/nftables.conf"),
    # An allowance above the session-state rules (and one that names no source address).
    "firewall_stateful": (
        "nft insert rule inet hipgate input ip saddr 192.0.2.1 tcp dport 9 accept",
        "nft -f /etc/nftables.conf",
    ),
    "firewall_rules_specific": ("nft add rule inet hipgate input tcp dport 9 accept", "nft -f /etc/nftables.conf"),
    "su_restricted": backup(
        "/etc/pam.d/su", "sed -i 's/^auth[[:space:]]*required[[:space:]]*pam_wheel.so/# &/' /etc/pam.d/su"
    ),
    "sudo_restricted": (
        "echo 'hgnp ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/hgcase && chmod 0440 /etc/sudoers.d/hgcase",
        "rm /etc/sudoers.d/hgcase",
    ),
    "admin_roles_separated": ("usermod -aG secadm ops-admin", "gpasswd -d ops-admin secadm >/dev/null"),
    # Forwarding in clear to the collector instead of over TLS.
    "log_forwarding_tls": (
        "cp -a /etc/rsyslog.d/60-hipgate-remote.conf /root/hgcase-remote.conf && "
        "echo '*.* @@timesrc:514' > /etc/rsyslog.d/60-hipgate-remote.conf && systemctl restart rsyslog",
        "mv /root/hgcase-remote.conf /etc/rsyslog.d/60-hipgate-remote.conf && systemctl restart rsyslog",
    ),
    "log_retention": backup("/etc/logrotate.d/rsyslog", "sed -i 's/rotate [0-9]*/rotate 4/' /etc/logrotate.d/rsyslog"),
    "audit_log_protected": backup(
        "/etc/audit/auditd.conf",
        "sed -i 's/^max_log_file_action.*/max_log_file_action = ROTATE/' /etc/audit/auditd.conf",
    ),
    "minimal_installation": ("systemctl set-default graphical.target", "systemctl set-default multi-user.target"),
    "tmp_cleaned": (
        "mv /etc/tmpfiles.d/hipgate-tmp.conf /root/hgcase-tmp.conf",
        "mv /root/hgcase-tmp.conf /etc/tmpfiles.d/hipgate-tmp.conf",
    ),
    "core_dumps_disabled": (
        "mv /etc/systemd/coredump.conf.d/hipgate.conf /root/hgcase-coredump.conf",
        "mv /root/hgcase-coredump.conf /etc/systemd/coredump.conf.d/hipgate.conf",
    ),
}
# The lab's kernel has no audit support: auditd can never run there, so only its fail case is
# provable on the lab (production hosts have audit; the lab waives this check, see policies/).
PASS_NOT_PROVABLE_IN_LAB = {"auditd_running": "audit support not in kernel"}

POLICY = load_policy()
CASES = [(c, name) for c in POLICY.controls for name in c.checks if name not in CHECK_SCOPE]


def hipgate(*args: str) -> None:
    res = subprocess.run([str(BIN / "hipgate"), *args], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def root_sh(command: str) -> None:
    res = subprocess.run(
        [
            "ssh",
            "-F",
            str(LAB_DIR / "ssh_config"),
            "target",
            "sudo",
            "-n",
            "sh",
            "-c",
            shlex.quote(command),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, f"{command}\n{res.stdout}{res.stderr}"


@pytest.fixture(scope="module")
def target() -> object:
    subprocess.run([str(BIN / "hipgate"), "lab", "down", "--name", LAB], capture_output=True, check=False)
    hipgate("lab", "up", "--name", LAB, "--host", "timesrc", "--host", "target")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    res = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(LAB_DIR / "inventory"),
            str(Path(__file__).with_name("converge-conformance.yml")),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    host = testinfra.get_host("ssh://target", ssh_config=str(LAB_DIR / "ssh_config"))
    root_sh(WAIT_SYNC)
    yield host
    subprocess.run([str(BIN / "hipgate"), "lab", "down", "--name", LAB], capture_output=True, check=False)


def test_every_single_host_check_has_a_fail_case() -> None:
    # Checks scoped to database, bastion or the whole inventory have theirs on the reference lab
    # (tests/lab/test_access_control.py).
    single_host = {name for name in CHECKS if name not in CHECK_SCOPE}
    assert single_host == set(FAIL_CASES), single_host ^ set(FAIL_CASES)
    assert {name for _, name in CASES} <= set(CHECKS)


@pytest.mark.parametrize(("control", "check"), CASES, ids=[f"{c.id}::{n}" for c, n in CASES])
def test_check_passes_then_fails_when_broken(target: object, control, check: str) -> None:
    run = CHECKS[check]
    params = control.params()
    before = run(target, params)
    if check in PASS_NOT_PROVABLE_IN_LAB:
        assert not before.ok
        assert any(PASS_NOT_PROVABLE_IN_LAB[check] in e.output for e in before.evidence), before.evidence
    else:
        assert before.ok, f"pass case: {before.en}\n{before.evidence}"
    assert before.evidence and all(e.command for e in before.evidence)

    breaking, undo = FAIL_CASES[check]
    root_sh(breaking)
    try:
        broken = run(target, params)
        assert not broken.ok, f"fail case did not fail: {broken.en}\n{broken.evidence}"
    finally:
        root_sh(undo)
    if check not in PASS_NOT_PROVABLE_IN_LAB:
        for _ in range(10):  # services restarted by `undo` may need a moment
            again = run(target, params)
            if again.ok:
                break
            time.sleep(1)
        assert again.ok, f"after undo: {again.en}"


# Root escapes through an administrator role's sudo rights (issue 16, item 7): each was allowed by
# the roles' old rule (programs with any arguments), which the fail case below restores.
ROLE_ESCAPES = [
    ("ops-admin", "/usr/bin/apt-get -o APT::Update::Pre-Invoke::=/bin/sh update"),
    ("ops-admin", "/usr/bin/systemctl link /tmp/hg.service"),
    ("ops-admin", "/usr/bin/systemctl status ssh.service"),  # the pager runs !sh
    ("ops-admin", "/usr/sbin/ip netns exec x /bin/sh"),
    ("sec-admin", "/usr/bin/passwd root"),
    ("sec-admin", "/usr/sbin/useradd -o -u 0 hgroot"),
    ("sec-admin", "/usr/sbin/usermod -aG sudo sec-admin"),
    ("audit-admin", "/usr/bin/journalctl"),
    ("audit-admin", "/usr/sbin/ausearch --checkpoint /etc/sudoers"),
]
OLD_ROLE_RULES = (
    "Cmnd_Alias HGOLD_SYS = /usr/bin/systemctl, /usr/bin/apt-get, /usr/bin/apt, /usr/sbin/ip, /usr/sbin/reboot\n"
    "Cmnd_Alias HGOLD_SEC = /usr/sbin/nft, /usr/sbin/faillock, /usr/bin/chage, /usr/bin/passwd, /usr/sbin/usermod, "
    "/usr/sbin/useradd, /usr/sbin/userdel\n"
    "Cmnd_Alias HGOLD_AUD = /usr/sbin/ausearch, /usr/sbin/aureport, /usr/bin/journalctl\n"
    "%sysadm ALL=(root) HGOLD_SYS\n%secadm ALL=(root) HGOLD_SEC\n%audadm ALL=(root) HGOLD_AUD\n"
)


def root_rc(command: str) -> int:
    res = subprocess.run(
        ["ssh", "-F", str(LAB_DIR / "ssh_config"), "target", "sudo", "-n", "sh", "-c", shlex.quote(command)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return res.returncode


def may_run(user: str, command: str) -> bool:
    """Would sudo let `user` run exactly this command line (sudo -l -U USER CMD, asked as root)?"""
    return root_rc(f"sudo -l -U {shlex.quote(user)} {command} >/dev/null 2>&1") == 0


@pytest.mark.parametrize(("user", "command"), ROLE_ESCAPES, ids=[c for _, c in ROLE_ESCAPES])
def test_role_administrators_cannot_sudo_to_root(target: object, user: str, command: str) -> None:
    assert not may_run(user, command), f"{user} may run {command}"
    # What each role may run is its wrapper, which refuses every form that is not its own.
    assert may_run(
        user, f"/usr/local/sbin/hipgate-{ {'ops-admin': 'sysadm', 'sec-admin': 'secadm'}.get(user, 'audadm') }"
    )


@pytest.mark.parametrize(
    "command",
    [
        "/usr/local/sbin/hipgate-sysadm install -o APT::Update::Pre-Invoke::=/bin/sh",
        "/usr/local/sbin/hipgate-sysadm start debug-shell.service",
        "/usr/local/sbin/hipgate-sysadm status 'ssh.service; sh'",
        "/usr/local/sbin/hipgate-secadm set-password root",
        "/usr/local/sbin/hipgate-secadm set-password ops-admin",
        "/usr/local/sbin/hipgate-secadm add-user -ou0",
        "/usr/local/sbin/hipgate-audadm search --checkpoint /etc/sudoers",
        "/usr/local/sbin/hipgate-audadm journal --file /etc/shadow",
    ],
)
def test_role_wrappers_refuse_escapes(target: object, command: str) -> None:
    assert root_rc(command) == 2, command


def test_admin_roles_separated_detects_root_escapes(target: object) -> None:
    params = next(c for c in POLICY.controls if "admin_roles_separated" in c.checks).params()
    assert CHECKS["admin_roles_separated"](target, params).ok
    rules = "/etc/sudoers.d/hgcase-roles"
    root_sh(f"printf %s {shlex.quote(OLD_ROLE_RULES)} > {rules} && chmod 0440 {rules} && visudo -cf {rules}")
    try:
        # The old rules really were root: sudo allows the hook that runs /bin/sh.
        assert may_run("ops-admin", ROLE_ESCAPES[0][1])
        broken = CHECKS["admin_roles_separated"](target, params)
        assert not broken.ok, broken.en
        assert "apt-get" in broken.en and "passwd" in broken.en and "journalctl" in broken.en, broken.en
    finally:
        root_sh(f"rm -f {rules}")
    assert CHECKS["admin_roles_separated"](target, params).ok
