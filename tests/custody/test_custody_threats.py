"""Custody against the attacks of issue 16, on a real OpenBao and PostgreSQL: a lone operator's
writer token cannot alter or remove a share in force (any KV v2 path), and a failure between the
database's password change and `current` moving leaves a password a quorum still recovers."""

from __future__ import annotations

from pathlib import Path

import hvac
import pytest
from hvac import exceptions as hv

from helpers import CUSTODIANS, pg_login
from hipgate.custody import ceremony, postgres, vault


def superuser(pg: dict) -> postgres.Superuser:
    return postgres.Superuser(pg["superuser"], "test cluster")


def quorum(bao: dict, names: tuple[str, ...] = ("custodian-a", "custodian-b")) -> dict[str, hvac.Client]:
    return {c: vault.login(bao["addr"], c, bao["passwords"][c]) for c in names}


def test_writer_token_cannot_alter_or_delete_a_share_in_force(bao: dict, pg: dict, tmp_path: Path) -> None:
    log = tmp_path / "journal.jsonl"
    generation = ceremony.init("db01", bao["writer"], CUSTODIANS, 2, superuser(pg), "postgres", log, "operator-1")
    writer: hvac.Client = bao["writer"]
    kv = writer.secrets.kv.v2
    path = vault.share_path("db01", generation, "custodian-a")
    m = vault.KV_MOUNT
    # What the token may do on a share in force, as OpenBao itself computes it: create, nothing else.
    caps = writer.sys.get_capabilities(paths=[f"{m}/data/{path}", f"{m}/metadata/{path}", f"{m}/destroy/{path}"])
    assert caps["data"][f"{m}/data/{path}"] == ["create"], caps
    assert caps["data"][f"{m}/metadata/{path}"] == ["deny"] and caps["data"][f"{m}/destroy/{path}"] == ["deny"]
    attacks = {
        "overwrite": lambda: kv.create_or_update_secret(path=path, secret={"share": "1:00"}, mount_point=m),
        "overwrite cas=0": lambda: kv.create_or_update_secret(
            path=path, secret={"share": "1:00"}, cas=0, mount_point=m
        ),
        "overwrite cas=1": lambda: kv.create_or_update_secret(
            path=path, secret={"share": "1:00"}, cas=1, mount_point=m
        ),
        "patch": lambda: kv.patch(path=path, secret={"share": "1:00"}, mount_point=m),
        "delete latest": lambda: kv.delete_latest_version_of_secret(path=path, mount_point=m),
        "delete v1": lambda: kv.delete_secret_versions(path=path, versions=[1], mount_point=m),
        "destroy v1": lambda: kv.destroy_secret_versions(path=path, versions=[1], mount_point=m),
        "delete metadata": lambda: kv.delete_metadata_and_all_versions(path=path, mount_point=m),
        "expire versions": lambda: kv.update_metadata(path=path, delete_version_after="1s", mount_point=m),
        "keep no versions": lambda: kv.update_metadata(path=path, max_versions=1, mount_point=m),
        "mount config": lambda: kv.configure(max_versions=1, delete_version_after="1s", mount_point=m),
        "raw delete": lambda: writer.delete(f"{m}/data/{path}"),
    }
    for name, attack in attacks.items():
        with pytest.raises((hv.Forbidden, hv.InvalidRequest)):
            attack()
            pytest.fail(f"the writer token could: {name}")
    # The generation in force is intact: a quorum recovers a password that logs in.
    assert pg_login(pg["port"], ceremony.recover("db01", quorum(bao), log)).returncode == 0
    # And the writer can still put a new generation in force (custody rotate).
    second = ceremony.init("db01", writer, CUSTODIANS, 2, superuser(pg), "postgres", log, "operator-1")
    assert second != generation and ceremony.status(writer, "db01")["generation"] == second
    assert (
        pg_login(pg["port"], ceremony.recover("db01", quorum(bao, ("custodian-b", "custodian-c")), log)).returncode == 0
    )


class RevokesWriterAfterTheChange(postgres.Superuser):
    """The real superuser, and right after the password change the writer's token is revoked: the
    next OpenBao call of the ceremony (moving `current`) fails, as it would on a network cut."""

    def __init__(self, pg: dict, admin: hvac.Client, token: str) -> None:
        super().__init__(pg["superuser"], "test cluster")
        object.__setattr__(self, "revoke", lambda: admin.auth.token.revoke(token))

    def run(self, sql: str) -> str:
        out = super().run(sql)
        if "ALTER ROLE" in sql:
            self.revoke()  # type: ignore[attr-defined]
        return out


def test_failure_after_the_password_changed_leaves_a_password_the_quorum_recovers(
    bao: dict, pg: dict, tmp_path: Path
) -> None:
    log = tmp_path / "journal.jsonl"
    admin: hvac.Client = bao["admin"]
    first = ceremony.init("db01", bao["writer"], CUSTODIANS, 2, superuser(pg), "postgres", log, "operator-1")
    token = admin.auth.token.create(policies=[vault.WRITER_POLICY], ttl="10m")["auth"]["client_token"]
    doomed = hvac.Client(url=bao["addr"], token=token)
    with pytest.raises(Exception) as caught:
        ceremony.init(
            "db01", doomed, CUSTODIANS, 2, RevokesWriterAfterTheChange(pg, admin, token), "postgres", log, "op"
        )
    # The database now has the new password; custody must say so and a quorum must rebuild it.
    state = ceremony.status(bao["writer"], "db01")
    assert state["pending"]["generation"] != first, state
    assert "custody rotate" in str(caught.value)
    password = ceremony.recover("db01", quorum(bao), log)
    assert pg_login(pg["port"], password).returncode == 0
    # custody rotate clears it: a new generation in force, nothing pending.
    third = ceremony.init("db01", bao["writer"], CUSTODIANS, 2, superuser(pg), "postgres", log, "operator-1")
    state = ceremony.status(bao["writer"], "db01")
    assert state["generation"] == third and not state.get("pending")
    assert pg_login(pg["port"], ceremony.recover("db01", quorum(bao), log)).returncode == 0
