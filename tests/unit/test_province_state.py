"""State is kept per declared province (issue 16, item 5): `hipgate.province_id` is required with a
strict format, HIPGATE_STATE_DIR moves the state, the roles' defaults agree with Python, and an
existing key file is never overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from test_inventory_errors import only_problem, settings

from helpers import ROOT, edit_yaml
from hipgate.custody import server
from hipgate.errors import UserError
from hipgate.inventory.load import load_inventory
from hipgate.paths import province_state


@pytest.mark.parametrize("bad", [None, "", "Prod", "a", "prod\n", "../etc", "prod/x", "-prod", "p" * 33, 7])
def test_province_id_is_required_and_strict(inventory: Path, bad: object) -> None:
    def change(d: dict) -> None:
        if bad is None:
            del d["hipgate"]["province_id"]
        else:
            d["hipgate"]["province_id"] = bad

    edit_yaml(settings(inventory), change)
    p = only_problem(inventory, settings(inventory), "province_id")
    assert "province id" in p.fix_en and "省份标识" in p.fix_zh


def test_state_is_keyed_by_province_under_the_state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HIPGATE_STATE_DIR", raising=False)
    assert province_state("prod-a", "custody") == Path.home() / ".hipgate" / "prod-a" / "custody"
    monkeypatch.setenv("HIPGATE_STATE_DIR", str(tmp_path))
    assert province_state("prod-b", "pki") == tmp_path / "prod-b" / "pki"


def test_two_inventories_named_alike_do_not_share_state(inventory: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / inventory.name
    other.parent.mkdir()
    shutil.copytree(inventory, other)
    edit_yaml(settings(other), lambda d: d["hipgate"].update(province_id="other-province"))
    ids = {load_inventory(p).settings["province_id"] for p in (inventory, other)}
    assert len({province_state(i, "custody") for i in ids}) == 2


def test_roles_default_to_the_same_place_as_python() -> None:
    for role, var, kind in (("vault", "vault_key_dir", "custody"), ("pki", "pki_dir", "pki")):
        text = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())[var]
        assert "HIPGATE_STATE_DIR" in text and "hipgate.province_id" in text and f"/{kind}'" in text, text
        assert "inventory_dir" not in text


def test_an_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    key = tmp_path / "custodian-a.unseal-key"
    key.write_text("the first province's key\n")
    with pytest.raises(UserError) as caught:
        server._write_private(key, "another key\n")
    assert str(key) in str(caught.value) and "overwrite" in str(caught.value) and "覆盖" in str(caught.value)
    assert key.read_text() == "the first province's key\n"
