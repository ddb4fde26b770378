"""Custody ceremonies: put a new superuser password in force split among custodians, and recover it
with a quorum. The full password exists only in this process, for the length of one ceremony."""

from __future__ import annotations

import contextlib
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
    """New generation: shares stored first, then `current` names it as pending, then the database's
    password changes, then `current` moves to it. Returns the generation id. A failure before the
    password change leaves the previous generation in force; a failure after it leaves the new one
    pending, which status reports and recover uses, so a quorum always rebuilds the password the
    database has."""
    vault.ready(writer)
    previous = vault.current(writer, system)
    in_force = {k: v for k, v in (previous or {}).items() if k != "pending"}
    generation = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
    state = {
        "generation": generation,
        "threshold": threshold,
        "custodians": list(custodians),
        "role": role,
        "set_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    secret = shares.new_secret()
    try:
        parts = shares.split(secret, threshold, len(custodians))
        for custodian, part in zip(custodians, parts, strict=True):
            vault.write_share(writer, system, generation, custodian, part.encode())
        journal.record(journal_path, "shares-stored", system, who, generation=generation, custodians=custodians)
        # Before the database changes: from here on, custody knows the new password may be in force.
        vault.set_current(writer, system, {**in_force, "pending": state})
        try:
            postgres.set_password(superuser, role, shares.password_of(secret))
        except Exception:
            _undo_pending(writer, system, in_force)
            raise
        journal.record(journal_path, "password-set", system, who, generation=generation, role=role)
    finally:
        shares.forget(secret)
    try:
        vault.set_current(writer, system, state)
    except Exception as exc:
        journal.record(journal_path, "pending", system, who, generation=generation, error=type(exc).__name__)
        raise fail(
            system,
            f"数据库口令已更换，但未能把第 {generation} 代标记为生效（{type(exc).__name__}）；该代仍为待定，"
            "custody status 会显示，custody recover 会恢复它。",
            f"the database's password changed but generation {generation} could not be marked in force "
            f"({type(exc).__name__}); it stays pending: custody status shows it and custody recover rebuilds it.",
            "OpenBao 恢复后运行 custody rotate。",
            "run custody rotate once OpenBao answers again.",
            exit_code=4,
        ) from None
    for old in {in_force.get("generation"), ((previous or {}).get("pending") or {}).get("generation")} - {None}:
        vault.burn(writer, system, str(old), f"replaced by {generation}")
    journal.record(journal_path, "in-force", system, who, generation=generation, replaced=in_force.get("generation"))
    return generation


def _undo_pending(writer: hvac.Client, system: str, in_force: dict[str, Any]) -> None:
    """The database refused the change: the previous generation is the one in force (best effort; a
    pending mark left behind only makes recover try the new generation first)."""
    with contextlib.suppress(Exception):
        vault.set_current(writer, system, in_force)


def generation_to_recover(state: dict[str, Any]) -> dict[str, Any]:
    """The pending generation when a ceremony stopped after changing the password, else the one in force."""
    return dict(state.get("pending") or state)


def recover(system: str, custodian_clients: dict[str, hvac.Client], journal_path: Path) -> str:
    """Each logged-in custodian reads their own share (audited by Vault under their identity);
    with a quorum the password is rebuilt in memory and returned to the caller, which must use it
    at once. Custodians cannot write, so the exposed generation is marked burned by the next
    `init` (custody rotate), which must follow; the journal records the recovery meanwhile."""
    if not custodian_clients:
        raise _quorum(system, 0, 0)
    first = next(iter(custodian_clients.values()))
    current = vault.current(first, system)
    state = generation_to_recover(current) if current else None
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
    return {
        "system": system,
        "in_custody": bool(state and (state.get("generation") or state.get("pending"))),
        **(state or {}),
    }
