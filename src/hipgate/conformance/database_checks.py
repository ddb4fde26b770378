"""PostgreSQL checks: the server's effective settings (on the database hosts), and who can open a
session from where (from every host, speaking the PostgreSQL protocol up to authentication)."""

from __future__ import annotations

import json
from typing import Any

from hipgate.conformance.checks import MANAGED, Context, Outcome, Probe, _quote, scoped
from hipgate.flows import BACKUP_READER_ROLE, implied_db_clients

DB = "database"
# Every PostgreSQL setting the checks read, in one query.
SETTINGS = (
    "ssl",
    "ssl_min_protocol_version",
    "password_encryption",
    "listen_addresses",
    "log_connections",
    "log_disconnections",
    "log_line_prefix",
    "idle_session_timeout",
    "shared_preload_libraries",
    "pgaudit.log",
    "data_checksums",
    "data_directory",
)


def _conninfo_db(db: str) -> str:
    """A database name as a libpq conninfo value: psql would read a bare name holding `=` as a
    connection string (host=..., a superuser's CREATE DATABASE picks the name)."""
    return "dbname='" + db.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _psql(p: Probe, sql: str, db: str = "postgres") -> tuple[int, str]:
    # Database names come from the server (any superuser names them): quoted for the shell, and
    # passed as a conninfo value, never as shell or connection-string text.
    # The cluster's own port (hipgate.database.port may move it off 5432); read into a quoted variable.
    return p.run(
        "port=$(pg_lsclusters -h 2>/dev/null | awk '{print $3; exit}'); "
        f'runuser -u postgres -- psql -p "${{port:-5432}}" -XAt -d {_quote(_conninfo_db(db))} -c {_quote(sql)}'
    )


def _settings(p: Probe) -> dict[str, str]:
    names = ", ".join(f"'{n}'" for n in SETTINGS)
    _, out = _psql(p, f"select name || '=' || setting from pg_settings where name in ({names})")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _hba_rules(p: Probe) -> list[list[str]]:
    """pg_hba as the server parsed it: type, databases, users, address, netmask, method, error."""
    _, out = _psql(
        p,
        "select type, array_to_string(database, ','), array_to_string(user_name, ','), coalesce(address, ''), "
        "coalesce(netmask, ''), auth_method, coalesce(error, '') from pg_hba_file_rules order by line_number",
    )
    return [line.split("|") for line in out.splitlines() if line]


