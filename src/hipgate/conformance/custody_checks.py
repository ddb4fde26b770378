"""Custody checks (sector requirement 数据库系统密码要实现两人以上分段保管, with GB/T 22239
8.1.4.1-a and 8.1.4.2-d): OpenBao's unseal keys are split among the custodians, its audit device
records every access, and no application or administrator role holds a static database password."""

from __future__ import annotations

import json
from typing import Any

from hipgate.conformance.checks import Context, Outcome, Probe, _quote, scoped
from hipgate.conformance.database_checks import _psql
from hipgate.custody import exposure
from hipgate.flows import BACKUP_READER_ROLE, BROKER_ROLE, VAULT_PORT

CA = "/etc/hipgate/pki/ca.crt"
AUDIT_LOG = "/var/log/openbao/audit.log"
SEAL_STATUS = (
    "import json, ssl, sys, urllib.request\n"
    "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
    "print(urllib.request.urlopen(sys.argv[1], context=ctx, timeout=5).read().decode())\n"
)


@scoped("vault", context=True)
def vault_unseal_split(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """Unsealed, over verified TLS, with Shamir keys: one per custodian, the inventory's threshold."""
    p = Probe(host)
    inv = ctx.inventory
    want_n, want_t = len(inv.settings.get("custodians") or []), int(inv.settings["custody"]["threshold"])
    _, active = p.run("systemctl is-active openbao")
    url = f"https://{inv.address(ctx.host)}:{VAULT_PORT}/v1/sys/seal-status"
    rc, out = p.run(f"python3 -c {_quote(SEAL_STATUS)} {_quote(url)} {CA}", sudo=False)
    try:
        s = json.loads(out) if rc == 0 else {}
    except json.JSONDecodeError:
        s = {}
    got = (s.get("type"), s.get("n"), s.get("t"))
    ok = (
        active.strip() == "active"
        and bool(s.get("initialized"))
        and s.get("sealed") is False
        and got == ("shamir", want_n, want_t)
        and want_t >= 2
    )
    tls = "TLS 校验通过" if s else "无法经 TLS 读取状态"
    tls_en = "TLS verified" if s else "seal status not readable over TLS"
    return p.outcome(
        ok,
        f"openbao {active.strip()}；{tls}；已初始化={s.get('initialized')}，已封存={s.get('sealed')}；"
        f"密钥 {got[0]} {got[2]}/{got[1]}（应为 shamir {want_t}/{want_n}，即保管人数与门限）",
        f"openbao {active.strip()}; {tls_en}; initialised={s.get('initialized')}, sealed={s.get('sealed')}; "
        f"keys {got[0]} {got[2]}/{got[1]} (need shamir {want_t}/{want_n}: the custodians and threshold)",
        {"seal": {k: s.get(k) for k in ("type", "n", "t", "initialized", "sealed", "version")}},
    )


@scoped("vault")
def vault_audit_device(host: Any, params: dict[str, Any]) -> Outcome:
    """The file audit device is declared, writing, and readable by the service account only."""
    p = Probe(host)
    _, declared = p.run("grep -cE '^audit \"file\"' /etc/openbao/openbao.hcl")
    _, meta = p.run(f"stat -c '%U %a %s' {AUDIT_LOG}")
    _, recent = p.run(f"tail -n 1 {AUDIT_LOG}")
    parts = meta.split()
    owner, mode, size = parts if len(parts) == 3 else ["", "", "0"]
    try:
        last = json.loads(recent)
    except json.JSONDecodeError:
        last = {}
    ok = declared.strip() not in ("", "0") and owner == "openbao" and mode == "600" and int(size) > 0 and bool(last)
    return p.outcome(
        ok,
        f"审计设备已声明={'是' if declared.strip() not in ('', '0') else '否'}；{AUDIT_LOG} {meta.strip() or '不存在'}"
        f"（应为 openbao 600 且非空）；最后一条：{last.get('type', '无')} {last.get('time', '')}",
        f"audit device declared={'yes' if declared.strip() not in ('', '0') else 'no'}; {AUDIT_LOG} "
        f"{meta.strip() or 'missing'} (need openbao 600, not empty); last entry: {last.get('type', 'none')} "
        f"{last.get('time', '')}",
    )


@scoped("database", context=True)
def database_no_static_passwords(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """Declared client roles are NOLOGIN without a password; every other login except the superuser,
    OpenBao's broker and the backup reader expires (OpenBao's short-lived logins); the reader has no
    password and is no superuser (peer on the local socket only); the superuser has a password (the
    one in split custody)."""
    p = Probe(host)
    clients = (ctx.inventory.settings.get("database") or {}).get("clients") or []
    groups = sorted({c["role"] for c in clients})
    arr = "array[" + ",".join(f"'{g}'" for g in groups) + "]::text[]" if groups else "array[]::text[]"
    _, static = _psql(
        p, f"select rolname from pg_authid where rolname = any({arr}) and (rolcanlogin or rolpassword is not null)"
    )
    _, lasting = _psql(
        p,
        "select rolname from pg_authid where rolcanlogin and rolvaliduntil is null "
        f"and rolname not in ('postgres', '{BROKER_ROLE}') "
        f"and not (rolname = '{BACKUP_READER_ROLE}' and rolpassword is null and not rolsuper)",
    )
    _, su = _psql(p, "select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'postgres'")
    _, dynamic = _psql(p, "select count(*) from pg_authid where rolcanlogin and rolvaliduntil is not null")
    bad_static, bad_lasting = static.split(), lasting.split()
    ok = not bad_static and not bad_lasting and su.strip() == "t"
    return p.outcome(
        ok,
        f"带登录或口令的组角色：{'、'.join(bad_static) or '无'}；不过期的登录：{'、'.join(bad_lasting) or '无'}；"
        f"超级用户已设口令（分段保管）={'是' if su.strip() == 't' else '否'}；当前短期账号 {dynamic.strip() or 0} 个",
        f"group roles with login or password: {', '.join(bad_static) or 'none'}; logins that never expire: "
        f"{', '.join(bad_lasting) or 'none'}; superuser has a password (in custody)="
        f"{'yes' if su.strip() == 't' else 'no'}; short-lived logins now: {dynamic.strip() or 0}",
    )


@scoped("vault", context=True)
def custody_recovered_rotated(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """Every generation a quorum of custodians recovered (their share reads, in OpenBao's audit log)
    was replaced by a new one within `recovered_rotate_within_hours`: a recovered password does not
    stay valid indefinitely."""
    p = Probe(host)
    within = float(params.get("recovered_rotate_within_hours", exposure.DEFAULT_ROTATE_WITHIN_HOURS))
    threshold = int(ctx.inventory.settings["custody"]["threshold"])
    rc, out = p.run(f"python3 -c {_quote(exposure.FILTER)} {AUDIT_LOG}")
    late = exposure.unrotated(exposure.events(out.splitlines()), threshold, within) if rc == 0 else []
    ok = rc == 0 and not late
    listed = "、".join(f"{x['system']}/{x['generation']}（{x['hours']} 小时前恢复）" for x in late) or "无"
    listed_en = ", ".join(f"{x['system']}/{x['generation']} (recovered {x['hours']} h ago)" for x in late) or "none"
    return p.outcome(
        ok,
        f"{'已读取审计日志' if rc == 0 else '无法读取审计日志'}；恢复后超过 {within:g} 小时未轮换的代次：{listed}"
        "（运行 hipgate custody rotate）",
        f"{'audit log read' if rc == 0 else 'audit log not readable'}; generations recovered and not rotated within "
        f"{within:g} h: {listed_en} (run hipgate custody rotate)",
        {"unrotated": late, "within_hours": within},
    )
