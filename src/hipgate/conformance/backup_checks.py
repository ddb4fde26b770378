"""Backup checks (GB/T 22239 8.1.4.9-a local backup and restore, 8.1.4.9-b off-site real-time
backup): every repository holds a recent full backup with retention and timers in place, the
newest restore test on each site passed recently, and WAL reaches every repository as it is made."""

from __future__ import annotations

import json
from typing import Any

from hipgate.backups import SITE_USER
from hipgate.conformance.checks import Context, Outcome, Probe, scoped
from hipgate.conformance.database_checks import _psql

TIMERS = ("hipgate-backup-full", "hipgate-backup-diff", "hipgate-backup-freshness")
RESTORE_TEST_MAX_DAYS = 8  # weekly by default, with a day's slack


def _status(p: Probe, user: str) -> dict[str, Any]:
    rc, out = p.run(f"runuser -u {user} -- /usr/local/bin/hipgate-backup status")
    try:
        return json.loads(out) if rc == 0 else {}
    except json.JSONDecodeError:
        return {}


def _run_user(ctx: Context) -> str:
    return "postgres" if ctx.host in ctx.inventory.group_hosts("database") else SITE_USER


@scoped("database", "backup_sites", context=True)
def backup_repository_current(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """This host's repository has a full backup newer than the policy allows, keeps a set number of
    full backups, is encrypted, and its backup timers are enabled."""
    p = Probe(host)
    st = _status(p, _run_user(ctx))
    timers = list(TIMERS) + (
        ["hipgate-backup-restore-test"] if ctx.host in ctx.inventory.group_hosts("backup_sites") else []
    )
    _, enabled = p.run("systemctl is-enabled " + " ".join(f"{t}.timer" for t in timers))
    states = (enabled.splitlines() + [""] * len(timers))[: len(timers)]
    off = [t for t, state in zip(timers, states, strict=True) if state.strip() != "enabled"]
    repo = st.get("repo", "?")
    _, retention = p.run(f"grep -E '^repo{repo}-retention-full=' /etc/pgbackrest.conf")
    age, limit = (
        st.get("newest_full_age_hours"),
        float(params.get("full_max_age_hours", st.get("full_max_age_hours", 26))),
    )
    cipher = (st.get("info") or {}).get("cipher", "none")
    ok = bool(st) and age is not None and age <= limit and not off and bool(retention.strip()) and cipher != "none"
    shown = "无 / none" if age is None else f"{age:.1f} h"
    return p.outcome(
        ok,
        f"repo{repo}：最新全量备份 {shown}（上限 {limit:g} 小时）；加密 {cipher}；"
        f"保留策略 {retention.strip() or '未设置'}；"
        f"未启用的定时任务：{', '.join(off) or '无'}",
        f"repo{repo}: newest full backup {shown} old (limit {limit:g} h); cipher {cipher}; retention "
        f"{retention.strip() or 'not set'}; timers not enabled: {', '.join(off) or 'none'}",
        {"repo": repo, "newest_full_age_hours": age},
    )


@scoped("backup_sites")
def backup_restore_tested(host: Any, params: dict[str, Any]) -> Outcome:
    """The newest automated restore test on this site restored, started, queried and verified every
    page checksum, and is recent."""
    p = Probe(host)
    st = _status(p, SITE_USER)
    last = st.get("last_restore_test") or {}
    max_days = float(params.get("max_days", RESTORE_TEST_MAX_DAYS))
    _, age = p.run(f"echo $(( $(date +%s) - $(date -d {last.get('finished', '1970-01-01T00:00:00Z')} +%s) ))")
    days = int(age or 0) / 86400
    ok = bool(last.get("ok")) and bool(last.get("page_checksums_ok")) and days <= max_days
    tables = len(last.get("tables") or {})
    return p.outcome(
        ok,
        f"最近一次恢复演练：{last.get('finished', '无')}，结果 {'通过' if last.get('ok') else '未通过'}"
        f"（{'、'.join(last.get('steps') or []) or '无步骤'}；{tables} 张表已核对），"
        f"距今 {days:.1f} 天（上限 {max_days:g} 天）",
        f"newest restore test: {last.get('finished', 'none')}, {'passed' if last.get('ok') else 'not passed'} "
        f"({', '.join(last.get('steps') or []) or 'no steps'}; {tables} tables fingerprinted), {days:.1f} days ago "
        f"(limit {max_days:g})",
        {"last_restore_test": {k: last.get(k) for k in ("finished", "ok", "repo", "label", "seconds", "error")}},
    )


@scoped("database", context=True)
def backup_wal_archiving(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """Every WAL segment goes to every repository as it is made: archiving on through pgBackRest, the
    archiver not failing, and `pgbackrest check` (which switches to a new segment and waits until the
    local and every off-site repository hold it) passing."""
    p = Probe(host)
    _, settings = _psql(
        p, "select name || '=' || setting from pg_settings where name in ('archive_mode', 'archive_command')"
    )
    conf = dict(line.split("=", 1) for line in settings.splitlines() if "=" in line)
    _, archiver = _psql(
        p,
        "select coalesce(last_archived_wal, '') || ' ' || "
        "(coalesce(last_failed_time, 'epoch') <= coalesce(last_archived_time, 'epoch'))::text from pg_stat_archiver",
    )
    last_wal, _, healthy = archiver.partition(" ")
    stanza = params.get("stanza") or ctx.host
    timeout = int(params.get("archive_timeout", 30))
    rc, _ = p.run(f"runuser -u postgres -- pgbackrest --stanza={stanza} --archive-timeout={timeout} check")
    repos = 1 + len(ctx.inventory.group_hosts("backup_sites"))
    ok = (
        conf.get("archive_mode") == "on"
        and "pgbackrest" in conf.get("archive_command", "")
        and "archive-push" in conf.get("archive_command", "")
        and healthy == "true"
        and bool(last_wal)
        and rc == 0
    )
    return p.outcome(
        ok,
        f"archive_mode={conf.get('archive_mode')}；archive_command={conf.get('archive_command')}；"
        f"归档进程{'正常' if healthy == 'true' else '最近一次失败'}；最后归档 {last_wal or '无'}；"
        f"新 WAL {'已到达' if rc == 0 else f'未能在 {timeout} 秒内到达'}全部 {repos} 个仓库（pgbackrest check）",
        f"archive_mode={conf.get('archive_mode')}; archive_command={conf.get('archive_command')}; archiver "
        f"{'healthy' if healthy == 'true' else 'failed last'}; last archived {last_wal or 'none'}; a new WAL segment "
        f"{'reached all' if rc == 0 else 'did not reach all'} {repos} repositories"
        f"{'' if rc == 0 else f' within {timeout} s'} (pgbackrest check)",
        {"last_archived_wal": last_wal, "repositories": repos},
    )
