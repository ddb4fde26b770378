"""Judging a Linux terminal: each of OS, memory, disk and browser passes, warns below the recommended
value, or fails with what to do."""

from __future__ import annotations

import json
import subprocess
import sys

from hipgate.preflight import terminal as tm

GIB = 1024**3


def raw(**change: object) -> dict:
    base = {
        "os": {"ID": "uos", "ID_LIKE": "debian", "VERSION_ID": "20", "PRETTY_NAME": "UOS Desktop 20"},
        "mem_total_kib": 16 * GIB // 1024,
        "disk_path": "/",
        "disk_free_bytes": 200 * GIB,
        "browsers": [{"name": "chromium", "path": "/usr/bin/chromium", "version": "Chromium 120.0"}],
    }
    return {**base, **change}


def rows(data: dict) -> dict[str, tm.Row]:
    return {r.check: r for r in tm.judge("t01", data)}


def test_good_terminal_passes_everything() -> None:
    got = rows(raw())
    assert set(got) == set(tm.TITLES) and all(r.ok and not r.warning for r in got.values())
    assert "Chromium 120.0" in got["browser"].observed_en


def test_below_recommended_passes_with_a_warning() -> None:
    got = rows(raw(mem_total_kib=4 * GIB // 1024, disk_free_bytes=60 * GIB))
    assert got["ram"].ok and got["ram"].warning and "below the recommended 8.0 GiB" in got["ram"].observed_en
    assert got["disk"].ok and got["disk"].warning


def test_below_minimum_fails_with_the_fix() -> None:
    got = rows(raw(mem_total_kib=1 * GIB // 1024, disk_free_bytes=10 * GIB))
    assert not got["ram"].ok and "add memory" in got["ram"].fix_en
    assert not got["disk"].ok and "50.0 GiB" in got["disk"].fix_en


def test_unsupported_os_and_no_browser_fail() -> None:
    got = rows(raw(os={"ID": "windows-ish", "ID_LIKE": "", "PRETTY_NAME": "Other"}, browsers=[]))
    assert not got["os"].ok and "supported distribution" in got["os"].fix_en
    assert not got["browser"].ok and "Firefox ESR" in got["browser"].fix_en


def test_probe_reads_this_machine() -> None:
    spec = json.dumps(tm.spec())
    res = subprocess.run([sys.executable, "-I", str(tm.PROBE_SOURCE), spec], capture_output=True, text=True, check=True)
    data = json.loads(res.stdout)
    assert data["mem_total_kib"] > 0 and data["disk_free_bytes"] > 0 and data["os"]["ID"]
