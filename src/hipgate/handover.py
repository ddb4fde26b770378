"""The handover gate: a system is handed over only when its backups can bring it back.

Each condition is checked live on the repository hosts and in OpenBao, never taken from a cached
state: a full backup newer than the policy's limit in at least two off-site repositories, every
repository verifies, the newest restore test passed, the backup log of each repository's newest full
backup is at every site with the same hash, and the custody quorum is reachable. When all hold, a
report (JSON, and HTML showing the JSON's SHA-256) is written for both parties to keep."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hipgate import backups
from hipgate.report.write import template

MIN_OFFSITE_COPIES = 2  # seed requirement: off-site, in several places held by both parties


@dataclass
class Condition:
    id: str
    title_zh: str
    title_en: str
    ok: bool
    zh: str
    en: str
    evidence: dict[str, Any] = field(default_factory=dict)


def _age(st: dict[str, Any]) -> float | None:
    age = st.get("newest_full_age_hours")
    return None if age is None else float(age)


def offsite_full_backups(repos: list[backups.Repo], st: dict[str, dict[str, Any]], limit: float) -> Condition:
    rows, fresh = [], []
    for r in repos:
        if not r.offsite:
            continue
        s, full = st[r.host], backups.newest_full(st[r.host])
        age = _age(s)
        rows.append(
            {
                "repo": r.index,
                "host": r.host,
                "label": full and full["label"],
                "age_hours": age,
                "error": s.get("error"),
            }
        )
        if age is not None and age <= limit:
            fresh.append(f"repo{r.index}@{r.host}")
    ok = len(fresh) >= MIN_OFFSITE_COPIES
    return Condition(
        "offsite_full_backups",
        f"至少 {MIN_OFFSITE_COPIES} 个异地仓库有 {limit:g} 小时内的全量备份",
        f"a full backup newer than {limit:g} h in at least {MIN_OFFSITE_COPIES} off-site repositories",
        ok,
        f"符合的异地仓库：{', '.join(fresh) or '无'}（需 {MIN_OFFSITE_COPIES} 个）",
        f"off-site repositories that qualify: {', '.join(fresh) or 'none'} (need {MIN_OFFSITE_COPIES})",
        {"repositories": rows},
    )


def every_repository_verifies(repos: list[backups.Repo], verified: dict[str, dict[str, Any]]) -> Condition:
    bad = [f"repo{r.index}@{r.host}" for r in repos if not verified[r.host].get("ok")]
    return Condition(
        "every_repository_verifies",
        "每个仓库通过 pgbackrest verify",
        "every repository passes pgbackrest verify",
        not bad,
        f"未通过：{', '.join(bad) or '无'}",
        f"failed: {', '.join(bad) or 'none'}",
        {
            r.host: {"repo": r.index, "ok": verified[r.host].get("ok"), "output": verified[r.host].get("output", "")}
            for r in repos
        },
    )


def restore_test_passed(repos: list[backups.Repo], st: dict[str, dict[str, Any]]) -> Condition:
    tests = [st[r.host]["last_restore_test"] for r in repos if r.offsite and st[r.host].get("last_restore_test")]
    last = max(tests, key=lambda t: t.get("finished", "")) if tests else None
    # A record that is malformed or not root's (a forgery) fails the gate, with its file named.
    bad = backups.malformed_lines({r.host: st[r.host] for r in repos if r.offsite}, ("restore-test", "status"))
    ok = bool(last and last.get("ok") is True and last.get("page_checksums_ok") is True) and not bad
    where = f"repo{last.get('repo')}@{last.get('host')} {last.get('finished')}" if last else "无 / none"
    tables = len((last or {}).get("tables") or {})
    return Condition(
        "restore_test_passed",
        "最近一次恢复演练通过",
        "the newest restore test passed",
        ok,
        f"最近一次：{where}，{'通过' if ok else '未通过'}；已核对 {tables} 张表"
        + (f"；无效的恢复演练记录：{'；'.join(bad)}" if bad else ""),
        f"newest: {where}, {'passed' if ok else 'not passed'}; {tables} tables checked"
        + (f"; invalid restore-test records: {'; '.join(bad)}" if bad else ""),
        {"restore_test": last or {}, "malformed": bad},
    )


def backup_logs_everywhere(repos: list[backups.Repo], st: dict[str, dict[str, Any]], system: str) -> Condition:
    sites = [r for r in repos if r.offsite]
    rows, missing = [], []
    # A backup log that is not one hipgate-backup wrote is never counted; it fails the gate, named.
    missing += [f"无效的备份日志 / invalid backup log {m}" for m in backups.malformed_lines(st, ("backup-log",))]
    for r in repos:
        full = backups.newest_full(st[r.host])
        if not full:
            missing.append(f"repo{r.index}: 无全量备份 / no full backup")
            continue
        name = f"{system}-repo{r.index}-{full['label']}.json"
        own = {lg["name"]: lg["sha256"] for lg in st[r.host].get("logs", [])}.get(name)
        row: dict[str, Any] = {"log": name, "sha256": own, "at": {}}
        for s in sites:
            held = {lg["name"]: lg["sha256"] for lg in st[s.host].get("logs", [])}.get(name)
            row["at"][s.host] = held
            if own is None or held != own:
                missing.append(f"{name} @ {s.host}: {'缺失 / missing' if held is None else '哈希不同 / hash differs'}")
        rows.append(row)
    return Condition(
        "backup_logs_everywhere",
        "每个仓库最新全量备份的备份日志存于每个异地站点且哈希一致",
        "the backup log of each repository's newest full backup is at every site with the same hash",
        not missing,
        "问题：" + ("；".join(missing) or "无"),
        "problems: " + ("; ".join(missing) or "none"),
        {"logs": rows},
    )


def rotate_within_hours() -> float:
    """The policy's limit for rotating a recovered generation (the custody_recovered_rotated check's)."""
    from hipgate.custody.exposure import DEFAULT_ROTATE_WITHIN_HOURS
    from hipgate.policy.load import load_policy

    for control in load_policy().controls:
        if "custody_recovered_rotated" in control.checks:
            return float(control.params().get("recovered_rotate_within_hours", DEFAULT_ROTATE_WITHIN_HOURS))
    return DEFAULT_ROTATE_WITHIN_HOURS


def custody_quorum(inv: Any, system: str, token: str | None, audit: list[str] | None = None) -> Condition:
    """`audit`: the vault host's share events (remote.audit_share_events); read from the host when None."""
    from hipgate.custody import ceremony, exposure, remote, vault
    from hipgate.errors import UserError

    title = ("保管人法定人数可达", "the custody quorum is reachable")
    if not token:
        return Condition(
            "custody_quorum", *title, False, "没有 OpenBao 令牌，无法确认。", "no OpenBao token to check with."
        )
    addr, ca = vault.address(inv)
    try:
        client = vault.connect(addr, token, ca)
        state = ceremony.status(client, system)
        lines = remote.audit_share_events(inv) if audit is None else audit
    except UserError as exc:
        p = exc.problems[0]
        return Condition("custody_quorum", *title, False, p.zh, p.en, {"addr": addr})
    declared = [c["id"] for c in inv.settings.get("custodians") or []]
    holders = list(state.get("custodians") or [])
    need = int(state.get("threshold") or 0)
    present = [c for c in holders if c in declared]
    # A first password was made by whoever ran `custody setup`: until replaced, that person may hold it.
    kept = vault.first_password_kept(client, declared)
    pending = (state.get("pending") or {}).get("generation")
    within = rotate_within_hours()
    late = [x for x in exposure.unrotated(exposure.events(lines), max(need, 2), within) if x["system"] == system]
    ok = bool(state["in_custody"]) and need >= 2 and len(present) >= need and not kept and not pending and not late
    zh_extra = (f"；从未更换初始口令：{', '.join(kept)}" if kept else "") + (f"；待定代次 {pending}" if pending else "")
    en_extra = (f"; first password never changed: {', '.join(kept)}" if kept else "") + (
        f"; generation {pending} pending (run custody rotate)" if pending else ""
    )
    if late:
        names = ", ".join(f"{x['generation']} ({x['hours']} h)" for x in late)
        zh_extra += f"；恢复后超过 {within:g} 小时未轮换：{names}"
        en_extra += f"; recovered and not rotated within {within:g} h: {names} (run custody rotate)"
    return Condition(
        "custody_quorum",
        *title,
        ok,
        f"OpenBao 已解封；第 {state.get('generation', '-')} 代口令由 {len(present)} 名在册保管人分段持有，门限 {need}"
        + zh_extra,
        f"OpenBao unsealed; generation {state.get('generation', '-')} held by {len(present)} declared custodians, "
        f"threshold {need}" + en_extra,
        {
            "addr": addr,
            "custodians": holders,
            "threshold": need,
            "set_at": state.get("set_at"),
            "first_password_kept": kept,
            "pending": pending,
            "recovered_not_rotated": late,
        },
    )


