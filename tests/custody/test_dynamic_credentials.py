"""OpenBao's database engine against a real PostgreSQL: the application role has no password and
cannot log in; OpenBao makes short-lived logins in its group; nobody knows OpenBao's own DB password;
no dynamic password reaches the database log; a policy gets only its own role's logins."""

from __future__ import annotations

import hvac
import pytest
from hvac import exceptions as hv

from helpers import pg_login
from hipgate.custody import engine, postgres


def setup(bao: dict, pg: dict) -> postgres.Superuser:
    su = postgres.Superuser(pg["superuser"], "test cluster")
    # What the postgresql role creates: group roles without LOGIN and without a password.
    su.run("CREATE ROLE exchange_app NOLOGIN; CREATE ROLE ops_admin NOLOGIN;\n")
    conn = engine.Connection("db01", "127.0.0.1", pg["port"], sslmode="disable")
    assert engine.connect_broker(bao["admin"], conn, su, ["exchange_app", "ops_admin"]) is True
    assert engine.connect_broker(bao["admin"], conn, su, ["exchange_app", "ops_admin"]) is False  # once only
    for role in ("exchange_app", "ops_admin"):
        engine.define_role(bao["admin"], "db01", role, ttl="5m", max_ttl="10m")
    return su


def client_with(bao: dict, policy: str) -> hvac.Client:
    token = bao["admin"].auth.token.create(policies=[policy], ttl="5m")["auth"]["client_token"]
    return hvac.Client(url=bao["addr"], token=token)


def test_application_logs_in_only_with_a_dynamic_login(bao: dict, pg: dict) -> None:
    su = setup(bao, pg)
    rows = su.run("SELECT rolname, rolcanlogin, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = 'exchange_app';")
    assert rows.strip() == "exchange_app|f|f"  # no static password exists
    app = client_with(bao, engine.policy_name("db01", "exchange_app"))
    creds = engine.credentials(app, "db01", "exchange_app")
    assert creds["username"] != "exchange_app" and 0 < creds["lease_duration"] <= 300
    login = pg_login(pg["port"], creds["password"], role=creds["username"], sql="select current_user")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == "exchange_app"  # the session runs as the group role
    # Revoking the lease removes the login.
    bao["admin"].sys.revoke_lease(creds["lease_id"])
    assert pg_login(pg["port"], creds["password"], role=creds["username"]).returncode != 0
    # A policy gets its own role's logins only.
    with pytest.raises(hv.Forbidden):
        engine.credentials(app, "db01", "ops_admin")


def test_nobody_knows_the_brokers_password_and_no_dynamic_password_is_logged(bao: dict, pg: dict) -> None:
    su = setup(bao, pg)
    verifier_before = su.run(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{engine.BROKER}';")
    creds = engine.credentials(client_with(bao, engine.policy_name("db01", "ops_admin")), "db01", "ops_admin")
    assert pg_login(pg["port"], creds["password"], role=creds["username"]).returncode == 0
    # rotate-root replaced the bootstrap password at once; another rotation changes it again.
    bao["admin"].secrets.database.rotate_root_credentials("db01", mount_point=engine.MOUNT)
    assert su.run(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{engine.BROKER}';") != verifier_before
    config = bao["admin"].secrets.database.read_connection("db01", mount_point=engine.MOUNT)["data"]
    assert "password" not in config["connection_details"]  # OpenBao never hands it out
    db_log = "".join(p.read_text(errors="replace") for p in pg["log_dir"].glob("*"))
    assert "CREATE ROLE" in db_log  # the DDL was logged...
    assert creds["password"] not in db_log  # ...with a verifier, not the password
    assert creds["password"] not in bao["audit"].read_text()
