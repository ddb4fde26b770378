"""OpenBao's database secrets engine in front of PostgreSQL: applications and administrators get
short-lived logins made for them; no static application password exists anywhere.

Layout:
  hipgate-db/config/<system>            the connection, as role hipgate_vault (CREATEROLE, not
                                        superuser); its password is rotated by OpenBao right after
                                        it is configured, so no person ever knows it
  hipgate-db/roles/<system>-<pg_role>   a login valid for `ttl`, member of the NOLOGIN group role
                                        <pg_role>; its session runs as that role, so objects it
                                        creates belong to the group and survive the login's removal
  policy hipgate-db-<system>-<pg_role>  may read hipgate-db/creds/<system>-<pg_role>, nothing else
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import hvac
from hvac import exceptions as hv

from hipgate.custody import postgres, vault

MOUNT = "hipgate-db"
BROKER = "hipgate_vault"  # the PostgreSQL role OpenBao connects as


@dataclass(frozen=True)
class Connection:
    system: str  # the database host's inventory name
    host: str
    port: int
    sslmode: str = "verify-full"
    sslrootcert: str | None = None  # path on the OpenBao host


def role_name(system: str, pg_role: str) -> str:
    return f"{system}-{pg_role}"


def policy_name(system: str, pg_role: str) -> str:
    return f"hipgate-db-{system}-{pg_role}"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _connection_url(c: Connection) -> str:
    params = f"sslmode={c.sslmode}" + (f"&sslrootcert={c.sslrootcert}" if c.sslrootcert else "")
    return f"postgresql://{{{{username}}}}:{{{{password}}}}@{c.host}:{c.port}/postgres?{params}"


def configured(admin: hvac.Client, system: str) -> bool:
    try:
        admin.secrets.database.read_connection(system, mount_point=MOUNT)
    except hv.InvalidPath:
        return False
    return True


def _ensure_mount(admin: hvac.Client) -> None:
    mounts = admin.sys.list_mounted_secrets_engines()
    if f"{MOUNT}/" not in mounts.get("data", mounts):
        admin.sys.enable_secrets_engine("database", path=MOUNT)


def connect_broker(admin: hvac.Client, conn: Connection, superuser: postgres.Superuser, groups: list[str]) -> bool:
    """Create the broker role and hand its password to OpenBao, which replaces it at once
    (rotate-root). Done once per system: returns False, changing nothing, when already connected."""
    vault.ready(admin)
    _ensure_mount(admin)
    if configured(admin, conn.system):
        return False
    bootstrap = secrets.token_urlsafe(32)  # lives for the next two calls only
    grants = "".join(f"GRANT {_ident(g)} TO {BROKER} WITH ADMIN OPTION;\n" for g in groups)
    superuser.run(
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{BROKER}') THEN "
        f"CREATE ROLE {BROKER}; END IF; END$$;\n"
        f"ALTER ROLE {BROKER} LOGIN CREATEROLE NOSUPERUSER NOCREATEDB PASSWORD "
        f"'{postgres.scram_verifier(bootstrap)}';\n{grants}"
    )
    admin.secrets.database.configure(
        name=conn.system,
        plugin_name="postgresql-database-plugin",
        connection_url=_connection_url(conn),
        username=BROKER,
        password=bootstrap,
        allowed_roles=[role_name(conn.system, "*")],
        # The server's log shows role DDL; with scram OpenBao sends verifiers, never passwords.
        password_authentication="scram-sha-256",
        mount_point=MOUNT,
    )
    del bootstrap
    admin.secrets.database.rotate_root_credentials(conn.system, mount_point=MOUNT)
    return True


def define_role(admin: hvac.Client, system: str, pg_role: str, ttl: str = "1h", max_ttl: str = "8h") -> None:
    """Logins for one group role, and the policy allowed to ask for them (idempotent)."""
    group = _ident(pg_role)
    admin.secrets.database.create_role(
        name=role_name(system, pg_role),
        db_name=system,
        creation_statements=[
            f"CREATE ROLE \"{{{{name}}}}\" LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}' "
            f"IN ROLE {group};",
            f'ALTER ROLE "{{{{name}}}}" SET role = {group};',
        ],
        revocation_statements=['DROP ROLE IF EXISTS "{{name}}";'],
        default_ttl=ttl,
        max_ttl=max_ttl,
        mount_point=MOUNT,
    )
    admin.sys.create_or_update_policy(
        policy_name(system, pg_role),
        f'path "{MOUNT}/creds/{role_name(system, pg_role)}" {{ capabilities = ["read"] }}\n',
    )


def credentials(client: hvac.Client, system: str, pg_role: str) -> dict[str, str]:
    """A fresh login: {"username", "password", "lease_id", "lease_duration"}."""
    doc = vault.ready(client).secrets.database.generate_credentials(role_name(system, pg_role), mount_point=MOUNT)
    return {**doc["data"], "lease_id": doc["lease_id"], "lease_duration": doc["lease_duration"]}


HOSTS_AUTH = "hipgate-hosts"  # cert auth: a host logs in with the certificate the pki role gave it


def grant_hosts(
    admin: hvac.Client, policies_by_host: dict[str, list[str]], ca_pem: str, addresses: dict[str, str]
) -> None:
    """Each host may log in with its own certificate (common name = host name, from its own address)
    and gets only the policies listed for it. No secret is handed to the host for this."""
    auths = admin.sys.list_auth_methods()
    if f"{HOSTS_AUTH}/" not in auths.get("data", auths):
        admin.sys.enable_auth_method("cert", path=HOSTS_AUTH)
    for host, policies in sorted(policies_by_host.items()):
        admin.auth.cert.create_ca_certificate_role(
            host,
            certificate=ca_pem,
            allowed_common_names=[host],
            token_policies=sorted(policies),
            token_bound_cidrs=[f"{addresses[host]}/32"],
            token_ttl=900,
            token_max_ttl=3600,
            token_no_default_policy=True,
            mount_point=HOSTS_AUTH,
        )
