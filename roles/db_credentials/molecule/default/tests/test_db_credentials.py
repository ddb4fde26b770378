"""The helper knows only this host's grants, holds no secret, and fails clearly without OpenBao."""

import json

testinfra_hosts = ["ansible://all"]


def test_grants_are_this_hosts_only_and_hold_no_secret(host):
    conf = host.file("/etc/hipgate/db-login.json")
    assert conf.mode == 0o644 and conf.user == "root"
    data = json.loads(conf.content_string)
    assert [g["role"] for g in data["grants"]] == ["exchange_app"]  # not ops_admin: that is another host's
    assert set(data) == {"vault_addr", "host", "ca", "cert", "key", "grants"}
    assert host.file("/usr/local/bin/hipgate-db-login").mode == 0o755


def test_unreachable_openbao_is_a_clear_error(host):
    with host.sudo():
        res = host.run("hipgate-db-login exchange_app -c 'select 1'")
    assert res.rc == 4 and "cannot reach OpenBao" in res.stderr and "无法连接" in res.stderr, res.stderr


def test_unknown_role_is_refused_with_the_choices(host):
    with host.sudo():
        res = host.run("hipgate-db-login ops_admin")
    assert res.rc == 2 and "exchange_app" in res.stderr
