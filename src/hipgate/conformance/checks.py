"""Host checks named by policies/*.yml. Each check runs real commands on a host (testinfra) and
returns whether the control holds, with every command and what it returned as evidence.

Checks read the effective state (sshd -T, a login shell's ulimit, ss) rather than only config
files, so a setting that does not take effect fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_EVIDENCE_CHARS = 4000


@dataclass
class Evidence:
    command: str
    rc: int
    output: str


@dataclass
class Outcome:
    ok: bool
    zh: str
    en: str
    evidence: list[Evidence] = field(default_factory=list)
    # Structured facts a report section draws from (e.g. the reachability matrix); never secrets.
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Context:
    """What a check that looks beyond its own host needs: its name in, and the whole, inventory."""

    host: str
    inventory: Any  # hipgate.inventory.load.Inventory


class Probe:
    """Runs commands with sudo on one host and keeps what they returned."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.evidence: list[Evidence] = []

    def run(self, command: str, sudo: bool = True) -> tuple[int, str]:
        full = f"sudo -n sh -c {_quote(command)}" if sudo else command
        res = self.host.run(full)
        # Judge on stdout only: stderr also carries the ssh client's own notices (e.g. a busy
        # ControlMaster socket), which must not read as the host's answer. Evidence keeps both.
        output = res.stdout.strip()
        shown = output + (f"\n[stderr] {res.stderr.strip()}" if res.stderr.strip() else "")
        self.evidence.append(
            Evidence(command if sudo else f"(as login user) {command}", res.rc, shown[:MAX_EVIDENCE_CHARS])
        )
        return res.rc, output

    def outcome(self, ok: bool, zh: str, en: str, data: dict[str, Any] | None = None) -> Outcome:
        return Outcome(ok, zh, en, self.evidence, data or {})


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _conf_values(text: str, sep: str = "=") -> dict[str, str]:
    """key = value (or key value) lines, comments skipped; the last occurrence wins."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if sep in line:
            key, _, value = line.partition(sep)
        else:
            key, _, value = line.partition(" ")
        values[key.strip()] = value.strip()
    return values


def _int(value: str | None, default: int = -1) -> int:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


Check = Callable[..., Outcome]
CHECKS: dict[str, Check] = {}
MANAGED = "managed"  # every host hipgate manages
# Where each check runs, by inventory group; `managed` unless a check says otherwise.
CHECK_SCOPE: dict[str, tuple[str, ...]] = {}
# Checks that take a Context (they read the inventory, e.g. to probe other hosts).
NEEDS_CONTEXT: set[str] = set()


def check(fn: Check) -> Check:
    CHECKS[fn.__name__] = fn
    return fn


def scoped(*groups: str, context: bool = False) -> Callable[[Check], Check]:
    """Register a check that runs only on hosts of `groups` (`managed`, or inventory groups)."""

    def register(fn: Check) -> Check:
        CHECK_SCOPE[fn.__name__] = groups
        if context:
            NEEDS_CONTEXT.add(fn.__name__)
        return check(fn)

    return register


def applies(name: str, host: str, inventory: Any, managed: list[str]) -> bool:
    scope = CHECK_SCOPE.get(name, (MANAGED,))
    return any(host in (managed if g == MANAGED else inventory.group_hosts(g)) for g in scope)


@check
def password_complexity(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, conf = p.run("cat /etc/security/pwquality.conf /etc/security/pwquality.conf.d/*.conf 2>/dev/null")
    rc_pam, _ = p.run("grep -E '^password\\s+\\S+\\s+pam_pwquality.so' /etc/pam.d/common-password")
    values = _conf_values(conf)
    minlen, minclass = _int(values.get("minlen")), _int(values.get("minclass"))
    want_len, want_class = params["pwquality_minlen"], params["pwquality_minclass"]
    ok = rc_pam == 0 and minlen >= want_len and minclass >= want_class
    return p.outcome(
        ok,
        f"pam_pwquality {'已' if rc_pam == 0 else '未'}启用，minlen={minlen}（要求≥{want_len}），"
        f"minclass={minclass}（要求≥{want_class}）",
        f"pam_pwquality {'enabled' if rc_pam == 0 else 'not enabled'}, minlen={minlen} "
        f"(need ≥{want_len}), minclass={minclass} (need ≥{want_class})",
    )


@check
def password_ageing(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, defs = p.run("grep -E '^PASS_MAX_DAYS' /etc/login.defs")
    # Accounts with a usable password and a maximum age above the limit (or none).
    _, over = p.run(
        f'awk -F: \'$2 !~ /^[!*]/ && $2 != "" && ($5 == "" || $5 > {params["pass_max_days"]})'
        ' {print $1" max="$5}\' /etc/shadow'
    )
    max_days = _int(defs.split()[-1] if defs.split() else None)
    ok = 0 < max_days <= params["pass_max_days"] and not over
    return p.outcome(
        ok,
        f"PASS_MAX_DAYS={max_days}（要求≤{params['pass_max_days']}）；超期账户：{over or '无'}",
        f"PASS_MAX_DAYS={max_days} (need ≤{params['pass_max_days']}); accounts over: {over or 'none'}",
    )


@check
def no_empty_passwords(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, empty = p.run("awk -F: '$2 == \"\" {print $1}' /etc/shadow")
    return p.outcome(not empty, f"空口令账户：{empty or '无'}", f"accounts with an empty password: {empty or 'none'}")


@check
def unique_uids(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, dup = p.run("cut -d: -f3 /etc/passwd | sort | uniq -d", sudo=False)
    return p.outcome(not dup, f"重复的 UID：{dup or '无'}", f"duplicate UIDs: {dup or 'none'}")


@check
def login_failure_lockout(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    rc_pam, _ = p.run("grep -E '^auth\\s+\\S+.*pam_faillock.so' /etc/pam.d/common-auth")
    _, conf = p.run("cat /etc/security/faillock.conf")
    values = _conf_values(conf)
    deny, unlock = _int(values.get("deny")), _int(values.get("unlock_time"))
    ok = (
        rc_pam == 0
        and 0 < deny <= params["faillock_deny"]
        and (unlock == 0 or unlock >= params["faillock_unlock_time"])
    )
    return p.outcome(
        ok,
        f"pam_faillock {'已' if rc_pam == 0 else '未'}启用，deny={deny}，unlock_time={unlock}",
        f"pam_faillock {'enabled' if rc_pam == 0 else 'not enabled'}, deny={deny}, unlock_time={unlock}",
    )


@check
def idle_timeout(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    # What a real login shell gets, and whether the user can unset it.
    _, out = p.run("bash -l -c 'echo TMOUT=${TMOUT:-unset}; readonly -p | grep -c \" TMOUT=\" || true'", sudo=False)
    lines = out.splitlines()
    tmout = _int(lines[0].split("=", 1)[1] if lines and "=" in lines[0] else None)
    readonly = len(lines) > 1 and lines[-1].strip() == "1"
    limit = params["idle_timeout_seconds"]
    ok = 0 < tmout <= limit and readonly
    return p.outcome(
        ok,
        f"登录 shell 的 TMOUT={tmout}（要求 1–{limit}），只读={readonly}",
        f"login shell TMOUT={tmout} (need 1–{limit}), read-only={readonly}",
    )


WEAK_SSH = re.compile(
    r"(-cbc\b|3des|arcfour|hmac-md5|hmac-sha1\b|hmac-sha1-|umac-64|diffie-hellman-group1-|"
    r"diffie-hellman-group14-sha1|diffie-hellman-group-exchange-sha1)"
)


def _sshd_effective(p: Probe) -> dict[str, str]:
    _, out = p.run(
        "sshd -T -C user=root,host=localhost,addr=127.0.0.1 2>&1 | grep -E "
        "'^(ciphers|macs|kexalgorithms|permitrootlogin|permitemptypasswords|passwordauthentication) '"
    )
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


@check
def ssh_strong_crypto(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    eff = _sshd_effective(p)
    weak = sorted(
        {m.group(0) for key in ("ciphers", "macs", "kexalgorithms") for m in WEAK_SSH.finditer(eff.get(key, ""))}
    )
    ok = bool(eff.get("ciphers")) and not weak
    return p.outcome(
        ok,
        f"sshd 生效配置中的弱算法：{', '.join(weak) or '无'}",
        f"weak algorithms in sshd's effective configuration: {', '.join(weak) or 'none'}",
    )


@check
def root_ssh_login_disabled(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    eff = _sshd_effective(p)
    value = eff.get("permitrootlogin", "unknown")
    return p.outcome(value == "no", f"PermitRootLogin={value}（要求 no）", f"PermitRootLogin={value} (need no)")


SENSITIVE_FILES = {
    # path: highest permitted mode bits
    "/etc/shadow": 0o640,
    "/etc/gshadow": 0o640,
    "/etc/passwd": 0o644,
    "/etc/group": 0o644,
    "/etc/ssh/sshd_config": 0o600,
    "/etc/sudoers": 0o440,
}


@check
def sensitive_file_permissions(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, out = p.run("stat -c '%n %a %U' " + " ".join(SENSITIVE_FILES))
    bad = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in SENSITIVE_FILES:
            continue
        mode = int(parts[1], 8)
        if mode & ~SENSITIVE_FILES[parts[0]] or parts[2] != "root":
            bad.append(f"{parts[0]} {parts[1]} {parts[2]}")
    seen = sum(1 for line in out.splitlines() if line.split()[:1] and line.split()[0] in SENSITIVE_FILES)
    ok = not bad and seen == len(SENSITIVE_FILES)
    return p.outcome(
        ok,
        f"权限过宽或属主错误：{'; '.join(bad) or '无'}（检查 {seen}/{len(SENSITIVE_FILES)} 个文件）",
        f"too open or wrong owner: {'; '.join(bad) or 'none'} ({seen}/{len(SENSITIVE_FILES)} files checked)",
    )


AUDIT_KEYS = ("identity", "privileged", "logins", "time-change", "audit-config")


def _audit_rules(p: Probe) -> str:
    return p.run("cat /etc/audit/rules.d/*.rules 2>/dev/null")[1]


@check
def audit_rules_configured(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    rc_pkg, _ = p.run("dpkg-query -W -f='${Status}' auditd 2>/dev/null | grep -q 'install ok installed'")
    rules = _audit_rules(p)
    missing = [k for k in AUDIT_KEYS if not re.search(rf"-k {re.escape(k)}\b", rules)]
    ok = rc_pkg == 0 and not missing
    return p.outcome(
        ok,
        f"auditd {'已' if rc_pkg == 0 else '未'}安装；缺少的审计规则：{', '.join(missing) or '无'}",
        f"auditd {'installed' if rc_pkg == 0 else 'not installed'}; missing audit rules: "
        f"{', '.join(missing) or 'none'}",
    )


@check
def audit_rules_immutable(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    rules = [ln.strip() for ln in _audit_rules(p).splitlines() if ln.strip() and not ln.startswith("#")]
    # augenrules concatenates rules.d in order: -e 2 must be the last rule to lock everything before it.
    ok = bool(rules) and rules[-1] == "-e 2"
    return p.outcome(
        ok,
        f"最后一条审计规则：{rules[-1] if rules else '无'}（要求 -e 2）",
        f"last audit rule: {rules[-1] if rules else 'none'} (need -e 2)",
    )


@check
def auditd_running(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, active = p.run("systemctl is-active auditd")
    _, status = p.run("auditctl -s 2>&1 | head -3")
    ok = active.strip() == "active" and "enabled 2" in status
    return p.outcome(
        ok,
        f"auditd 状态 {active.strip()}；内核审计：{status.splitlines()[0] if status else '无'}",
        f"auditd is {active.strip()}; kernel audit: {status.splitlines()[0] if status else 'none'}",
    )


@check
def time_synchronised(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, out = p.run("chronyc -n tracking")
    values = _conf_values(out, ":")
    leap, ref = values.get("Leap status", "unknown"), values.get("Reference ID", "")
    ok = leap == "Normal" and not ref.startswith("00000000") and not ref.startswith("7F7F0101")
    return p.outcome(ok, f"同步状态 {leap}，参考源 {ref or '无'}", f"leap status {leap}, reference {ref or 'none'}")


FORBIDDEN_PACKAGES = (
    "telnetd",
    "inetutils-telnetd",
    "telnetd-ssl",
    "rsh-server",
    "rsh-redone-server",
    "nis",
    "tftpd",
    "tftpd-hpa",
    "atftpd",
    "vsftpd",
    "proftpd-basic",
    "pure-ftpd",
    "talkd",
    "inetutils-talkd",
    "xinetd",
    "openbsd-inetd",
    "inetutils-inetd",
)


def _installed(p: Probe, packages: Iterable[str]) -> list[str]:
    _, out = p.run(
        "dpkg-query -W -f='${Package} ${Status}\\n' "
        + " ".join(packages)
        + " 2>/dev/null | awk '/install ok installed/ {print $1}'",
        sudo=False,
    )
    return out.split()


@check
def forbidden_packages_absent(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    found = _installed(p, FORBIDDEN_PACKAGES)
    return p.outcome(
        not found,
        f"已安装的高危服务软件包：{', '.join(found) or '无'}",
        f"high-risk service packages installed: {', '.join(found) or 'none'}",
    )


@check
def no_cleartext_listeners(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, out = p.run("ss -Htulnp")
    ports = set(params["cleartext_ports"])
    bad = []
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        addr, _, port = cols[4].rpartition(":")
        if _int(port) in ports and not addr.strip("[]").startswith(("127.", "::1")):
            bad.append(f"{cols[0]} {cols[4]} {' '.join(cols[6:])}".strip())
    return p.outcome(
        not bad,
        f"非回环地址上的明文协议监听：{'; '.join(bad) or '无'}",
        f"cleartext-protocol listeners on non-loopback addresses: {'; '.join(bad) or 'none'}",
    )


@check
def core_dumps_disabled(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    # pam_limits' configuration: sudo and Ansible change the limit of their own sessions, so reading
    # `ulimit` here would not show what a user's login gets.
    _, limit_line = p.run(
        "grep -hE '^[[:space:]]*[*][[:space:]]+hard[[:space:]]+core[[:space:]]+0([[:space:]]|$)' "
        "/etc/security/limits.conf /etc/security/limits.d/*.conf 2>/dev/null | tail -1"
    )
    limit = "0" if limit_line.strip() else "unlimited"
    _, storage = p.run("systemd-analyze cat-config systemd/coredump.conf 2>/dev/null | grep -E '^Storage=' | tail -1")
    _, sysctl = p.run("cat /etc/sysctl.d/*.conf 2>/dev/null | grep -E '^fs.suid_dumpable' | tail -1")
    ok = limit.strip() == "0" and storage.strip() == "Storage=none" and sysctl.replace(" ", "") == "fs.suid_dumpable=0"
    return p.outcome(
        ok,
        f"登录会话 core 硬限制={limit.strip()}，systemd-coredump {storage.strip() or '未设置'}，"
        f"{sysctl or 'fs.suid_dumpable 未持久化'}",
        f"login session hard core limit={limit.strip()}, systemd-coredump {storage.strip() or 'unset'}, "
        f"{sysctl or 'fs.suid_dumpable not persisted'}",
    )


@check
def su_restricted(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, line = p.run("grep -E '^[[:space:]]*auth[[:space:]]+required[[:space:]]+pam_wheel.so' /etc/pam.d/su")
    ok = "use_uid" in line
    return p.outcome(
        ok,
        f"su 的 pam_wheel 限制：{line or '未启用'}",
        f"pam_wheel restriction of su: {line or 'not enabled'}",
    )


def _sudoers_lines(p: Probe) -> list[str]:
    _, text = p.run("cat /etc/sudoers /etc/sudoers.d/* 2>/dev/null")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


@check
def sudo_restricted(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    lines = _sudoers_lines(p)
    # The automation account this check logs in with needs NOPASSWD; it is allowed only while it
    # cannot log in with a password at all (key-only, password locked).
    _, me = p.run("id -un", sudo=False)
    _, pw = p.run(f"passwd -S -- {_quote(me.strip())}")
    me_locked = len(pw.split()) > 1 and pw.split()[1] == "L"
    nopasswd = [ln for ln in lines if "NOPASSWD" in ln and not ln.startswith("Defaults")]
    bad = [ln for ln in nopasswd if not (ln.split()[0] == me.strip() and me_locked)]
    use_pty = any(re.match(r"Defaults\s+.*\buse_pty\b", ln) for ln in lines)
    ok = not bad and use_pty
    return p.outcome(
        ok,
        f"免口令 sudo 规则（除口令已锁定的自动化账户 {me.strip()}）：{'; '.join(bad) or '无'}；use_pty={use_pty}",
        f"passwordless sudo rules (besides the password-locked automation account {me.strip()}): "
        f"{'; '.join(bad) or 'none'}; use_pty={use_pty}",
    )


# Programs that are root for whoever may run them with sudo with free arguments (GTFOBins-style:
# a shell escape, a hook option, a pager, a file write); a role administrator must reach them only
# through a wrapper with fixed argument forms, or with exact arguments that are not themselves one.
ROOT_EQUIVALENT = {
    *("sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "fish", "su", "sudo", "sudoedit", "env", "nice", "nohup"),
    *("python", "python3", "perl", "ruby", "lua", "node", "php", "tclsh", "expect", "awk", "gawk", "mawk", "sed"),
    *("vi", "vim", "nvim", "nano", "ed", "emacs", "less", "more", "most", "man", "view", "pg"),
    *("apt", "apt-get", "aptitude", "dpkg", "snap", "pip", "pip3", "make", "git", "ssh", "scp", "rsync", "script"),
    *("find", "xargs", "tar", "zip", "cp", "mv", "ln", "dd", "tee", "install", "chmod", "chown", "chgrp", "mount"),
    *("crontab", "at", "visudo", "nsenter", "unshare", "chroot", "docker", "podman", "systemd-run", "busctl"),
    *("systemctl", "journalctl", "passwd", "chpasswd", "chage", "useradd", "usermod", "userdel", "groupadd"),
    *("gpasswd", "faillock", "nft", "iptables", "ip", "ausearch", "aureport", "auditctl", "tcpdump", "strace"),
}
# Of those, programs whose exact argument list can be safe (the rest are never safe: a shell,
# an editor, a package manager whose conffile prompt offers a shell).
ARGS_CAN_BE_SAFE = {"systemctl", "journalctl", "passwd", "chage", "usermod", "userdel", "faillock", "nft", "ip"}
ARGS_CAN_BE_SAFE |= {"ausearch", "aureport"}
_ESCAPE_ARGS = re.compile(r"[*?\[\]]|^\^|\broot\b|(?:^|\s)-o(?:\s|$)|-u\s*0\b|netns|--checkpoint|link|edit|--root")


def _sudo_commands(listing: str) -> list[str]:
    """Commands of `sudo -l -U user` after "may run the following commands", one per entry."""
    body = listing.split("may run the following commands", 1)[-1]
    found = []
    for line in body.splitlines()[1:]:
        m = re.match(r"\s+\([^)]*\)\s*(.*)", line)
        if not m:
            continue
        rest = re.sub(r"^(?:[A-Z_]+:\s*)+", "", m.group(1))  # NOPASSWD:, SETENV:, ...
        found += [c.strip() for c in rest.split(",") if c.strip()]
    return found


def root_equivalent_commands(listing: str) -> list[str]:
    """The entries of a sudo listing that give root: ALL, or a root-equivalent program allowed with
    any arguments, a wildcard, or exact arguments that are an escape themselves."""
    bad = []
    for cmd in _sudo_commands(listing):
        if cmd.startswith("!"):
            continue
        program, _, args = cmd.partition(" ")
        name = program.rsplit("/", 1)[-1]
        if (
            cmd == "ALL"
            or program == "ALL"
            or (
                name in ROOT_EQUIVALENT
                and (
                    name not in ARGS_CAN_BE_SAFE
                    or not args
                    or _ESCAPE_ARGS.search(args)
                    or (name in ("systemctl", "journalctl") and "--no-pager" not in args)
                )
            )
        ):
            bad.append(cmd)
    return bad


@check
def admin_roles_separated(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    roles = list(params["admin_roles"])
    wide = list(params["unrestricted_groups"])
    _, out = p.run("getent group " + " ".join(map(_quote, [*roles, *wide])))
    members: dict[str, set[str]] = {}
    for line in out.splitlines():
        name, _, _, users = [*line.split(":"), "", "", ""][:4]
        members[name] = {u for u in users.split(",") if u}
    missing = [r for r in roles if r not in members]
    people = sorted(set().union(*(members.get(r, set()) for r in roles)))
    several = [u for u in people if sum(u in members.get(r, set()) for r in roles) > 1]
    unrestricted = sorted(set(people) & set().union(*(members.get(g, set()) for g in wide)))
    # Whatever the sudoers files say, no role administrator may run every command, nor a program
    # that gives root with the arguments it is allowed (apt-get -o ...Pre-Invoke, passwd root, a pager).
    escapes: dict[str, list[str]] = {}
    for user in people:
        _, rules = p.run(f"sudo -l -U {_quote(user)}")
        bad = root_equivalent_commands(rules)
        if bad:
            escapes[user] = bad
    ok = not (missing or several or unrestricted or escapes)
    roster = "; ".join(f"{r}: {','.join(sorted(members.get(r, set()))) or '-'}" for r in roles)
    shown = "; ".join(f"{u}: {', '.join(c)}" for u, c in escapes.items())
    return p.outcome(
        ok,
        f"角色组 {roster}；缺少的组：{', '.join(missing) or '无'}；身兼多职：{', '.join(several) or '无'}；"
        f"在 {'/'.join(wide)} 组：{', '.join(unrestricted) or '无'}；"
        f"可获得 root 的 sudo 命令：{shown or '无'}",
        f"role groups {roster}; missing groups: {', '.join(missing) or 'none'}; in several roles: "
        f"{', '.join(several) or 'none'}; in {'/'.join(wide)}: {', '.join(unrestricted) or 'none'}; "
        f"sudo commands that give root: {shown or 'none'}",
    )


def _rsyslog_actions(conf: str, kind: str) -> list[str]:
    return [m for m in re.findall(r"\b(?:action|input)\s*\((.*?)\)", conf, re.S) if f'type="{kind}"' in m]


def _param(block: str, name: str) -> str:
    m = re.search(rf'\b{re.escape(name)}\s*=\s*"([^"]*)"', block, re.I)
    return m.group(1) if m else ""


@check
def log_forwarding_tls(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, active = p.run("systemctl is-active rsyslog")
    rc_conf, _ = p.run("rsyslogd -N1 >/dev/null 2>&1")
    _, raw = p.run("cat /etc/rsyslog.conf /etc/rsyslog.d/*.conf 2>/dev/null | sed 's/#.*//'")
    forwards = _rsyslog_actions(raw, "omfwd")
    tls = [
        f for f in forwards if _param(f, "StreamDriverMode") == "1" and _param(f, "StreamDriverAuthMode") == "x509/name"
    ]
    # Any forwarding that is not authenticated TLS sends logs in clear: legacy @host / @@host lines too.
    cleartext = len(forwards) - len(tls) + len(re.findall(r"^\s*\S+\s+@@?[^\s]+", raw, re.M))
    listeners = _rsyslog_actions(raw, "imtcp")
    tls_module = re.search(r'module\s*\(\s*load="imtcp"(.*?)\)', raw, re.S)
    collector = bool(
        listeners
        and tls_module
        and _param(tls_module.group(1), "StreamDriver.Mode") == "1"
        and _param(tls_module.group(1), "StreamDriver.AuthMode").startswith("x509/")
    )
    detail = ""
    connected = False
    if tls and not collector:
        target, port = _param(tls[0], "target"), _param(tls[0], "port")
        # Both come from the host's rsyslog configuration: a port is digits, the target one quoted word.
        port = port if port.isdigit() else "0"
        peer = _quote(f"{target}:{port}")
        # Emit a message, then look for the TLS session to the collector (rsyslog connects on demand).
        _, detail = p.run(
            "logger -t hipgate-verify 'conformance check: log forwarding'; "
            f"for i in $(seq 20); do ss -Htn state established '( dport = :{port} )' | grep -F -- {peer} "
            "&& break; sleep 0.5; done"
        )
        connected = bool(detail.strip())
    elif collector:
        port = _param(listeners[0], "port")
        port = port if port.isdigit() else "0"
        _, detail = p.run(f"ss -Htln '( sport = :{port} )'")
        connected = bool(detail.strip())
    ok = active.strip() == "active" and rc_conf == 0 and cleartext == 0 and (bool(tls) or collector) and connected
    mode_zh = "收集服务器（仅接受 TLS）" if collector else ("TLS 转发" if tls else "未转发")
    mode_en = "collector (TLS only)" if collector else ("TLS forwarding" if tls else "not forwarding")
    return p.outcome(
        ok,
        f"rsyslog {active.strip()}，配置校验 {'通过' if rc_conf == 0 else '失败'}，{mode_zh}，"
        f"明文转发 {cleartext} 条，连接/监听：{detail.strip() or '无'}",
        f"rsyslog {active.strip()}, config check {'ok' if rc_conf == 0 else 'failed'}, {mode_en}, "
        f"cleartext forwards {cleartext}, connection/listener: {detail.strip() or 'none'}",
    )


_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31, "yearly": 365}


@check
def log_retention(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    want = params["log_retention_days"]
    _, logs = p.run("ls /var/log/syslog /var/log/messages /var/log/auth.log /var/log/secure 2>/dev/null")
    _, conf = p.run("cat /etc/logrotate.conf /etc/logrotate.d/* 2>/dev/null | sed 's/#.*//'")
    defaults, blocks = conf, {}
    for m in re.finditer(r"([^{}]*?)\{([^}]*)\}", conf, re.S):
        defaults = defaults.replace(m.group(0), "")
        for path in m.group(1).split():
            blocks[path] = m.group(2)
    found = []
    for path in logs.split() or ["/var/log/syslog"]:
        body = blocks.get(path)
        if body is None:
            found.append((path, 0))
            continue
        words = (defaults + "\n" + body).split()
        period = next((_PERIOD_DAYS[w] for w in reversed(words) if w in _PERIOD_DAYS), 7)
        rotate = next((_int(words[i + 1]) for i in range(len(words) - 2, -1, -1) if words[i] == "rotate"), 0)
        maxage = next((_int(words[i + 1]) for i in range(len(words) - 2, -1, -1) if words[i] == "maxage"), -1)
        days = period * rotate if maxage < 0 else min(period * rotate, maxage)
        found.append((path, days))
    short = [f"{path} {days}d" for path, days in found if days < want]
    ok = bool(found) and not short
    kept = ", ".join(f"{path} {days}d" for path, days in found)
    return p.outcome(
        ok,
        f"日志保留：{kept}（要求≥{want} 天）",
        f"logs kept: {kept} (need ≥{want} days)",
    )


@check
def audit_log_protected(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, conf = p.run("cat /etc/audit/auditd.conf")
    values = {k.lower(): v.lower() for k, v in _conf_values(conf).items()}
    _, st = p.run("stat -c '%a %U' /var/log/audit")
    # A missing directory makes stat print an error, not "mode owner".
    m = re.fullmatch(r"([0-7]{3,4}) (\S+)", st.strip())
    mode, owner = (m.group(1), m.group(2)) if m else ("", "")
    problems = []
    if values.get("max_log_file_action") != "keep_logs":
        problems.append(f"max_log_file_action={values.get('max_log_file_action', '-')}")
    for key in ("disk_full_action", "disk_error_action", "admin_space_left_action"):
        if values.get(key, "ignore") in ("ignore", "syslog", "rotate"):
            problems.append(f"{key}={values.get(key, '-')}")
    if values.get("space_left_action", "ignore") == "ignore":
        problems.append("space_left_action=ignore")
    if not mode or int(mode, 8) & 0o027 or owner != "root":
        problems.append(f"/var/log/audit {mode} {owner}")
    return p.outcome(
        not problems,
        f"审计日志保护问题：{'; '.join(problems) or '无'}",
        f"audit log protection problems: {'; '.join(problems) or 'none'}",
    )


@check
def minimal_installation(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, target = p.run("systemctl get-default", sudo=False)
    found = _installed(p, params["unneeded_packages"])
    ok = target.strip() == "multi-user.target" and not found
    return p.outcome(
        ok,
        f"默认启动目标 {target.strip()}（要求 multi-user.target）；桌面/编译器软件包：{', '.join(found) or '无'}",
        f"default target {target.strip()} (need multi-user.target); desktop/compiler packages: "
        f"{', '.join(found) or 'none'}",
    )


_AGE_UNITS = {"d": 1.0, "w": 7.0, "h": 1 / 24, "m": 1 / 1440, "min": 1 / 1440, "s": 1 / 86400}


def _age_days(age: str) -> float:
    m = re.fullmatch(r"~?(\d+)(d|w|h|min|m|s)?", age)
    return float(m.group(1)) * _AGE_UNITS[m.group(2) or "s"] if m else float("inf")


@check
def tmp_cleaned(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    _, conf = p.run("systemd-tmpfiles --cat-config 2>/dev/null | grep -E '^[dDqQvx][[:space:]]+/tmp[[:space:]]'")
    _, timer = p.run("systemctl is-active systemd-tmpfiles-clean.timer", sudo=False)
    # The first line for a path wins (files are read in order, earliest name first).
    first = conf.splitlines()[0].split() if conf.strip() else []
    age = first[5] if len(first) > 5 else "-"
    limit = params["tmp_max_age_days"]
    ok = bool(first) and first[0] in ("D", "d", "q", "Q", "v") and _age_days(age) <= limit and timer.strip() == "active"
    return p.outcome(
        ok,
        f"/tmp 清理规则：{' '.join(first) or '无'}（期限≤{limit} 天），清理定时器 {timer.strip()}",
        f"/tmp clean-up rule: {' '.join(first) or 'none'} (age ≤{limit} days), clean-up timer {timer.strip()}",
    )


def run_check(name: str, host: Any, params: dict[str, Any], context: Context | None = None) -> Outcome:
    """Run one check for a report: a check that cannot complete (host unreachable, unexpected output)
    proves nothing, so it counts as failing, with the error as its evidence."""
    try:
        if name in NEEDS_CONTEXT:
            if context is None:
                raise ValueError(f"check {name} needs the inventory (a Context)")
            return CHECKS[name](host, params, context)
        return CHECKS[name](host, params)
    except Exception as exc:  # any error must become a visible failure, not a missing result
        return Outcome(
            False,
            f"检查未能完成：{type(exc).__name__}",
            f"the check could not complete: {type(exc).__name__}",
            [Evidence(f"(check {name})", -1, f"{type(exc).__name__}: {exc}"[:MAX_EVIDENCE_CHARS])],
        )


# Checks of other areas register themselves into CHECKS on import; imported last because they use
# the helpers above.
from hipgate.conformance import (  # noqa: E402,F401
    backup_checks,
    bastion_checks,
    custody_checks,
    database_checks,
    exchange_checks,
    network_checks,
    preflight_checks,
    vpn_checks,
)
