"""The simulated platform, used the way the front-end server uses the real one: through the tunnel,
its names resolve, its HTTPS endpoint answers with a certificate the lab CA vouches for, and a file
dropped over SFTP lands in the chrooted inbox."""

import json
import shlex
import time

import pytest

from hipgate.preflight import network as pf

testinfra_hosts = ["ansible://frontend"]
NAMES = ("platform.natplat.lab", "sftp.natplat.lab")


@pytest.fixture(scope="module")
def prefix(host) -> str:
    for _ in range(60):
        out = host.run("sudo swanctl --list-sas 2>/dev/null").stdout
        if "INSTALLED" in out:
            remote = next(ln.split()[1] for ln in out.splitlines() if ln.strip().startswith("remote 10."))
            return remote.rsplit(".", 1)[0] + "."
        time.sleep(1)
    pytest.fail("no tunnel")


def test_names_resolve_through_the_tunnel(host, prefix) -> None:
    spec = {
        "dns_servers": [prefix + "53"],
        "names": list(NAMES),
        "tcp_ports": [443, 22],
        "icmp": False,
        "route_probes": [prefix + "1"],
        "vpn": False,
        "time": False,
        "timeout": 2,
    }
    raw = json.loads(host.check_output(pf.probe_command(spec)))
    answers = {d["name"]: d["answers"] for d in raw["dns"]}
    assert answers == {NAMES[0]: [prefix + "10"], NAMES[1]: [prefix + "11"]}
    assert {(t["address"], t["port"]): t["result"] for t in raw["tcp"]} == {
        (prefix + a, p): "open" for a in ("10", "11") for p in (443, 22)
    }
    assert json.loads(raw["routes"][prefix + "1"]["stdout"])[0]["dev"].startswith("ipsec")


def test_unknown_platform_name_does_not_exist(host, prefix) -> None:
    spec = {
        "dns_servers": [prefix + "53"],
        "names": ["nope.natplat.lab"],
        "tcp_ports": [],
        "icmp": False,
        "route_probes": [],
        "vpn": False,
        "time": False,
        "timeout": 2,
    }
    raw = json.loads(host.check_output(pf.probe_command(spec)))
    assert raw["dns"][0]["rcode"] == 3 and raw["dns"][0]["answers"] == []


def test_https_endpoint_with_a_verified_certificate(host, prefix) -> None:
    script = (
        "import http.client, ssl\n"
        "ctx = ssl.create_default_context(cafile='/etc/hipgate/pki/ca.crt')\n"
        f"c = http.client.HTTPSConnection('{prefix}10', 443, context=ctx, timeout=5)\n"
        "c.request('GET', '/api/health')\n"
        "print(c.getresponse().read().decode())\n"
    )
    out = host.check_output(f"python3 -c {shlex.quote(script)}")
    assert json.loads(out)["status"] == "ok"


def test_sftp_drop_takes_a_file_and_refuses_a_shell(host, prefix) -> None:
    opts = "-i /root/.ssh/id_platform_drop -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile=/root/.ssh/kh_drop"
    target = f"province@{prefix}11"

    def sftp(batch: str):
        return host.run(f"printf {shlex.quote(batch)} | sudo sftp {opts} -b - {target}")

    put = sftp("put /etc/hostname inbox/from-frontend.txt\n")
    assert put.rc == 0, put.stderr
    got = sftp("get inbox/from-frontend.txt /tmp/back.txt\nls /\n")
    assert got.rc == 0, got.stderr
    assert host.check_output("cat /tmp/back.txt") == "frontend"
    # Chrooted: the account's root holds only its inbox.
    assert [ln.strip() for ln in got.stdout.splitlines() if not ln.startswith("sftp>")] == ["/inbox"]
    shell = host.run(f"sudo ssh {opts} -o BatchMode=yes {target} id")
    assert shell.rc != 0 and "uid=" not in shell.stdout


RELAY_CALL = """
import json, sys
from pathlib import Path
from hipgate.exchange.incremental import unsigned
from hipgate.exchange.interface import build_envelope, new_msgid
from hipgate.exchange.platform_client import RelayClient, RetryPolicy
pki = Path("/etc/hipgate/pki")
client = RelayClient(sys.argv[1], pki / "ca.crt", pki / "host.crt", pki / "host.key", 30, RetryPolicy(1, 0, 0))
sender = "44000001"
envelope = unsigned(build_envelope("1301", {"limit": 1}, sender_code=sender, cainfo="00", msgid=new_msgid(sender)))
reply = client.call("1301", envelope)
print(json.dumps({"relay": reply.relay, "infcode": reply.infcode}))
"""


def test_relay_signs_and_forwards_through_the_tunnel(host) -> None:
    """hipgate_runtime, exchange_relay and the simulator together: a signed 1301 through the relay, over the
    tunnel, answered and signed by the simulator (the relay checks that signature before forwarding it)."""
    relay = "https://" + host.ansible.get_variables()["ansible_host"] + ":8443"
    out = host.check_output(f"sudo /opt/hipgate/venv/bin/python - {relay} <<'EOF'\n{RELAY_CALL}\nEOF")
    assert json.loads(out.strip().splitlines()[-1]) == {"relay": "forwarded", "infcode": 0}


def test_relay_and_simulator_are_sandboxed(host) -> None:
    out = host.check_output("sudo systemd-analyze security --no-pager hipgate-exchange-relay.service")
    level = float(out.rsplit("Overall exposure level for hipgate-exchange-relay.service:", 1)[1].split()[0])
    assert level <= 2.0
    assert host.user("hipgate-relay").shell == "/usr/sbin/nologin"
    with host.sudo():
        key = host.file("/etc/hipgate/exchange-relay/sign.key")
        assert key.user == "root" and key.group == "hipgate-relay" and key.mode == 0o640
