"""Strict YAML reading: duplicate keys are an error, not a silent overwrite; aliases, huge files and
files that are not regular files (a hosts.yml symlinked to /dev/zero) are refused before they can
cost memory or time."""

from __future__ import annotations

import os
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from hipgate.errors import fail

# An inventory file is a few kilobytes; 1 MiB leaves room for long comments and many hosts.
MAX_BYTES = 1 << 20


class _StrictLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        # Aliases are how a small file ("billion laughs") expands into gigabytes of nested lists;
        # an inventory never needs them, so the first alias is an error.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML alias *{event.anchor} is not allowed (write the value out)", event.start_mark
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_limited(path: Path, max_bytes: int = MAX_BYTES) -> str:
    """The file's text, read only if it is a regular file of at most max_bytes (checked on the
    opened descriptor, so a swapped symlink cannot slip in between check and read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegular()
        if st.st_size > max_bytes:
            raise _TooLarge(st.st_size)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _TooLarge(len(data))
    return data.decode("utf-8")


class _NotRegular(Exception):
    pass


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def read_yaml(path: Path, max_bytes: int = MAX_BYTES) -> Any:
    """Parse one YAML file; any problem becomes a bilingual UserError naming file and line."""
    try:
        text = _read_limited(path, max_bytes)
    except _NotRegular:
        raise fail(
            str(path),
            "不是普通文件（设备、管道或目录），拒绝读取。",
            "not a regular file (a device, pipe or directory); refused.",
            "清单文件须为普通的 YAML 文件，不能是指向设备或管道的链接。",
            "an inventory file must be a plain YAML file, not a link to a device or pipe.",
        ) from None
    except _TooLarge as exc:
        raise fail(
            str(path),
            f"文件过大（{exc.size} 字节，上限 {max_bytes} 字节），拒绝读取。",
            f"file too large ({exc.size} bytes, limit {max_bytes}); refused.",
            "检查文件是否正确；清单文件通常只有几 KB。",
            "check the file; an inventory file is normally a few kilobytes.",
        ) from None
    except FileNotFoundError:
        raise fail(
            str(path),
            "文件不存在。",
            "file does not exist.",
            "检查路径，或从 inventories/example-province/ 复制模板。",
            "check the path, or copy the template in inventories/example-province/.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(
            str(path),
            f"无法读取文件（{exc}）。",
            f"cannot read the file ({exc}).",
            "确认文件可读且为 UTF-8 编码。",
            "make sure the file is readable and UTF-8 encoded.",
        ) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise fail(
            where,
            f"YAML 语法错误：{problem}",
            f"YAML syntax error: {problem}",
            "按报错行修正缩进、冒号、重复的键或别名（*name，须写出完整的值）。",
            "fix the indentation, colon, duplicate key or alias (*name: write the value out) on that line.",
        ) from None
