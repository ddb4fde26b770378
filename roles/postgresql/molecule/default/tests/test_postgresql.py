"""Verify the hardened server's effective settings, and who can connect from the client and how."""

import pytest

testinfra_hosts = ["ansible://all"]
CA = "sslrootcert=/etc/hipgate/pki/ca.crt"
PORT = 5433  # hipgate.database.port in molecule.yml


def on(host, name):
    if host.backend.get_hostname() != name:
        pytest.skip(f"{name} only")


def sql(host, query):
    with host.sudo("postgres"):
        return host.check_output(f'psql -p {PORT} -XAtc "{query}"')


def connect(host, dbname, user, sslmode):
    with host.sudo():
        return host.run(
            f"psql -XAt 'host=db port={PORT} dbname={dbname} user={user} sslmode={sslmode} {CA}' -c 'select 1'"
        )


def test_effective_settings(host):
    on(host, "db")
    assert sql(host, "show data_checksums") == "on"
    assert sql(host, "show ssl") == "on"
    assert sql(host, "show ssl_min_protocol_version") in ("TLSv1.2", "TLSv1.3")
    assert sql(host, "show password_encryption") == "scram-sha-256"
    assert "*" not in sql(host, "show listen_addresses")
    assert sql(host, "show log_connections") == "on" and sql(host, "show log_disconnections") == "on"
    prefix = sql(host, "show log_line_prefix")
    assert all(f in prefix for f in ("%m", "%u", "%d", "%h"))
    assert sql(host, "show idle_session_timeout") in ("10min", "600s")
    assert "pgaudit" in sql(host, "show shared_preload_libraries")
    assert sql(host, "show pgaudit.log") == "role, ddl, write"


def test_listens_on_the_inventory_port(host):
    on(host, "db")
    assert sql(host, "show port") == str(PORT)
    assert host.run(f"ss -Htln 'sport = :{PORT}'").stdout.strip()
    assert not host.run("ss -Htln 'sport = :5432'").stdout.strip()


def test_only_scram_hashes(host):
    on(host, "db")
    q = "select count(*) from pg_authid where rolpassword is not null and rolpassword not like 'SCRAM-SHA-256$%'"
    assert sql(host, q) == "0"
    assert sql(host, "select count(*) from pg_authid where rolpassword like 'SCRAM-SHA-256$%'") == "2"


def test_group_roles_cannot_log_in_and_have_no_password(host):
    on(host, "db")
    q = "select rolname, rolcanlogin, rolpassword is null from pg_authid where rolname like '%_app' order by 1"
    assert sql(host, q).splitlines() == ["exchange_app|f|t", "unlisted_app|f|t"]


def test_public_cannot_create_in_public_schema(host):
    on(host, "db")
    with host.sudo("postgres"):
        out = host.check_output(
            f"psql -p {PORT} -XAt -d exchange -c \"select has_schema_privilege('public', 'public', 'CREATE')\""
        )
    assert out == "f"


def test_pgdata_private_and_hba_has_no_trust(host):
    on(host, "db")
    # postgres alone writes PGDATA; its read group (no member here) may read it: group access, never write.
    pgdata = host.file("/var/lib/postgresql/15/main")
    assert (pgdata.mode, pgdata.user, pgdata.group) == (0o2750, "postgres", "hipgate_pgdata")
    with host.sudo():
        loose = host.check_output("find /var/lib/postgresql/15/main ! -type l -perm /g+w,o+rwx -print -quit")
        ungrouped = host.check_output("find /var/lib/postgresql/15/main ! -group hipgate_pgdata -print -quit")
    assert not loose and not ungrouped, (loose, ungrouped)
    assert host.group("hipgate_pgdata").exists
    with host.sudo():
        hba = host.file("/etc/postgresql/15/main/pg_hba.conf").content_string
    lines = [ln.split() for ln in hba.splitlines() if ln.strip() and not ln.startswith("#")]
    assert not [ln for ln in lines if "trust" in ln or "md5" in ln or "password" in ln]
    assert [ln for ln in lines if ln[0] == "host"] == [
        ["host", "all", "all", "0.0.0.0/0", "reject"],
        ["host", "all", "all", "::/0", "reject"],
    ]


def test_declared_client_connects_with_scram_over_verified_tls(host):
    on(host, "client")
    res = connect(host, "exchange", "app_login", "verify-full")
    assert res.rc == 0 and res.stdout.strip() == "1", res.stderr


def test_connection_without_tls_is_refused(host):
    on(host, "client")
    res = connect(host, "exchange", "app_login", "disable")
    assert res.rc != 0 and "no encryption" in res.stderr, res.stderr


def test_role_not_in_pg_hba_is_refused(host):
    on(host, "client")
    res = connect(host, "exchange", "other_login", "verify-full")
    assert res.rc != 0 and "pg_hba.conf rejects connection" in res.stderr, res.stderr


def test_exchange_tables_belong_to_the_application_role(host):
    """exchange_database: the dataset's tables, inboxes and bookkeeping, owned by the group role, applied once."""
    on(host, "db")
    with host.sudo("postgres"):
        owners = host.check_output(
            f"psql -p {PORT} -d exchange -XAtc "
            "\"select distinct tableowner from pg_tables where schemaname = 'exchange'\""
        )
        tables = host.check_output(
            f"psql -p {PORT} -d exchange -XAtc \"select tablename from pg_tables where schemaname = 'exchange'\""
        ).split()
    assert owners.split() == ["exchange_app"]
    assert {"setl", "setl_item", "fee_check_form", "hipgate_change", "hipgate_outbox"} <= set(tables)
    with host.sudo("postgres"):
        applied = host.check_output(
            f"psql -p {PORT} -d exchange -XAtc 'select sha256 from exchange.hipgate_schema_applied'"
        )
    with host.sudo():
        script = host.file("/var/lib/hipgate/exchange-schema/exchange.sql")
        assert script.mode == 0o640 and script.group == "postgres"
        assert applied in script.content_string.splitlines()[0]
    # Captured: a trigger on each upload table.
    with host.sudo("postgres"):
        triggers = host.check_output(
            f"psql -p {PORT} -d exchange -XAtc "
            "\"select tgrelid::regclass from pg_trigger where tgname = 'hipgate_capture'\""
        )
    assert "exchange.setl" in triggers.split()


def test_middleware_timers_and_sandbox(host):
    """exchange_middleware: its account, a config it can read and parse, timers, exposure ≤ 2.0."""
    on(host, "client")
    assert host.user("hipgate-exchange").shell == "/usr/sbin/nologin"
    with host.sudo():
        key = host.file("/etc/hipgate/exchange/host.key")
        assert key.user == "root" and key.group == "hipgate-exchange" and key.mode == 0o640
    check = (
        "sudo -u hipgate-exchange /opt/hipgate/venv/bin/python -c "
        '"from hipgate.exchange.run import load_config; '
        "print(load_config('/etc/hipgate/exchange/middleware.json').sender_code)\""
    )
    assert host.check_output(check) == "44000001"
    for timer in ("incremental", "downloads", "metrics"):
        assert host.service(f"hipgate-exchange-{timer}.timer").is_enabled
    for unit in ("hipgate-exchange@incremental.service", "hipgate-exchange-metrics.service"):
        out = host.check_output(f"sudo systemd-analyze security --no-pager {unit}")
        assert float(out.rsplit(f"Overall exposure level for {unit}:", 1)[1].split()[0]) <= 2.0
