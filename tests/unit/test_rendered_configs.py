"""Property: whatever the inventory check accepts renders into configs with no injected line.

Hypothesis puts hostile and near-valid strings into every inventory field that reaches a config;
an inventory that `load_inventory` accepts is then rendered through the roles' own templates and
the firewall's own filter plugin (nftables.conf, pg_hba.conf, swanctl.conf, chrony.conf) and
through `hipgate verify`'s ssh_config writer, and every rendered line must have the shape the
template means to write: no newline, quote or brace from a value survives. nftables output is
also checked by `nft -c` where nft can run.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EXAMPLE, ROOT
from hipgate.conformance.targets import ssh_config
from hipgate.errors import UserError
from hipgate.inventory.load import Inventory, load_inventory

HOSTS = yaml.safe_load((EXAMPLE / "hosts.yml").read_text(encoding="utf-8"))
SETTINGS = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "hipgate.yml").read_text(encoding="utf-8"))

_spec = importlib.util.spec_from_file_location(
    "hipgate_flows_filter", ROOT / "roles/firewall/filter_plugins/hipgate_flows.py"
)
assert _spec and _spec.loader
FILTER = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(FILTER)

# As Ansible's template module renders: trim_blocks on.
ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True)
ENV.filters["bool"] = lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes", "on")


def render(template: str, **variables: Any) -> str:
    return ENV.from_string((ROOT / template).read_text(encoding="utf-8")).render(**variables)


# --- what each template may write ----------------------------------------------------------------

NAME = r"[A-Za-z0-9_.-]+"
CIDR = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}"
IP = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}"
PORTS = r"[0-9]+(?:-[0-9]+)?(?:, [0-9]+(?:-[0-9]+)?)*"
NFT_RULE = re.compile(
    rf"    ip saddr \{{ {CIDR}(?:, {CIDR})* \}} "
    rf"(?:(?:tcp|udp) dport \{{ {PORTS} \}}(?: ct state new)?|meta l4proto esp)"
    rf' accept comment "flow [a-z][a-z0-9-]*"'
)
NFT_COMMENT = re.compile(r"    # flow [a-z][a-z0-9-]*(?: \(implied\))?: [^\x00-\x1f\"]*")
HBA_LINE = re.compile(
    rf"(?:local +all +(?:all|postgres) +peer|hostssl +{NAME} +\+?{NAME} +{CIDR} +scram-sha-256"
    rf"|host +all +all +(?:0\.0\.0\.0/0|::/0) +reject)"
)
CHRONY_SERVER = re.compile(rf"server {NAME} iburst")
SWAN_VALUE = re.compile(r"[A-Za-z0-9_.@,/:=-]+")


def nft_lines_ok(text: str, static: set[str]) -> list[str]:
    return [
        ln
        for ln in text.splitlines()
        if ln not in static and not NFT_RULE.fullmatch(ln) and not NFT_COMMENT.fullmatch(ln)
    ]


# --- rendering one accepted inventory ------------------------------------------------------------


def hostvars(inv: Inventory) -> dict[str, dict[str, Any]]:
    return {h: {**inv.vars, **v} for h, v in inv.hosts.items()}


def groups(inv: Inventory) -> dict[str, list[str]]:
    return {**inv.groups, "all": list(inv.hosts)}


def nftables(inv: Inventory, host: str) -> str:
    hip = inv.settings
    plan = FILTER.firewall_plan(
        hip.get("flows") or [],
        host,
        groups(inv),
        hostvars(inv),
        hip["network"]["management_networks"],
        (hip.get("database") or {}).get("port", 5432),
        "",
        hip.get("vpn"),
    )
    return render(
        "roles/firewall/templates/nftables.conf.j2",
        firewall_8_1_3_2_d=True,
        firewall_plan=plan,
        firewall_log_rate="10/second",
        firewall_log_prefix="hipgate-drop-in: ",
    )


def pg_hba(inv: Inventory) -> str:
    g = groups(inv)
    system = ([{"from": "vault", "database": "postgres", "role": "hipgate_vault"}] if g.get("vault") else []) + (
        [{"from": "bastion", "database": "postgres", "role": "postgres"}] if g.get("bastion") else []
    )
    return render(
        "roles/postgresql/templates/pg_hba.conf.j2",
        postgresql_clients=(inv.settings.get("database") or {}).get("clients") or [],
        postgresql_system_clients=system,
        groups=g,
        hostvars=hostvars(inv),
    )


VPN_DEFAULTS = yaml.safe_load((ROOT / "roles/vpn_endpoint/defaults/main.yml").read_text(encoding="utf-8"))


def swanctl(inv: Inventory) -> str:
    vpn = inv.settings["vpn"]
    values = {k: v for k, v in VPN_DEFAULTS.items() if "{{" not in str(v)}
    values.update(
        vpn_endpoint_auth=vpn.get("auth", "certificate"),
        vpn_endpoint_local_address=vpn.get("local_address", "10.86.200.2"),
        vpn_endpoint_peer_address=vpn["peer_address"],
        vpn_endpoint_local_id="fe01",
        vpn_endpoint_peer_id=vpn["peer_id"],
        vpn_endpoint_local_subnets=vpn["local_subnets"],
        vpn_endpoint_remote_subnets=vpn.get("remote_subnets") or [inv.settings["network"]["platform_cidr"]],
    )
    return render("roles/vpn_endpoint/templates/swanctl.conf.j2", **values)


def chrony(inv: Inventory) -> str:
    return render(
        "roles/timesync/templates/chrony.conf.j2",
        ansible_managed="Managed by Ansible",
        timesync_ntp_servers=(inv.settings.get("time") or {}).get("ntp_servers") or [],
        timesync_driftfile="/var/lib/chrony/chrony.drift",
        timesync_makestep="1.0 3",
        timesync_set_clock=True,
        timesync_serve_networks=[],
        timesync_local_stratum=0,
    )


def baseline(inv_dir: Path) -> dict[str, str]:
    inv = load_inventory(inv_dir)
    return {"nft": nftables(inv, "db01"), "swan": swanctl(inv), "chrony": chrony(inv)}


def check_rendered(inv: Inventory, base: dict[str, str], tmp: Path) -> None:
    static_nft = {ln for ln in base["nft"].splitlines() if not ln.startswith("    ip saddr") and "# flow" not in ln}
    for host in inv.hosts:
        if host in inv.group_hosts("natplat"):
            continue
        text = nftables(inv, host)
        assert not nft_lines_ok(text, static_nft), (host, nft_lines_ok(text, static_nft))
    for ln in pg_hba(inv).splitlines():
        assert not ln or ln.startswith("#") or HBA_LINE.fullmatch(ln), ln
    swan = swanctl(inv)
    assert len(swan.splitlines()) == len(base["swan"].splitlines())
    for ln in swan.splitlines():
        if " = " in ln:
            assert SWAN_VALUE.fullmatch(ln.split(" = ", 1)[1]), ln
    chrony_text = chrony(inv)
    servers = [ln for ln in chrony_text.splitlines() if ln.startswith("server")]
    assert len(servers) == len(inv.settings["time"]["ntp_servers"])
    assert all(CHRONY_SERVER.fullmatch(s) for s in servers), servers
    assert len(chrony_text.splitlines()) - len(servers) == len(base["chrony"].splitlines()) - 1
    cfg = ssh_config(inv, tmp / "ssh_config").read_text()
    for ln in cfg.splitlines():
        assert re.fullmatch(r"(?:Host [A-Za-z0-9_.*-]+|  [A-Za-z]+ [^\s\"'`$;|&<>]+|)", ln), ln


# --- the property -----------------------------------------------------------------------------------

SETTINGS_FIELDS: list[tuple[Any, ...]] = [
    ("flows", 0, "name"),
    ("flows", 0, "purpose"),
    ("flows", 0, "proto"),
    ("flows", 0, "from", 0),
    ("flows", 0, "to", 0),
    ("flows", 0, "ports", 0),
    ("vpn", "peer_id"),
    ("vpn", "peer_address"),
    ("vpn", "local_subnets", 0),
    ("time", "ntp_servers", 0),
    ("database", "clients", 0, "role"),
    ("database", "clients", 0, "database"),
    ("database", "clients", 0, "from"),
    ("database", "databases", 0, "name"),
    ("network", "management_networks", 0),
]
HOST_FIELDS = ["ansible_user", "ansible_host", "ansible_port", "ansible_ssh_private_key_file"]

GOOD = {
    "name": "app-to-db",
    "purpose": "中间件 / the middleware",
    "proto": "tcp",
    "from": "middleware",
    "to": "database",
    "ports": "5432",
    "peer_id": "vpn.hsa.example.gov.cn",
    "peer_address": "10.123.0.1",
    "local_subnets": "10.86.200.0/28",
    "ntp_servers": "ntp.example.cn",
    "role": "exchange_app",
    "database": "exchange",
    "management_networks": "10.86.0.0/28",
    "ansible_user": "hipgate",
    "ansible_host": "10.86.1.20",
    "ansible_port": "22",
    "ansible_ssh_private_key_file": "/home/ops/.ssh/id_ed25519",
}
EVIL_SUFFIXES = ["\n", "\n accept", " accept #", '"', "}", "{", ";id", "\r", " ", "\t", "'", "$(id)", "{{ x }}", "\x00"]
hostile = st.text(
    alphabet=st.sampled_from([*"abz09._-/@: \n\r\t\"'{};#$`\\|&<>*=,+", "\u2028", "\x85", "é"]), max_size=24
)


def near_valid(key: str) -> st.SearchStrategy[str]:
    good = GOOD.get(key, "x")
    return st.one_of(
        st.just(good),
        st.sampled_from(EVIL_SUFFIXES).map(lambda s: good + s),
        st.sampled_from(EVIL_SUFFIXES).map(lambda s: s + good),
        hostile,
    )


def key_of(path: tuple[Any, ...]) -> str:
    return next(str(p) for p in reversed(path) if isinstance(p, str))


@st.composite
def poisoned(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], str]:
    hosts = copy.deepcopy(HOSTS)
    hip = copy.deepcopy(SETTINGS)
    if draw(st.booleans()):
        path = draw(st.sampled_from(SETTINGS_FIELDS))
        node: Any = hip["hipgate"]
        for p in path[:-1]:
            node = node[p]
        value: Any = draw(near_valid(key_of(path)))
        if path[-1] == 0 and path[-2] == "ports" and value.isdigit():
            value = int(value)
        node[path[-1]] = value
        where = "/".join(map(str, path))
    else:
        key = draw(st.sampled_from(HOST_FIELDS))
        value = draw(near_valid(key))
        if key == "ansible_port" and value.isdigit():
            value = int(value)
        hosts["all"]["children"]["database"]["hosts"]["db01"][key] = value
        where = key
    return hosts, hip, f"{where}={value!r}"


FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def base_inventory() -> tuple[Path, dict[str, str]]:
    inv_dir = Path(tempfile.mkdtemp(prefix="hipgate-render-"))
    shutil.copytree(EXAMPLE, inv_dir, dirs_exist_ok=True)
    # The example inventory names its time source by address; a name exercises the DNS pattern too.
    yield inv_dir, baseline(inv_dir)
    shutil.rmtree(inv_dir)


@FUZZ
@given(case=poisoned())
def test_accepted_values_render_inert(case: tuple[dict[str, Any], dict[str, Any], str], base_inventory: Any) -> None:
    hosts, hip, _label = case
    _, base = base_inventory
    inv_dir = Path(tempfile.mkdtemp(prefix="hipgate-render-"))
    try:
        shutil.copytree(EXAMPLE, inv_dir, dirs_exist_ok=True)
        (inv_dir / "hosts.yml").write_text(yaml.safe_dump(hosts, allow_unicode=True), encoding="utf-8")
        (inv_dir / "group_vars/all/hipgate.yml").write_text(yaml.safe_dump(hip, allow_unicode=True), encoding="utf-8")
        try:
            inv = load_inventory(inv_dir)
        except UserError:
            return  # refused with a clear error: nothing is rendered
        check_rendered(inv, base, inv_dir)
    finally:
        shutil.rmtree(inv_dir)


# --- the filter plugin on its own (an override the inventory check never saw) -------------------


def test_firewall_filter_refuses_the_proto_injection() -> None:
    inv = load_inventory(EXAMPLE)
    flows = copy.deepcopy(inv.settings["flows"])
    flows[0]["proto"] = "tcp dport 1-65535 accept\n accept #"
    with pytest.raises(FILTER.AnsibleFilterError, match="tcp, udp or esp"):
        FILTER.firewall_plan(flows, "db01", groups(inv), hostvars(inv), ["10.86.0.0/28"], 5432, "", None)


@pytest.mark.parametrize(
    ("key", "value"),
    [("name", 'x" accept comment "y'), ("purpose", "p\n accept"), ("from", ["middleware\n"]), ("to", ["database }"])],
)
def test_firewall_filter_refuses_other_injections(key: str, value: Any) -> None:
    inv = load_inventory(EXAMPLE)
    flows = copy.deepcopy(inv.settings["flows"])
    flows[0][key] = value
    with pytest.raises(FILTER.AnsibleFilterError):
        FILTER.firewall_plan(flows, "db01", groups(inv), hostvars(inv), ["10.86.0.0/28"], 5432, "", None)


def _nft_can_check() -> bool:
    if not shutil.which("nft"):
        return False
    res = subprocess.run(
        ["nft", "-c", "-f", "-"], input="table inet t { }\n", capture_output=True, text=True, check=False
    )
    return res.returncode == 0


@pytest.mark.skipif(not _nft_can_check(), reason="nft -c cannot run here / 本机无法运行 nft -c")
def test_rendered_ruleset_passes_nft_check() -> None:
    inv = load_inventory(EXAMPLE)
    for host in ("db01", "fe01", "vault01"):
        text = nftables(inv, host).replace('include "/etc/nftables.d/*.nft"', "")
        res = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ansible_user", "hipgate\n  ProxyCommand touch /tmp/pwn"),
        ("ansible_host", "10.86.1.20\n  ProxyCommand id"),
        ("ansible_port", "22\nProxyCommand id"),
        ("ansible_ssh_private_key_file", "/k\n  LocalCommand id"),
    ],
)
def test_ssh_config_writer_refuses_a_newline_on_its_own(tmp_path: Path, key: str, value: str) -> None:
    """Even an Inventory that never went through load_inventory cannot smuggle an ssh option."""
    inv = load_inventory(EXAMPLE)
    inv.hosts["db01"][key] = value
    with pytest.raises(UserError) as caught:
        ssh_config(inv, tmp_path / "ssh_config")
    assert "db01" in caught.value.problems[0].where
    assert not (tmp_path / "ssh_config").exists()
