"""`hipgate exchange` without a lab: the host commands it builds (exact), the ssh argv, the progress lines
it reads, and every argument refused before anything is sent (bad dates, a region the inventory does not
list, an inventory without hipgate.exchange)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, edit_yaml, inventory_settings
from hipgate import cli_exchange
from hipgate.errors import UserError
from hipgate.exchange import deployed
from hipgate.inventory import load_inventory

HIPGATE = str(Path(sys.executable).parent / "hipgate")
RUN = "sudo -n -u hipgate-exchange /opt/hipgate/venv/bin/python -m hipgate.exchange.run"
CONFIG = "--config /etc/hipgate/exchange/middleware.json"


def hipgate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HIPGATE_DEBUG"}
    return subprocess.run([HIPGATE, *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def test_the_host_commands_are_exact() -> None:
    assert (deployed.SERVICE_USER, deployed.VENV_PYTHON, deployed.CONFIG) == (
        "hipgate-exchange", "/opt/hipgate/venv/bin/python", "/etc/hipgate/exchange/middleware.json")  # fmt: skip
    assert deployed.host_command("status") == f"{RUN} status {CONFIG}"
    assert deployed.host_command("status", "--max-lag-minutes", "30") == f"{RUN} status {CONFIG} --max-lag-minutes 30"
    assert deployed.host_command("report", "--from", "2024-03-01", "--to", "2024-03-31") == (
        f"{RUN} report {CONFIG} --from 2024-03-01 --to 2024-03-31")  # fmt: skip
    assert deployed.host_command("history-upload", "--region", "440100", "--year", "2023", "--progress", "json") == (
        f"{RUN} history-upload {CONFIG} --region 440100 --year 2023 --progress json")  # fmt: skip
    # Anything odd is one quoted word for the remote shell, never syntax.
    assert deployed.host_command("report", "--from", "$(reboot); x") == f"{RUN} report {CONFIG} --from '$(reboot); x'"


def test_the_constants_are_the_documented_ones() -> None:
    doc = (ROOT / "docs" / "exchange.md").read_text(encoding="utf-8")
    for value in (deployed.SERVICE_USER, deployed.VENV_PYTHON, deployed.CONFIG, deployed.METRICS_TEXTFILE):
        assert value in doc


def test_the_ssh_argv(inventory: Path) -> None:
    inv = load_inventory(inventory)
    host = cli_exchange.middleware_host(inv)
    argv = cli_exchange.remote_argv(inv, host, deployed.host_command("status"))
    assert host == "mw01" and argv[0] == "ssh" and argv[-2:] == ["10.86.1.30", deployed.host_command("status")]
    assert argv[argv.index("BatchMode=yes") - 1 : argv.index("BatchMode=yes") + 1] == ["-o", "BatchMode=yes"]
    assert "ConnectTimeout=10" in argv and argv[argv.index("-l") : argv.index("-l") + 2] == ["-l", "hipgate"]
    assert cli_exchange.max_lag_args(inv) == ["--max-lag-minutes", "30"]


def test_progress_lines() -> None:
    line = {"event": "progress", "records_done": 10, "records_total": 20, "bytes_done": 5, "bytes_total": 10,
            "rate": 2.5, "eta": 2.0}  # fmt: skip
    assert cli_exchange.parse_progress(json.dumps(line)) == {k: v for k, v in line.items() if k != "event"}
    assert cli_exchange.parse_progress(json.dumps(line | {"eta": None}))["eta"] is None  # type: ignore[index]
    for bad in ("", "not json", "[1]", '{"completed": []}', json.dumps(line | {"bytes_done": -1}),
                json.dumps(line | {"rate": "fast"}), json.dumps(line | {"records_done": True})):  # fmt: skip
        assert cli_exchange.parse_progress(bad) is None
    fields = cli_exchange.progress_fields(cli_exchange.parse_progress(json.dumps(line | {"eta": 3725})))  # type: ignore[arg-type]
    assert fields["eta"] == "1:02:05" and "10/20" in fields["records"] and "MB/s" in fields["rate"]


def test_dates_years_and_formats_are_checked() -> None:
    assert cli_exchange.day_range("2024-03-01", "2024-03-31") == (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    bad = [("2024-3-1", "2024-03-02"), ("2024-02-30", "2024-03-01"), ("2024-03-02", "2024-03-01"),
           ("2023-01-01", "2024-01-02"), ("2024-03-01;id", "2024-03-02"), ("２０２４-03-01", "2024-03-02")]  # fmt: skip
    for lo, hi in bad:
        with pytest.raises(UserError):
            cli_exchange.day_range(lo, hi)
    assert cli_exchange.check_year(2023, dt.date(2024, 1, 1)) == 2023
    for year in (1989, 2025):
        with pytest.raises(UserError):
            cli_exchange.check_year(year, dt.date(2024, 1, 1))
    with pytest.raises(UserError):
        cli_exchange.check_format("pdf")


def test_bad_dates_exit_2_before_any_ssh(inventory: Path) -> None:
    res = hipgate("exchange", "report", "-i", str(inventory), "--from", "2024-13-01", "--to", "2024-12-31")
    assert res.returncode == 2 and "--from" in res.stderr and "错误" in res.stderr and "Error:" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    res = hipgate("exchange", "report", "-i", str(inventory), "--from", "2024-03-01", "--to", "2024-03-02",
                  "--format", "pdf")  # fmt: skip
    assert res.returncode == 2 and "--format" in res.stderr


def test_a_region_not_in_the_inventory_is_refused(inventory: Path) -> None:
    res = hipgate("exchange", "history", "upload", "-i", str(inventory), "--region", "440600", "--year", "2023")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{inventory_settings(inventory)}: hipgate.exchange.regions" in res.stderr
    assert "440600" in res.stderr and "440100, 440300" in res.stderr and "统筹地区" in res.stderr
    res = hipgate("exchange", "history", "upload", "-i", str(inventory), "--region", "440100", "--year", "1900")
    assert res.returncode == 2 and "--year" in res.stderr


def test_an_inventory_without_the_exchange_is_refused(inventory: Path) -> None:
    edit_yaml(inventory_settings(inventory), lambda d: d["hipgate"].pop("exchange"))
    for args in (["status"], ["report", "--from", "2024-03-01", "--to", "2024-03-02"],
                 ["history", "upload", "--region", "440100", "--year", "2023"]):  # fmt: skip
        res = hipgate("exchange", *args, "-i", str(inventory))
        assert res.returncode == 2, res.stderr
        assert f"{inventory_settings(inventory)}: hipgate.exchange" in res.stderr
        assert "数据交换设置" in res.stderr and "no data-exchange settings" in res.stderr
