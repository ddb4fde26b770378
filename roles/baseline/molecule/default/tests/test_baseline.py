"""The hardened host passes hipgate's own checks for the baseline's controls, and ssh still works."""

import pytest

from hipgate.conformance.checks import CHECK_SCOPE, CHECKS
from hipgate.policy.load import load_policy

testinfra_hosts = ["ansible://all"]
# Checked elsewhere: time sync belongs to the timesync role; auditd cannot run on the lab kernel;
# checks scoped to database or bastion hosts, or probing the whole inventory, run on the reference lab.
NOT_HERE = {"time_synchronised", "auditd_running", *CHECK_SCOPE}
CASES = [(c, n) for c in load_policy().controls if c.role == "baseline" for n in c.checks if n not in NOT_HERE]


@pytest.mark.parametrize(("control", "check"), CASES, ids=[f"{c.id}::{n}" for c, n in CASES])
def test_control_holds(host, control, check):
    outcome = CHECKS[check](host, control.params())
    assert outcome.ok, outcome.en


def test_admin_can_still_log_in_and_sudo(host):
    # Every testinfra command above came over a fresh ssh session as the admin; sudo still works.
    assert host.run("sudo -n true").rc == 0
    assert host.socket("tcp://0.0.0.0:22").is_listening
