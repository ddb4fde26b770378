"""The data exchange on the deployed reference lab (site.yml): the relay on `frontend`, the middleware's timers
on `middleware`, the national platform simulator on `natplat` behind the tunnel, all real. Seeded history of one
region-year uploads as files and the simulator's ledger then equals the source, count and fingerprint per day;
the incremental timer carries new and changed records within an interval; fee-check forms land in the inbox once;
with the tunnel down nothing leaves in cleartext and the upload goes through once it is back."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from typing import Any

import pytest

from hipgate.exchange import deployed
from lab_reference import HIPGATE, INV, LAB, check_from, hipgate, sh

pytestmark = pytest.mark.lab

SIMULATOR = (
    "sudo -u hipgate-simulator env HIPGATE_HOME=/opt/hipgate/share /opt/hipgate/venv/bin/python -m hipgate.simulator"
)
SIM_CONFIG = "--config /etc/hipgate/simulator/simulator.yml"
LEAK_COUNTER = "nft list table inet hipgate_vpn | grep -o 'counter packets [0-9]*' | grep -o '[0-9]*$'"
HISTORY = ("440100", 2023)  # uploaded as files
NEW = ("440300", 2024)  # written after go-live: the incremental timer carries it
OUTAGE = ("440600", 2024)  # written while the tunnel is down


def mw(subcommand: str, *args: str, check: bool = True) -> Any:
    """A middleware run on its host, as `hipgate exchange` runs it (the service account, its config)."""
    res = sh("middleware", deployed.host_command(subcommand, *args), check=check)
    return json.loads(res.stdout.strip().splitlines()[-1]) if check else res


def ledger() -> dict[str, Any]:
    """The simulator's ledger: counts and fingerprints per day and record type of what it accepted."""
    return json.loads(sh("natplat", f"{SIMULATOR} ledger-summary {SIM_CONFIG}").stdout)


def source() -> list[dict[str, Any]]:
    """What the platform should hold: every record of the exchange database the dataset accepts, summarised as
    the ledger is (its days mix regions, so the whole ledger is compared with the whole source)."""
    return mw("source-summary")["days"]


def in_step() -> bool:
    return ledger()["days"] == source()


def year_count(days: list[dict[str, Any]], year: int) -> int:
    return sum(d["count"] for d in days if d["day"].startswith(str(year)))


def psql(sql: str) -> str:
    return sh("database", f"runuser -u postgres -- psql -d exchange -XAtqc {shlex.quote(sql)}").stdout.strip()


def seed(region_year: tuple[str, int], count: int, capture: bool) -> None:
    region, year = region_year
    hipgate("lab", "seed-data", "--name", LAB, "--regions", region, "--years", str(year),
            "--record-types", "setl", "--records-per-region-year", str(count), "--replace",
            "--capture" if capture else "--no-capture")  # fmt: skip


def wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        time.sleep(5)


@pytest.fixture(scope="module")
def exchange(lab: dict) -> dict:
    """History that predates the middleware (not captured), uploaded as files by `hipgate exchange`."""
    seed(HISTORY, 400, capture=False)
    res = hipgate("exchange", "history", "upload", "-i", str(INV), "--region", HISTORY[0], "--year", str(HISTORY[1]))
    wait_for(lambda: ledger()["files"]["parsed"] >= ledger()["files"]["complete"] > 0, 120, "history files parsed")
    return {**lab, "history_upload": res.stdout + res.stderr}


def exposure(host: str, unit: str) -> float:
    out = sh(host, f"systemd-analyze security --no-pager {unit}").stdout
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
    assert m, out[-500:]
    return float(m[1])


def test_services_run_sandboxed_as_their_own_accounts(lab: dict) -> None:
    for host, unit, user in [
        ("frontend", "hipgate-exchange-relay.service", "hipgate-relay"),
        ("middleware", "hipgate-exchange@incremental.service", "hipgate-exchange"),
        ("middleware", "hipgate-exchange-metrics.service", "hipgate-exchange"),
    ]:
        assert exposure(host, unit) <= 2.0, (host, unit)
        assert sh(host, f"systemctl show -p User --value {unit}").stdout.strip() == user
        assert sh(host, f"getent passwd {user}").stdout.strip().endswith(":/usr/sbin/nologin")
    assert sh("frontend", "systemctl is-active hipgate-exchange-relay").stdout.strip() == "active"
    # Keys: readable by their service's account only.
    for host, path, group in [
        ("frontend", "/etc/hipgate/exchange-relay/sign.key", "hipgate-relay"),
        ("frontend", "/etc/hipgate/exchange-relay/host.key", "hipgate-relay"),
        ("middleware", "/etc/hipgate/exchange/host.key", "hipgate-exchange"),
    ]:
        assert sh(host, f"stat -c '%U:%G %a' {path}").stdout.strip() == f"root:{group} 640", path
    # The front-end server holds no database login: no grants file, nothing about the database in its config.
    assert sh("frontend", "test -e /etc/hipgate/db-login.json", check=False).returncode != 0
    relay = json.loads(sh("frontend", "cat /etc/hipgate/exchange-relay/relay.json").stdout)
    assert "database" not in relay and relay["tls"]["allowed_clients"] == ["middleware"]
    timers = sh("middleware", "systemctl list-timers --all --no-pager 'hipgate-exchange*'").stdout
    assert all(t in timers for t in ("incremental.timer", "downloads.timer", "metrics.timer")), timers


