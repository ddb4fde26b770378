"""Verify on the lab hosts that chrony runs with the managed config and the client is synchronised."""

import time

import pytest

testinfra_hosts = ["ansible://all"]


def test_unprivileged_user_cannot_control_chrony(host):
    # cmdport 0: no network control port, so a non-root user gets no answer at all.
    assert host.run("chronyc -n tracking").rc != 0


def test_chrony_running(host):
    svc = host.service("chrony")
    assert svc.is_running
    assert svc.is_enabled


def test_config_managed(host):
    conf = host.file("/etc/chrony/chrony.conf")
    assert conf.contains("hipgate timesync")
    assert conf.contains("^cmdport 0")
    assert conf.mode == 0o644


def test_source_serves_time(host):
    if host.backend.get_hostname() != "timesrc":
        pytest.skip("time source only")
    assert host.socket("udp://0.0.0.0:123").is_listening


def test_client_synchronised_to_source(host):
    if host.backend.get_hostname() != "client":
        pytest.skip("client only")
    # chronyc needs root: with cmdport 0 only the root-owned Unix socket answers.
    # iburst gets a first sample within seconds; allow a little time after converge.
    with host.sudo():
        for _ in range(30):
            tracking = host.check_output("chronyc -n tracking")
            if "Leap status     : Normal" in tracking:
                break
            time.sleep(1)
        sources = host.check_output("chronyc -n sources")
    assert "Leap status     : Normal" in tracking, tracking
    timesrc = host.check_output("getent hosts timesrc").split()[0]
    assert f"({timesrc})" in tracking, tracking
    assert f"^* {timesrc}" in sources, sources
