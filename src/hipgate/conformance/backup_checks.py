"""Backup checks (GB/T 22239 8.1.4.9-a local backup and restore, 8.1.4.9-b off-site real-time
backup): every repository holds a recent full backup with retention and timers in place, the
newest restore test on each site passed recently, and WAL reaches every repository as it is made."""

from __future__ import annotations

import datetime
import json
import re
import shlex
import time
from typing import Any

from hipgate.backups import SITE_USER, finished_at, parse_status
from hipgate.conformance.checks import Context, Outcome, Probe, scoped
from hipgate.conformance.database_checks import _psql

TIMERS = ("hipgate-backup-full", "hipgate-backup-diff", "hipgate-backup-freshness")
RESTORE_TEST_MAX_DAYS = 8  # weekly by default, with a day's slack


STANZA = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _status(p: Probe, user: str, host: str = "") -> dict[str, Any]:
    """The host's `hipgate-backup status`, parsed and validated: nothing it holds ever reaches a shell
    command (it comes from files unprivileged accounts may write), and a malformed field is dropped
    and named in `malformed` (hipgate.backups.parse_status)."""
    rc, out = p.run(f"runuser -u {shlex.quote(user)} -- /usr/local/bin/hipgate-backup status")
    try:
        doc = json.loads(out) if rc == 0 else {}
    except json.JSONDecodeError:
        return {}
    return parse_status(doc, host) if isinstance(doc, dict) and doc else {}


def _retention(conf: str, repo: Any) -> str:
    """repo<N>-retention-full=... from /etc/pgbackrest.conf's text, read in Python."""
    if not isinstance(repo, int) or isinstance(repo, bool):
        return ""
    return next((ln.strip() for ln in conf.splitlines() if ln.startswith(f"repo{repo}-retention-full=")), "")


def _run_user(ctx: Context) -> str:
    return "postgres" if ctx.host in ctx.inventory.group_hosts("database") else SITE_USER


@scoped("database", "backup_sites", context=True)
def backup_repository_current(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """This host's repository has a full backup newer than the policy allows, keeps a set number of
    full backups, is encrypted, and its backup timers are enabled."""
    p = Probe(host)
    st = _status(p, _run_user(ctx), ctx.host)
    timers = list(TIMERS) + (
        ["hipgate-backup-restore-test"] if ctx.host in ctx.inventory.group_hosts("backup_sites") else []
    )
    _, enabled = p.run("systemctl is-enabled " + " ".join(f"{t}.timer" for t in timers))
    states = (enabled.splitlines() + [""] * len(timers))[: len(timers)]
    off = [t for t, state in zip(timers, states, strict=True) if state.strip() != "enabled"]
    repo = st.get("repo") if st.get("repo") is not None else "?"
    # Only the retention lines (the file also holds the repository key, which must not reach evidence);
    # the repository's own line is picked here, in Python.
    _, conf = p.run("grep -E '^repo[0-9]+-retention-full=' /etc/pgbackrest.conf")
    retention = _retention(conf, st.get("repo"))
    age, limit = (
        st.get("newest_full_age_hours"),
        float(params.get("full_max_age_hours", st.get("full_max_age_hours", 26))),
    )
    cipher = str((st.get("info") or {}).get("cipher", "none"))[:40]
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


@scoped("backup_sites", context=True)
def backup_restore_tested(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    """The newest automated restore test on this site restored, started, queried and verified every
    page checksum, and is recent. Records are written by root (hipgate-backup restore-test); a record
    that is malformed or not root's fails the check. The age is computed here, from the validated
    timestamp, never by a shell on the host."""
    p = Probe(host)
    st = _status(p, SITE_USER, ctx.host)
    last = st.get("last_restore_test") or {}
    bad = [m for m in st.get("malformed") or [] if m["kind"] == "restore-test"]
    max_days = float(params.get("max_days", RESTORE_TEST_MAX_DAYS))
    when = finished_at(last)
    host_now = st.get("now") if isinstance(st.get("now"), (int, float)) else time.time()
    days = (
        (datetime.datetime.fromtimestamp(host_now, datetime.UTC) - when).total_seconds() / 86400
        if when
        else float("inf")
    )
    ok = not bad and last.get("ok") is True and last.get("page_checksums_ok") is True and 0 <= days <= max_days
    tables = len(last.get("tables") or {})
    steps = [str(x) for x in last.get("steps") or []]
    finished = last.get("finished", "无 / none") if when else "无 / none"
    shown = f"{days:.1f}" if when else "-"
    forged_zh = f"；无效记录：{'；'.join(m['file'] + ' ' + m['error'] for m in bad)}" if bad else ""
    forged_en = f"; invalid records: {'; '.join(m['file'] + ' ' + m['error'] for m in bad)}" if bad else ""
    return p.outcome(
        ok,
        f"最近一次恢复演练：{finished}，结果 {'通过' if last.get('ok') is True else '未通过'}"
        f"（{'、'.join(steps) or '无步骤'}；{tables} 张表已核对），"
        f"距今 {shown} 天（上限 {max_days:g} 天）{forged_zh}",
        f"newest restore test: {finished}, {'passed' if last.get('ok') is True else 'not passed'} "
        f"({', '.join(steps) or 'no steps'}; {tables} tables fingerprinted), {shown} days ago "
        f"(limit {max_days:g}){forged_en}",
        {
            "last_restore_test": {k: last.get(k) for k in ("finished", "ok", "repo", "label", "seconds", "error")},
            "malformed": bad,
        },
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
    stanza = str(params.get("stanza") or ctx.host)
    timeout = int(params.get("archive_timeout", 30))
    rc = 1
    if STANZA.match(stanza):  # the inventory's host name: quoted anyway
        rc, _ = p.run(
            f"runuser -u postgres -- pgbackrest --stanza={shlex.quote(stanza)} --archive-timeout={timeout} check"
        )
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
