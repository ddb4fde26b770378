"""Strict YAML reading: duplicate keys are an error, not a silent overwrite."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from hipgate.errors import fail


class _StrictLoader(yaml.SafeLoader):
    pass


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


def read_yaml(path: Path) -> Any:
    """Parse one YAML file; any problem becomes a bilingual UserError naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
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
            "按报错行修正缩进、冒号或重复的键。",
            "fix the indentation, colon or duplicate key on that line.",
        ) from None
