"""The CLI as users meet it: exit codes, bilingual errors, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, edit_yaml
from hipgate import cli

HIPGATE = str(Path(sys.executable).parent / "hipgate")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "HIPGATE_DEBUG"}
    return subprocess.run([HIPGATE, *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False)


def test_check_valid_inventory(inventory: Path) -> None:
    res = run("inventory", "check", str(inventory))
    assert res.returncode == 0, res.stderr
    assert "inventory valid" in res.stdout and "backup_sites=2" in res.stdout


def test_check_broken_inventory_exit_2_bilingual_no_traceback(inventory: Path) -> None:
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"]["backup_sites"]["hosts"].pop("backup-site-a"))
    edit_yaml(
        inventory / "group_vars" / "all" / "hipgate.yml",
        lambda d: d["hipgate"]["network"].update({"platform_cidr": "10.0.0.0/99"}),
    )
    res = run("inventory", "check", str(inventory))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr + res.stdout
    # Cross checks run only on a schema-valid inventory, so the schema problem is what is reported.
    assert f"{inventory}/group_vars/all/hipgate.yml: hipgate.network.platform_cidr" in res.stderr
    assert "错误" in res.stderr and "Error:" in res.stderr and "Fix:" in res.stderr and "修复" in res.stderr


def test_check_missing_path() -> None:
    res = run("inventory", "check", "/nonexistent/inventory")
    assert res.returncode == 2
    assert res.stderr.startswith("/nonexistent/inventory\n")
    assert "file does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_deploy_rejects_bad_inventory_before_running_ansible(inventory: Path) -> None:
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"].pop("vault"))
    res = run("deploy", "-i", str(inventory))
    assert res.returncode == 2
    assert "all.children.vault" in res.stderr
    assert "PLAY" not in res.stdout


def test_lab_needs_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # CI runs as root; the interpreter lives where an unprivileged user cannot run it, so the
    # non-root path is exercised in-process.
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for args in (["lab", "up"], ["lab", "down"]):
        monkeypatch.setattr(sys, "argv", ["hipgate", *args])
        with pytest.raises(SystemExit) as exited:
            cli.main()
        assert exited.value.code == 2
        errtext = capsys.readouterr().err
        assert "root" in errtext and "sudo" in errtext and "需要 root" in errtext


def test_lab_rejects_bad_name() -> None:
    res = run("lab", "up", "--name", "Bad_Name")
    assert res.returncode == 2
    assert "--name" in res.stderr and "Traceback" not in res.stderr


def test_report_needs_one_source(tmp_path: Path) -> None:
    res = run("report")
    assert res.returncode == 2 and "-i INVENTORY or --results" in res.stderr
    res = run("report", "--results", str(tmp_path / "results.json"), "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "results.json" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def test_verify_rejects_bad_inventory(inventory: Path) -> None:
    edit_yaml(inventory / "hosts.yml", lambda d: d["all"]["children"].pop("database"))
    res = run("verify", "-i", str(inventory))
    assert res.returncode == 2 and "all.children.database" in res.stderr


def test_version() -> None:
    res = run("version")
    assert res.returncode == 0 and res.stdout.startswith("hipgate ")
