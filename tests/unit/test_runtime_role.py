"""The hosts' software: the pinned requirements follow requirements.lock, the wheelhouse is reproducible, and
the exchange database's schema script applies once, owned by the application's group role."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from hipgate import wheelhouse
from hipgate.exchange.dataset import load_dataset
from hipgate.exchange.schema import schema_script
from pg_cluster import PG_BIN, cluster

ROOT = Path(__file__).resolve().parents[2]
HOST_REQUIREMENTS = ROOT / "roles" / "hipgate_runtime" / "files" / "requirements.txt"


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
    return pins


def test_host_requirements_are_pinned_as_in_the_lock() -> None:
    host, lock = _pins(HOST_REQUIREMENTS.read_text()), _pins((ROOT / "requirements.lock").read_text())
    assert {"openapi-core", "psycopg", "psycopg-binary", "gmssl-pyx", "cryptography", "pyyaml"} <= set(host)
    assert {name: host[name] for name in host} == {name: lock.get(name) for name in host}
    # Nothing unpinned slipped in (a line pip would resolve against an index).
    lines = [ln for ln in HOST_REQUIREMENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(lines) == len(host)


def test_bad_python_or_machine_is_refused(tmp_path: Path) -> None:
    with pytest.raises(wheelhouse.WheelhouseError, match="python"):
        wheelhouse.build(HOST_REQUIREMENTS, tmp_path, "3.11; rm -rf /", "x86_64")
    with pytest.raises(wheelhouse.WheelhouseError, match="machine"):
        wheelhouse.build(HOST_REQUIREMENTS, tmp_path, "3.11", "x86_64 --index-url http://evil")


def test_hipgate_wheel_is_reproducible_and_cached(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = wheelhouse.build_hipgate(ROOT, tmp_path / "a")
    second = wheelhouse.build_hipgate(ROOT, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    # Same sources: not rebuilt (the stamp names the sources it was built from).
    stamp = (tmp_path / "a" / ".hipgate-sources.sha256").read_text().split()
    assert stamp == [first.name, wheelhouse.sources_digest(ROOT)]
    mtime = first.stat().st_mtime_ns
    assert wheelhouse.build_hipgate(ROOT, tmp_path / "a") == first and first.stat().st_mtime_ns == mtime


def test_sources_digest_follows_the_sources(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "README.md"):
        (tmp_path / name).write_text(name)
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "a.py").write_text("x = 1\n")
    before = wheelhouse.sources_digest(tmp_path)
    (tmp_path / "src" / "pkg" / "__pycache__").mkdir()
    (tmp_path / "src" / "pkg" / "__pycache__" / "a.pyc").write_bytes(b"junk")
    assert wheelhouse.sources_digest(tmp_path) == before
    (tmp_path / "src" / "pkg" / "a.py").write_text("x = 2\n")
    assert wheelhouse.sources_digest(tmp_path) != before


def test_schema_script_refuses_names_that_are_not_plain() -> None:
    ds = load_dataset()
    with pytest.raises(ValueError):
        schema_script(ds, "exchange", 'app"; drop table x; --')
    with pytest.raises(ValueError):
        schema_script(ds, "Exchange;", "exchange_app")


def _ready(port: int) -> bool:
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def test_schema_script_applies_once_owned_by_the_group_role(tmp_path: Path) -> None:
    script, digest = schema_script(load_dataset(), "exchange", "exchange_app")
    assert digest in script.splitlines()[0]
    path = tmp_path / "exchange.sql"
    path.write_text(script)
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    with cluster("schema", _ready) as port:
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True) as c:
            c.execute("CREATE ROLE exchange_app NOLOGIN")
            c.execute("CREATE DATABASE exchange OWNER exchange_app")
        psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "exchange", "-X",
                "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(path)]  # fmt: skip
        for _ in range(2):  # idempotent: the same script again changes nothing
            res = subprocess.run(psql, capture_output=True, text=True, check=False)
            assert res.returncode == 0, res.stderr
        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="exchange") as c:
            owners = {r[0] for r in c.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'exchange'")}
            assert owners == {"exchange_app"}
            applied = [r[0] for r in c.execute("SELECT sha256 FROM exchange.hipgate_schema_applied")]
            assert applied == [digest]
            tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'exchange'")}
            assert {"setl", "setl_item", "hipgate_change", "hipgate_outbox", "fee_check_form"} <= tables


def test_the_roles_install_where_hipgate_exchange_looks() -> None:
    """`hipgate exchange` builds its ssh commands from hipgate.exchange.deployed; the roles' defaults agree."""
    import yaml

    from hipgate.exchange import deployed

    def defaults(role: str) -> dict:
        return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())

    runtime, mw = defaults("hipgate_runtime"), defaults("exchange_middleware")
    assert runtime["hipgate_runtime_venv"] + "/bin/python" == deployed.VENV_PYTHON
    assert mw["exchange_middleware_account"] == deployed.SERVICE_USER
    assert mw["exchange_middleware_config_dir"] + "/middleware.json" == deployed.CONFIG
    assert mw["exchange_middleware_metrics_dir"] + "/hipgate-exchange.prom" == deployed.METRICS_TEXTFILE
    unit = (ROOT / "roles" / "exchange_middleware" / "templates" / "hipgate-exchange-metrics.service.j2").read_text()
    assert "{{ exchange_middleware_metrics_dir }}/hipgate-exchange.prom" in unit