@scoped(DB)
def postgresql_tls(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    s = _settings(p)
    rules = _hba_rules(p)
    # Network lines that accept a session without TLS ("host", "hostnossl").
    clear = [r for r in rules if r[0] in ("host", "hostnossl") and r[5] != "reject"]
    ok = s.get("ssl") == "on" and s.get("ssl_min_protocol_version") in params["tls_versions"] and not clear
    return p.outcome(
        ok,
        f"ssl={s.get('ssl')}，最低版本={s.get('ssl_min_protocol_version')}，允许非 TLS 的 pg_hba 行：{len(clear)}",
        f"ssl={s.get('ssl')}, minimum version={s.get('ssl_min_protocol_version')}, "
        f"pg_hba lines accepting non-TLS sessions: {len(clear)}",
    )


@scoped(DB)
def postgresql_scram_only(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    s = _settings(p)
    _, weak = _psql(
        p, "select rolname from pg_authid where rolpassword is not null and rolpassword not like 'SCRAM-SHA-256$%'"
    )
    rules = _hba_rules(p)
    weak_methods = [f"{r[0]} {r[1]} {r[2]} {r[5]}" for r in rules if r[5] in ("trust", "password", "md5")]
    ok = s.get("password_encryption") == "scram-sha-256" and not weak.strip() and not weak_methods
    return p.outcome(
        ok,
        f"password_encryption={s.get('password_encryption')}，非 scram 口令的角色：{weak.strip() or '无'}，"
        f"弱认证方式的 pg_hba 行：{'; '.join(weak_methods) or '无'}",
        f"password_encryption={s.get('password_encryption')}, roles with non-scram passwords: "
        f"{weak.strip() or 'none'}, pg_hba lines with weak methods: {'; '.join(weak_methods) or 'none'}",
    )


@scoped(DB)
def postgresql_idle_timeout(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    ms = int(_settings(p).get("idle_session_timeout", "0") or 0)
    limit = params["idle_session_timeout_s"]
    ok = 0 < ms <= limit * 1000
    return p.outcome(
        ok,
        f"idle_session_timeout={ms // 1000} 秒（要求 1-{limit}）",
        f"idle_session_timeout={ms // 1000} s (need 1-{limit})",
    )


# Accounts that may read PGDATA through PostgreSQL's group access (the backup role's reader of the
# sites' pgBackRest sessions). Nobody may write it but postgres.
PGDATA_READERS = frozenset({BACKUP_READER_ROLE})


def _pgdata_mode(p: Probe, data_dir: str) -> tuple[str, bool]:
    """PGDATA's mode, owner and group, and whether only postgres writes it and only the readers read it:
    0700, or 02750 with a group of its own whose members (also by primary group) are readers only."""
    _, stat = p.run(f"stat -c '%a %U %G %g' {_quote(data_dir)}")
    parts = stat.split()
    if len(parts) != 4 or parts[1] != "postgres":
        return stat.strip(), False
    mode, _, group, gid = parts
    if mode == "700":
        return f"{mode} postgres", True
    if mode != "2750" or group == "postgres" or not gid.isdigit():
        return f"{mode} postgres:{group}", False
    _, line = p.run(f"getent group {_quote(group)}")
    members = {m for m in (line.strip().split(":")[3:4] or [""])[0].split(",") if m}
    _, primary = p.run(f"getent passwd | awk -F: '$4 == {int(gid)} {{print $1}}'")
    members |= {u for u in primary.split() if u}
    others = sorted(members - PGDATA_READERS)
    return f"{mode} postgres:{group} readers={','.join(sorted(members)) or '-'}", not others


@scoped(DB)
def postgresql_access_rules(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    s = _settings(p)
    rules = _hba_rules(p)
    network = [r for r in rules if r[0].startswith("host")]
    errors = [r[6] for r in rules if r[6]]
    wide = [f"{r[0]} {r[3]}/{r[4]}" for r in network if r[5] != "reject" and r[3] in ("0.0.0.0", "::", "all")]
    trust = [f"{r[0]} {r[1]} {r[2]}" for r in rules if r[5] == "trust"]
    last = network[-1] if network else None
    final_reject = bool(last) and last[5] == "reject" and last[1] == "all" and last[2] == "all"
    listen = s.get("listen_addresses", "")
    mode, mode_ok = _pgdata_mode(p, s.get("data_directory", "/nonexistent"))
    _, public_create = _psql(
        p,
        "select json_agg(datname) from pg_database where datallowconn and datname not in ('template1')",
    )
    try:  # JSON: a name may hold commas or newlines
        names = [d for d in json.loads(public_create or "[]") or [] if isinstance(d, str)]
    except json.JSONDecodeError:
        names = []
    creatable = []
    for db in names:
        _, can = _psql(p, "select has_schema_privilege('public', 'public', 'CREATE')", db)
        if can.strip() == "t":
            creatable.append(db)
    ok = (
        not errors
        and not wide
        and not trust
        and final_reject
        and "*" not in listen
        and "0.0.0.0" not in listen
        and mode_ok
        and not creatable
    )
    return p.outcome(
        ok,
        f"pg_hba 末行显式拒绝={'是' if final_reject else '否'}，对任意地址放行：{'; '.join(wide) or '无'}，"
        f"trust：{'; '.join(trust) or '无'}，解析错误：{len(errors)}；listen_addresses={listen}；"
        f"PGDATA {mode.strip()}；PUBLIC 可在 public 模式建表的库：{','.join(map(repr, creatable)) or '无'}",
        f"pg_hba ends with an explicit reject={'yes' if final_reject else 'no'}, lines open to any address: "
        f"{'; '.join(wide) or 'none'}, trust: {'; '.join(trust) or 'none'}, parse errors: {len(errors)}; "
        f"listen_addresses={listen}; PGDATA {mode.strip()}; databases where PUBLIC may CREATE in schema public: "
        f"{','.join(map(repr, creatable)) or 'none'}",
    )


@scoped(DB)
def postgresql_audit_logging(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    s = _settings(p)
    prefix = s.get("log_line_prefix", "")
    missing = [f for f in ("%m", "%u", "%d", "%h") if f not in prefix]
    classes = {c.strip() for c in s.get("pgaudit.log", "").split(",")}
    want = set(params["pgaudit_classes"])
    ok = (
        s.get("log_connections") == "on"
        and s.get("log_disconnections") == "on"
        and not missing
        and "pgaudit" in s.get("shared_preload_libraries", "")
        and want <= classes
    )
    return p.outcome(
        ok,
        f"log_connections={s.get('log_connections')}，log_disconnections={s.get('log_disconnections')}，"
        f"log_line_prefix 缺少：{' '.join(missing) or '无'}，pgaudit.log={s.get('pgaudit.log', '未加载')}",
        f"log_connections={s.get('log_connections')}, log_disconnections={s.get('log_disconnections')}, "
        f"log_line_prefix lacks: {' '.join(missing) or 'nothing'}, pgaudit.log={s.get('pgaudit.log', 'not loaded')}",
    )


@scoped(DB)
def postgresql_data_checksums(host: Any, params: dict[str, Any]) -> Outcome:
    p = Probe(host)
    value = _settings(p).get("data_checksums")
    return p.outcome(value == "on", f"data_checksums={value}", f"data_checksums={value}")


# Runs on the source host with python3 (every managed host has it for Ansible). Speaks the
# PostgreSQL protocol only up to the server's first answer to a startup message: an
# authentication request means pg_hba let the (host, database, role) through, an error names
# the refusal. No password is sent, so no secret is needed to prove who is refused.
PG_PROBE = r"""
import json, socket, ssl, struct, sys
args = json.loads(sys.argv[1])
def startup(user, db):
    pairs = (("user", user), ("database", db))
    body = struct.pack("!I", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs) + b"\0"
    return struct.pack("!I", len(body) + 4) + body
def answer(sock):
    kind = sock.recv(1)
    if not kind:
        return "closed"
    size = struct.unpack("!I", sock.recv(4))[0]
    data = b""
    while len(data) < size - 4:
        chunk = sock.recv(size - 4 - len(data))
        if not chunk:
            break
        data += chunk
    if kind == b"R":
        return "auth-requested"
    if kind == b"E":
        fields = dict((f[:1].decode(), f[1:].decode(errors="replace")) for f in data.split(b"\0") if f)
        return "refused: " + fields.get("M", "?")
    return "unexpected " + kind.decode(errors="replace")
def attempt(user, db, tls):
    try:
        sock = socket.create_connection((args["host"], args["port"]), timeout=3)
    except socket.timeout:
        return "dropped"
    except OSError as exc:
        return "no-connection: " + exc.__class__.__name__
    try:
        if tls:
            sock.sendall(struct.pack("!II", 8, 80877103))
            if sock.recv(1) != b"S":
                return "tls-refused"
            ctx = ssl.create_default_context()
            # Only pg_hba is being tested here; the server's certificate is checked elsewhere.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock)
        sock.sendall(startup(user, db))
        return answer(sock)
    except socket.timeout:
        return "timeout"
    except OSError as exc:
        return "error: " + exc.__class__.__name__
    finally:
        sock.close()
out = [{"database": d, "role": r, "tls": t, "answer": attempt(r, d, t)} for d, r, t in args["tries"]]
print(json.dumps(out))
"""
UNLISTED_ROLE = "hipgate_probe_unlisted"


def _listed(ans: str) -> bool:
    return ans == "auth-requested"


def _refused_by_hba(ans: str) -> bool:
    return ans.startswith("refused:") and "pg_hba.conf" in ans


@scoped(MANAGED, "outsider", context=True)
def database_access_enforced(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """From this host to every database host: the firewall drops it unless a flow allows it; past
    the firewall, pg_hba accepts only this host's declared (database, role) pairs, and only over TLS."""
    inv = ctx.inventory
    matrix = inv.flow_matrix()
    me = inv.address(ctx.host)
    declared = ((inv.settings.get("database") or {}).get("clients") or []) + implied_db_clients(inv.groups)
    mine = {(c["database"], c["role"]) for c in declared if ctx.host in (matrix.topology.hosts_of(c["from"]) or [])}
    pairs = sorted({(c["database"], c["role"]) for c in declared} | {("postgres", UNLISTED_ROLE)})
    p = Probe(host)
    rows: list[dict[str, Any]] = []
    wrong: list[str] = []
    for db_host in inv.group_hosts("database"):
        if db_host == ctx.host:
            continue
        allowed = matrix.allows(me, db_host, "tcp", matrix.db_port) is not None
        tries = [[d, r, True] for d, r in pairs] + [[d, r, False] for d, r in sorted(mine)[:1] or pairs[:1]]
        arg = json.dumps({"host": inv.address(db_host), "port": matrix.db_port, "tries": tries})
        rc, out = p.run(f"python3 -c {_quote(PG_PROBE)} {_quote(arg)}", sudo=False)
        answers = json.loads(out) if rc == 0 and out.startswith("[") else []
        if not answers:
            wrong.append(f"{db_host}: probe failed")
        for a in answers:
            key = (a["database"], a["role"])
            if not allowed:
                expected = "dropped by firewall"
                ok = a["answer"] == "dropped"
            elif a["tls"] and key in mine:
                expected = "authentication requested (listed)"
                ok = _listed(a["answer"])
            else:
                expected = "refused by pg_hba" + ("" if a["tls"] else " (no TLS)")
                ok = _refused_by_hba(a["answer"])
            rows.append({"to": db_host, **a, "expected": expected, "ok": ok})
            if not ok:
                wrong.append(f"{db_host} {key[0]}/{key[1]} tls={a['tls']}: {a['answer']} (expected {expected})")
    # A database host does not probe itself; anywhere else, no attempt at all proves nothing.
    applicable = rows or ctx.host in inv.group_hosts("database")
    return p.outcome(
        bool(applicable) and not wrong,
        f"向数据库发起 {len(rows)} 次会话尝试，与声明不符：{'; '.join(wrong) or '无'}",
        f"{len(rows)} session attempts to the database; differences from the declaration: {'; '.join(wrong) or 'none'}",
        {"database_access": {"from": ctx.host, "address": me, "attempts": rows}},
    )
