"""Refuse a playbook with any task that could delete data (seed requirement: a decommissioned
system's data is archived, never deleted). playbooks/decommission.yml runs this on itself first, so
an edit that adds a deleting task stops the whole run before anything happens.

    python -m hipgate.playbook_guard PLAYBOOK   exit 0 if clean, 3 with the offending tasks otherwise
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# Words in a command that delete files, databases, clusters or backups.
DELETING_WORDS = re.compile(
    r"(^|[\s;&|(])("
    r"rm|rmdir|unlink|shred|wipefs|mkfs(\.\w+)?|dd|truncate|find\s.*-delete|pg_dropcluster|dropdb|dropuser"
    r")(\s|$)|\bdrop\s+(database|table|schema|owned)\b|\btruncate\s+table\b|\bdelete\s+from\b"
    r"|\bpgbackrest\b.*\b(expire|stanza-delete)\b|--delta\b",
    re.IGNORECASE,
)
COMMAND_MODULES = {"command", "shell", "raw", "script"}
DELETING_STATES = {"absent", "purged"}
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")


def _tasks(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items or []:
        yield item
        for key in TASK_LISTS:
            if isinstance(item.get(key), list):
                yield from _tasks(item[key])


KEYWORDS = {
    "name",
    "vars",
    "when",
    "loop",
    "loop_control",
    "with_items",
    "tags",
    "register",
    "become",
    "become_user",
    "throttle",
    "changed_when",
    "failed_when",
    "delegate_to",
    "run_once",
    "no_log",
    "check_mode",
    "ignore_errors",
    "until",
    "retries",
    "delay",
    "environment",
    "notify",
    "args",
    "block",
    "rescue",
    "always",
    "hosts",
    "gather_facts",
    "connection",
    "tasks",
    "pre_tasks",
    "post_tasks",
    "roles",
    "handlers",
    "any_errors_fatal",
    "collections",
    "serial",
    "strategy",
    "listen",
}


def _module(task: dict[str, Any]) -> tuple[str, Any]:
    """The module a task calls (its one key that is not a task keyword), short name, and its arguments."""
    for key, value in task.items():
        if key not in KEYWORDS:
            return key.rsplit(".", 1)[-1], value
    return "", None


def deleting_tasks(playbook: Path) -> list[str]:
    """Names of the tasks in a playbook that could delete data, each with the reason."""
    found = []
    for task in _tasks(yaml.safe_load(playbook.read_text(encoding="utf-8")) or []):
        module, args = _module(task)
        name = str(task.get("name", "(unnamed)"))
        text = ""
        if module in COMMAND_MODULES:
            text = (
                args
                if isinstance(args, str)
                else " ".join(str(a) for a in [args.get("cmd", ""), *args.get("argv", [])])
            )
        elif isinstance(args, dict) and str(args.get("state", "")) in DELETING_STATES:
            found.append(f"{name}: {module} state={args['state']}")
            continue
        if text and DELETING_WORDS.search(text):
            found.append(f"{name}: {DELETING_WORDS.search(text).group(0).strip()!r} in {module}")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("用法 / usage: python -m hipgate.playbook_guard PLAYBOOK", file=sys.stderr)
        return 2
    found = deleting_tasks(Path(argv[0]))
    for line in found:
        print(f"会删除数据的任务 / task that could delete data: {line}", file=sys.stderr)
    if found:
        print(
            "拒绝执行：下线只归档、不删除数据。/ refused: decommissioning archives data, never deletes it.",
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
