"""The declared flow passes, everything else is dropped, and hipgate's own firewall checks hold."""

import shlex

import pytest
import testinfra

from hipgate.conformance.checks import CHECK_SCOPE, CHECKS
from hipgate.policy.load import load_policy

testinfra_hosts = ["ansible://all"]
# Checks that need the whole inventory (they probe from every host) are proven on the reference lab
# by tests/lab/test_access_control.py.
CASES = [(c, n) for c in load_policy().controls if c.role == "firewall" for n in c.checks if n not in CHECK_SCOPE]
LISTEN = (
    "python3 -c 'import socket,time; s=socket.socket(); s.setsockopt(1, 2, 1); "
    's.bind(("0.0.0.0", 8080)); s.listen(); time.sleep(30)\' >/dev/null 2>&1 & echo $!'
)


def name(host):
    return host.backend.get_hostname()


def tcp(host, port):
    """0 connected, 1 refused (passed the firewall, nothing listening), 124 dropped (timeout)."""
    return host.run(f"timeout 3 bash -c '</dev/tcp/server/{port}'").rc


@pytest.fixture(scope="module")
def listener(request):
    server = testinfra.get_host("ansible://server", ansible_inventory=request.config.option.ansible_inventory)
    pid = server.check_output(f"sudo -n sh -c {shlex.quote(LISTEN)}")
    yield
    server.run(f"sudo -n kill {pid}")


@pytest.mark.parametrize(("control", "check"), CASES)
def test_control_holds_on_server(host, control, check):
    if name(host) != "server":
        pytest.skip("server only")
    outcome = CHECKS[check](host, control.params())
    assert outcome.ok, outcome.en


def test_declared_flow_passes_and_others_are_dropped(host, listener):
    if name(host) == "client":
        assert tcp(host, 8080) == 0
        assert tcp(host, 8081) == 124  # no flow: dropped, not refused
        assert tcp(host, 22) == 124  # ssh only from the management address
    elif name(host) == "other":
        assert tcp(host, 8080) == 124
        assert tcp(host, 22) == 124


def test_ruleset_names_each_flow_and_logs_drops(host):
    if name(host) != "server":
        pytest.skip("server only")
    ruleset = host.check_output("sudo -n nft list table inet hipgate")
    assert 'comment "flow app"' in ruleset and 'comment "flow management-ssh"' in ruleset
    assert "udp dport 123" in ruleset
    assert 'log prefix "hipgate-drop-in: "' in ruleset
    assert "policy drop" in ruleset
