"""Custody ceremonies: put a new superuser password in force split among custodians, and recover it
with a quorum. The full password exists only in this process, for the length of one ceremony."""

from __future__ import annotations

import datetime
import secrets
from pathlib import Path
from typing import Any

import hvac

from hipgate.custody import journal, postgres, shares, vault
from hipgate.errors import fail


def init(
    system: str,
    writer: hvac.Client,
    custodians: list[str],
    threshold: int,
    superuser: postgres.Superuser,
    role: str,
    journal_path: Path,
    who: str,
) -> str:
    """New generation: shares stored first, then the database's password, then `current` moves.
    Returns the generation id. If any step fails, the previous password and shares stay in force."""
    vault.ready(writer)
    previous = vault.current(writer, system)
    generation = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    secret = shares.new_secret()
    try:
        parts = shares.split(secret, threshold, len(custodians))
        for custodian, part in zip(custodians, parts, strict=True):
            vault.write_share(writer, system, generation, custodian, part.encode())
        journal.record(journal_path, "shares-stored", system, who, generation=generation, custodians=custodians)
        postgres.set_password(superuser, role, shares.password_of(secret))
        journal.record(journal_path, "password-set", system, who, generation=generation, role=role)
    finally:
        shares.forget(secret)
    state = {
        "generation": generation,
        "threshold": threshold,
        "custodians": list(custodians),
        "role": role,
        "set_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    vault.set_current(writer, system, state)
    if previous:
        vault.burn(writer, system, previous["generation"], f"replaced by {generation}")
    journal.record(
        journal_path, "in-force", system, who, generation=generation, replaced=(previous or {}).get("generation")
    )
    return generation


def recover(system: str, custodian_clients: dict[str, hvac.Client], journal_path: Path) -> str:
    """Each logged-in custodian reads their own share (audited by Vault under their identity);
    with a quorum the password is rebuilt in memory and returned to the caller, which must use it
    at once. Custodians cannot write, so the exposed generation is marked burned by the next
    `init` (custody rotate), which must follow; the journal records the recovery meanwhile."""
    if not custodian_clients:
        raise _quorum(system, 0, 0)
    first = next(iter(custodian_clients.values()))
    state = vault.current(first, system)
    if state is None:
        raise fail(
            system,
            "该系统尚无分段保管的口令。",
            "this system has no password in split custody.",
            "先运行 hipgate custody init。",
            "run hipgate custody init first.",
            exit_code=4,
        )
    if len(custodian_clients) < state["threshold"]:
        raise _quorum(system, len(custodian_clients), state["threshold"])
    parts = []
    for custodian, client in custodian_clients.items():
        parts.append(shares.Share.decode(vault.read_share(client, system, state["generation"], custodian)))
        journal.record(journal_path, "share-read", system, custodian, generation=state["generation"])
    secret = shares.combine(parts)
    try:
        password = shares.password_of(secret)
    finally:
        shares.forget(secret)
    journal.record(journal_path, "recovered", system, "+".join(custodian_clients), generation=state["generation"])
    return password


def _quorum(system: str, have: int, need: int) -> Exception:
    return fail(
        system,
        f"保管人不足：{have} 人，需要 {need} 人。",
        f"not enough custodians: {have}, {need} needed.",
        "召集足够的保管人，各自输入本人口令。",
        "bring together enough custodians, each typing their own password.",
        exit_code=4,
    )


def status(reader: hvac.Client, system: str) -> dict[str, Any]:
    state = vault.current(reader, system)
    return {"system": system, "in_custody": state is not None, **(state or {})}