def test_exchange_running_check_passes_and_fails_when_a_service_stops(lab: dict) -> None:
    """HIPGATE-EX-1: passes on both hosts as deployed, fails with the relay or a timer stopped, passes again."""
    for name, unit in [
        ("frontend", "hipgate-exchange-relay.service"),
        ("middleware", "hipgate-exchange-incremental.timer"),
    ]:
        before = check_from(lab, "exchange_running", name)
        assert before.ok, (name, before.en, before.evidence)
        sh(name, f"systemctl stop {unit}")
        try:
            broken = check_from(lab, "exchange_running", name)
        finally:
            sh(name, f"systemctl start {unit}")
        assert not broken.ok and unit in broken.en, (name, broken.en)
        assert check_from(lab, "exchange_running", name).ok
    # The middleware's status is in the evidence, as the report shows it.
    shown = check_from(lab, "exchange_running", "middleware")
    assert "exchange status:" in shown.en and shown.data["exchange"]["status"]["alert"] is False


def test_history_upload_matches_the_platform_ledger(exchange: dict) -> None:
    expected = source()
    assert year_count(expected, HISTORY[1]) > 300
    assert ledger()["days"] == expected
    # Uploaded once: a second upload finds every file complete and sends no chunk.
    again = mw("history-upload", "--region", HISTORY[0], "--year", str(HISTORY[1]))
    assert again["chunks_sent"] == 0 and again["skipped"], again


def test_incremental_timer_carries_new_and_changed_records(exchange: dict) -> None:
    seed(NEW, 200, capture=True)
    key = psql(
        "select setl_id from exchange.setl where mdtrtarea_admvs = '440100' and setl_time >= '2023-01-01'"
        " and setl_id not in (select record_key->>'setl_id' from exchange.hipgate_quarantine) order by setl_id limit 1"
    )
    psql(f"update exchange.setl set fixmedins_name = fixmedins_name || '（更正）', updt_time = now()"
         f" where setl_id = '{key}'")  # fmt: skip
    # One schedule interval is a minute in the lab; a run may be under way when the rows land.
    wait_for(in_step, 180, "the new records and the changed one on the platform")
    assert year_count(source(), NEW[1]) >= 190  # the new ones are in it (a few bad ones are quarantined)
    state = mw("status")
    assert state["alert"] is False, state


def test_fee_check_forms_arrive_in_the_inbox_exactly_once(exchange: dict) -> None:
    before = int(psql("select count(*) from exchange.fee_check_form"))
    sh("natplat", f"{SIMULATOR} publish-forms 5 {SIM_CONFIG}")
    wait_for(lambda: int(psql("select count(*) from exchange.fee_check_form")) == before + 5, 150, "forms stored")
    mw("downloads")  # one more run: nothing new, nothing twice
    assert int(psql("select count(*) from exchange.fee_check_form")) == before + 5
    assert psql("select count(*) from exchange.fee_check_form where hg_acked_at is null") == "0"


def test_tunnel_down_nothing_in_cleartext_and_the_upload_resumes(exchange: dict) -> None:
    leaked = int(sh("frontend", LEAK_COUNTER).stdout)
    sh("frontend", "systemctl stop strongswan")
    try:
        seed(OUTAGE, 50, capture=True)
        # The timer's run tries the platform: the leak guard drops it, the records stay pending.
        wait_for(lambda: int(sh("frontend", LEAK_COUNTER).stdout) > leaked, 120, "a dropped attempt")
        assert not in_step()
        assert sh("frontend", "systemctl is-active hipgate-exchange-relay").stdout.strip() == "active"
    finally:
        sh("frontend", "systemctl start strongswan")
    wait_for(in_step, 420, "the records after the tunnel came back")


CUT = ("440600", 2023)  # history uploaded while the tunnel is cut mid-chunk


def test_tunnel_cut_mid_chunk_the_history_upload_resumes_once(exchange: dict) -> None:
    """The tunnel goes down while the platform holds its reply to a chunk (a `slow` fault of 3 s) and stays down
    8 s: the upload keeps retrying the same msgid (the deployed backoff: 1, 2, 4, 8, 16 s) and completes once
    the tunnel is back; the file is held once and the ledger equals the source."""
    seed(CUT, 300, capture=False)
    before = year_count(ledger()["days"], CUT[1])
    sh("natplat", f"{SIMULATOR} faults --clear {SIM_CONFIG}")
    sh("natplat", f"{SIMULATOR} fault slow --infno 9102 --count 1 --delay 3 {SIM_CONFIG}")

    def fired() -> list:
        return json.loads(sh("natplat", f"{SIMULATOR} faults {SIM_CONFIG}").stdout)[-1]["fired"]

    command = [HIPGATE, "exchange", "history", "upload", "-i", str(INV), "--region", CUT[0], "--year", str(CUT[1])]
    upload = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not fired():
            assert time.monotonic() < deadline and upload.poll() is None, "no chunk reached the platform"
            time.sleep(0.2)
        sh("frontend", "systemctl stop strongswan")
        time.sleep(8)
        assert upload.poll() is None  # still retrying, nothing given up
    finally:
        sh("frontend", "systemctl start strongswan")
        out, _ = upload.communicate(timeout=600)
    assert upload.returncode == 0, out[-3000:]
    assert len(fired()) == 1
    wait_for(lambda: ledger()["files"]["parsed"] >= ledger()["files"]["complete"], 120, "the file parsed")
    wait_for(in_step, 120, "the cut region-year on the platform")
    assert year_count(ledger()["days"], CUT[1]) >= before + 250  # its records are there (a few bad ones are not)
    again = mw("history-upload", "--region", CUT[0], "--year", str(CUT[1]))
    assert again["chunks_sent"] == 0 and again["skipped"], again
