"""Property: whatever an inventory holds, loading it returns an Inventory or a UserError, never a traceback."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EXAMPLE
from hipgate.errors import UserError
from hipgate.inventory.load import load_inventory

HOSTS = yaml.safe_load((EXAMPLE / "hosts.yml").read_text(encoding="utf-8"))
SETTINGS = yaml.safe_load((EXAMPLE / "group_vars" / "all" / "hipgate.yml").read_text(encoding="utf-8"))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["10.86.1.20", "10.0.0.0/8", "10.0.0.1/8", "", "eth0"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths(v, (*prefix, i))
    return found


def mutate(doc: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last]["unexpected_key"] = value
    else:
        parent[last] = value
    return doc


@st.composite
def broken_document(draw: st.DrawFn, original: Any) -> Any:
    doc = yaml.safe_load(yaml.safe_dump(original))  # deep copy
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        doc = mutate(doc, path, draw(st.sampled_from(["delete", "replace", "add"])), draw(values))
    return doc


raw_yaml = st.one_of(
    st.text(max_size=200),
    st.sampled_from(
        [
            "? [a, b]\n: c\n",
            "a: 1\na: 2\n",
            "!!python/object:os.system {}\n",
            "{{ x }}\n",
            "all: &a\n  children: *a\n",
            "\t- bad indent\n",
            "\x00",
            "all:\n  children: [1, 2]\n",
        ]
    ),
)


def assert_clean_outcome(inv_dir: Path) -> None:
    try:
        load_inventory(inv_dir)
    except UserError as exc:
        assert exc.exit_code == 2
        assert exc.problems
        for p in exc.problems:
            assert str(inv_dir) in p.where
            assert p.zh and p.en and p.fix_zh and p.fix_en


def write_inventory(hosts_text: str, settings_text: str) -> Path:
    inv_dir = Path(tempfile.mkdtemp(prefix="hipgate-fuzz-"))
    shutil.copytree(EXAMPLE, inv_dir, dirs_exist_ok=True)
    (inv_dir / "hosts.yml").write_text(hosts_text, encoding="utf-8", errors="surrogatepass")
    (inv_dir / "group_vars" / "all" / "hipgate.yml").write_text(settings_text, encoding="utf-8", errors="surrogatepass")
    return inv_dir


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(hosts=broken_document(HOSTS), hip=broken_document(SETTINGS))
def test_mutated_documents_never_crash(hosts: Any, hip: Any) -> None:
    inv_dir = write_inventory(yaml.safe_dump(hosts, allow_unicode=True), yaml.safe_dump(hip, allow_unicode=True))
    try:
        assert_clean_outcome(inv_dir)
    finally:
        shutil.rmtree(inv_dir)


@FUZZ
@given(text=raw_yaml, which=st.sampled_from(["hosts", "settings"]))
def test_arbitrary_text_never_crashes(text: str, which: str) -> None:
    good_hosts = (EXAMPLE / "hosts.yml").read_text(encoding="utf-8")
    good_settings = (EXAMPLE / "group_vars" / "all" / "hipgate.yml").read_text(encoding="utf-8")
    inv_dir = write_inventory(text if which == "hosts" else good_hosts, text if which == "settings" else good_settings)
    try:
        assert_clean_outcome(inv_dir)
    finally:
        shutil.rmtree(inv_dir)


var_files = st.sampled_from(
    [
        "host_vars/db01.yml",
        "host_vars/fe01/x.yml",
        "group_vars/database.yml",
        "group_vars/all/extra.yml",
        "group_vars/all.yml",
    ]
)
override_docs = st.one_of(
    values,
    st.fixed_dictionaries({"hipgate": values}),
    st.dictionaries(st.sampled_from(["ansible_user", "ansible_host", "ansible_port", "hipgate", "other"]), values),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rel=var_files, doc=override_docs, raw=st.one_of(st.none(), raw_yaml))
def test_var_files_never_crash_and_never_carry_hipgate(rel: str, doc: Any, raw: str | None) -> None:
    """Whatever host_vars/ or group_vars/ hold, loading ends cleanly; a `hipgate` key there is refused."""
    good_hosts = (EXAMPLE / "hosts.yml").read_text(encoding="utf-8")
    good_settings = (EXAMPLE / "group_vars" / "all" / "hipgate.yml").read_text(encoding="utf-8")
    inv_dir = write_inventory(good_hosts, good_settings)
    try:
        target = inv_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = raw if raw is not None else yaml.safe_dump(doc, allow_unicode=True)
        target.write_text(text, encoding="utf-8", errors="surrogatepass")
        assert_clean_outcome(inv_dir)
        if isinstance(doc, dict) and "hipgate" in doc and raw is None:
            try:
                load_inventory(inv_dir)
            except UserError as exc:
                assert any(str(target) in p.where for p in exc.problems)
            else:
                raise AssertionError(f"hipgate override in {rel} was accepted")
    finally:
        shutil.rmtree(inv_dir)