def evaluate(inv: Any, system: str, token: str | None) -> list[Condition]:
    repos = backups.repositories(inv, system)
    limit = float((inv.settings.get("backup") or {}).get("full_max_age_hours", 26))
    st = {r.host: backups.status(inv, r) for r in repos}
    verified = {r.host: backups.verify(inv, r) for r in repos}
    return [
        offsite_full_backups(repos, st, limit),
        every_repository_verifies(repos, verified),
        restore_test_passed(repos, st),
        backup_logs_everywhere(repos, st, system),
        custody_quorum(inv, system, token),
    ]


def write_report(conditions: list[Condition], inv: Any, system: str, out: Path) -> tuple[Path, str]:
    """JSON (the record) and HTML (for people, showing the JSON's SHA-256); returns the JSON path and hash."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc = {
        "kind": "hipgate-handover",
        "system": system,
        "province": inv.settings.get("province", ""),
        "checked_at": now,
        "passed": all(c.ok for c in conditions),
        "conditions": [asdict(c) for c in conditions],
    }
    data = (json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()
    digest = hashlib.sha256(data).hexdigest()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"handover-{system}-{now.replace(':', '')}"
    path = out / f"{stem}.json"
    path.write_bytes(data)
    (out / f"{stem}.json.sha256").write_text(f"{digest}  {path.name}\n", encoding="utf-8")
    html = template("handover.html.j2").render(doc=doc, sha256=digest, json_name=path.name)
    (out / f"{stem}.html").write_text(html, encoding="utf-8")
    return path, digest
