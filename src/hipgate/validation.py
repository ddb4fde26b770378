"""Cerberus validation whose every error becomes a bilingual Problem naming file, field and fix.

Schemas give each field a `meta` with a short bilingual description; the fix hint reuses it, so
adding a field documents its error too. Shared by the inventory and the policy loaders.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cerberus import Validator, errors

from hipgate.errors import Problem
from hipgate.inventory.schema import HIPGATE_HERE, RESERVED_PG_PREFIX, RESERVED_PG_ROLES

# Free text (names, purposes) may hold any printable character but none that ends a config line
# or starts an Ansible template: a value with "{{" would be evaluated on the control node.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_JINJA = re.compile(r"\{[{%#]|[}%#]\}")
TEXT_MAX = 200
# Local file paths (key files, CA files): no whitespace, quotes or shell metacharacters.
PATH_RE = re.compile(r"[A-Za-z0-9_./~+@-]{1,4096}")
# systemd OnCalendar, the subset hipgate documents: [weekdays] [date] time, or a shorthand.
_WD = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_NUM = r"(?:\*|[0-9]{1,4}(?:\.\.[0-9]{1,4})?(?:/[0-9]{1,3})?(?:,[0-9]{1,4}(?:\.\.[0-9]{1,4})?)*)"
ONCALENDAR_RE = re.compile(
    rf"(?:minutely|hourly|daily|weekly|monthly|quarterly|semiannually|yearly)"
    rf"|(?:{_WD}(?:(?:\.\.|,){_WD})* )?(?:{_NUM}-{_NUM}-{_NUM} )?{_NUM}:{_NUM}(?::{_NUM})?"
)


# ssh options that run a command on the control node (or hand ssh a file that could).
_SSH_COMMAND_OPTIONS = {"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand", "include", "match"}
_SSH_OPTION_RE = re.compile(r"[A-Za-z]+=[A-Za-z0-9_./~+@:%,=-]{1,256}")


def ssh_args_problem(value: Any) -> bool:
    """True unless value is only `-F path` and `-o Option=value` words with no command option."""
    if not isinstance(value, str) or _CONTROL.search(value):
        return True
    words = value.split()
    i = 0
    while i < len(words):
        flag, arg = words[i], words[i + 1] if i + 1 < len(words) else ""
        if flag == "-F" and PATH_RE.fullmatch(arg):
            pass
        elif flag == "-o" and _SSH_OPTION_RE.fullmatch(arg):
            if arg.split("=", 1)[0].lower() in _SSH_COMMAND_OPTIONS:
                return True
        else:
            return True
        i += 2
    return False


def safe_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= TEXT_MAX
        and not _CONTROL.search(value)
        and not _JINJA.search(value)
    )


class _Validator(Validator):  # type: ignore[misc]
    def _validate_regex(self, pattern: str, field: str, value: Any) -> None:
        """{'type': 'string'}"""
        # cerberus appends `$`, which matches before a final newline: "exchange_app\n" would pass.
        if isinstance(value, str) and not re.fullmatch(pattern.removesuffix("$"), value):
            self._error(field, errors.REGEX_MISMATCH)

    def _check_with_text(self, fld: str, value: Any) -> None:
        if not safe_text(value):
            self._error(fld, "text")

    def _check_with_path(self, fld: str, value: Any) -> None:
        if not (isinstance(value, str) and PATH_RE.fullmatch(value)):
            self._error(fld, "path")

    def _check_with_ssh_args(self, fld: str, value: Any) -> None:
        if ssh_args_problem(value):
            self._error(fld, "ssh_args")

    def _check_with_misplaced_hipgate(self, fld: str, value: Any) -> None:
        self._error(fld, "misplaced_hipgate")

    def _check_with_client_role(self, fld: str, value: Any) -> None:
        if isinstance(value, str) and (value in RESERVED_PG_ROLES or value.startswith(RESERVED_PG_PREFIX)):
            self._error(fld, "reserved_role")

    def _check_with_oncalendar(self, fld: str, value: Any) -> None:
        if not (isinstance(value, str) and len(value) <= 64 and ONCALENDAR_RE.fullmatch(value)):
            self._error(fld, "oncalendar")

    def _check_with_ipv4(self, fld: str, value: Any) -> None:
        try:
            ipaddress.IPv4Address(value)
        except (ipaddress.AddressValueError, ValueError):
            self._error(fld, "ipv4")

    def _check_with_isodate(self, fld: str, value: Any) -> None:
        try:
            datetime.date.fromisoformat(str(value))
        except ValueError:
            self._error(fld, "isodate")

    def _check_with_cidr(self, fld: str, value: Any) -> None:
        try:
            ipaddress.IPv4Network(value, strict=True)
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError):
            self._error(fld, "cidr")


def _leaves(errs: list[errors.ValidationError]) -> Iterator[errors.ValidationError]:
    for err in errs:
        if err.is_group_error:
            yield from _leaves(list(err.child_errors))
        else:
            yield err


def _meta(rules: dict[str, Any] | None, path: tuple[Any, ...]) -> dict[str, str]:
    """Follow a document path through a schema to the field's bilingual `meta`."""
    node: dict[str, Any] | None = {"schema": rules, "type": "dict"}
    for key in path:
        if node is None:
            break
        if node.get("type") == "list":
            node = node.get("schema")
        elif isinstance(node.get("schema"), dict) and key in node["schema"]:
            node = node["schema"][key]
        elif "valuesrules" in node:
            node = node["valuesrules"]
        else:
            node = None
    return (node or {}).get("meta", {"zh": "参见模板中的说明", "en": "see the comments in the template"})


def _dotted(path: tuple[Any, ...]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path) or "(top level)"


def _misplaced_hipgate(where: str) -> Problem:
    return Problem(
        where,
        "此处的 hipgate 设置会被 Ansible 读取并覆盖 group_vars/all/hipgate.yml，但不会被校验。",
        "a hipgate key here is read by Ansible and overrides group_vars/all/hipgate.yml without validation.",
        "删除它，把设置写入 group_vars/all/hipgate.yml（每个省只有一份 hipgate 设置）。",
        "remove it and put the setting in group_vars/all/hipgate.yml (one hipgate block per province).",
    )


def _problem(file: Path, rules: dict[str, Any], err: errors.ValidationError) -> Problem:
    path = tuple(err.document_path)
    where = f"{file}: {_dotted(path)}"
    meta = _meta(rules, path)
    want_zh, want_en = f"设置为{meta['zh']}。", f"set it to {meta['en']}."
    code, value, constraint = err.code, err.value, err.constraint
    if code == errors.REQUIRED_FIELD.code:
        return Problem(
            where, "缺少必填项。", "required field is missing.", f"添加该项：{meta['zh']}。", f"add it: {meta['en']}."
        )
    if code == errors.UNKNOWN_FIELD.code:
        return Problem(
            where,
            f"未知的键 {path[-1]!r}。",
            f"unknown key {path[-1]!r}.",
            "检查拼写或删除该键（允许的键见模板）。",
            "check its spelling or remove it (allowed keys are in the template).",
        )
    if code == errors.UNALLOWED_VALUE.code and err.rule == "allowed":
        allowed = ", ".join(map(str, constraint))
        return Problem(
            where,
            f"不允许的名称 {value!r}。",
            f"name {value!r} is not allowed.",
            f"使用以下之一：{allowed}。",
            f"use one of: {allowed}.",
        )
    if code == errors.BAD_TYPE.code:
        return Problem(
            where,
            f"类型错误：应为 {constraint}，实为 {type(value).__name__}。",
            f"wrong type: expected {constraint}, got {type(value).__name__}.",
            want_zh,
            want_en,
        )
    if code == errors.NOT_NULLABLE.code and meta == HIPGATE_HERE:
        return _misplaced_hipgate(where)
    if code in (errors.EMPTY_NOT_ALLOWED.code, errors.NOT_NULLABLE.code):
        return Problem(where, "不能为空。", "must not be empty.", want_zh, want_en)
    if code == errors.MIN_LENGTH.code:
        return Problem(
            where,
            f"至少需要 {constraint} 项，当前 {len(value)} 项。",
            f"needs at least {constraint} entries, found {len(value)}.",
            want_zh,
            want_en,
        )
    if code in (errors.MIN_VALUE.code, errors.MAX_VALUE.code):
        bound_zh, bound_en = ("最小", "at least") if code == errors.MIN_VALUE.code else ("最大", "at most")
        return Problem(
            where,
            f"值 {value} 超出范围（{bound_zh} {constraint}）。",
            f"value {value} is out of range ({bound_en} {constraint}).",
            want_zh,
            want_en,
        )
    if code == errors.REGEX_MISMATCH.code:
        return Problem(where, f"格式不正确：{value!r}。", f"malformed value: {value!r}.", want_zh, want_en)
    # Our check_with helpers report through _error(field, tag): cerberus files them as CUSTOM.
    custom = err.info[0] if code == errors.CUSTOM.code and err.info else None
    if custom == "cidr":
        return Problem(
            where,
            f"{value!r} 不是合法的 IPv4 网段（CIDR，主机位须为 0）。",
            f"{value!r} is not a valid IPv4 network in CIDR form (host bits must be zero).",
            want_zh,
            want_en,
        )
    if custom == "isodate":
        return Problem(
            where,
            f"{value!r} 不是 YYYY-MM-DD 格式的日期。",
            f"{value!r} is not a date in YYYY-MM-DD form.",
            want_zh,
            want_en,
        )
    if custom == "text":
        return Problem(
            where,
            f"{value!r} 含换行、控制字符或模板标记（{{{{ }}}}、{{% %}}），或长于 {TEXT_MAX} 字符。",
            f"{value!r} holds a newline, a control character or a template marker ({{{{ }}}}, {{% %}}), "
            f"or is longer than {TEXT_MAX} characters.",
            f"改为单行纯文本：{meta['zh']}。",
            f"use one line of plain text: {meta['en']}.",
        )
    if custom == "path":
        return Problem(
            where,
            f"{value!r} 不是安全的文件路径（只允许字母、数字与 _ . / ~ + @ -）。",
            f"{value!r} is not a safe file path (only letters, digits and _ . / ~ + @ - are allowed).",
            want_zh,
            want_en,
        )
    if custom == "oncalendar":
        return Problem(
            where,
            f"{value!r} 不是受支持的 systemd OnCalendar 时间。",
            f"{value!r} is not a supported systemd OnCalendar time.",
            '使用如 "Sun *-*-* 01:00"、"Mon..Sat *-*-* 01:00" 或 "daily" 的格式。',
            'use a form such as "Sun *-*-* 01:00", "Mon..Sat *-*-* 01:00" or "daily".',
        )
    if custom == "ssh_args":
        return Problem(
            where,
            f"{value!r} 不是允许的 SSH 参数：只允许 -F 文件 与 -o 选项=值，"
            "且不得含 ProxyCommand、LocalCommand 等执行命令的选项。",
            f"{value!r} is not allowed: only -F file and -o Option=value, and no option that runs a command "
            "(ProxyCommand, LocalCommand, KnownHostsCommand, Include, Match).",
            "经堡垒机连接请用 -o ProxyJump=主机；其余设置写入 -F 指定的 ssh_config。",
            "reach hosts through the bastion with -o ProxyJump=host; put other settings in the -F ssh_config.",
        )
    if custom == "misplaced_hipgate":
        return _misplaced_hipgate(where)
    if custom == "reserved_role":
        reserved = ", ".join([*RESERVED_PG_ROLES, RESERVED_PG_PREFIX + "*"])
        return Problem(
            where,
            f"角色 {value!r} 为 PostgreSQL 或 hipgate 保留，不能作为客户端或属主角色。",
            f"role {value!r} is reserved by PostgreSQL or hipgate and cannot be a client's or owner's role.",
            f"使用业务专用角色名，如 exchange_app（保留：{reserved}）。",
            f"use an application role such as exchange_app (reserved: {reserved}).",
        )
    if custom == "ipv4":
        return Problem(
            where, f"{value!r} 不是合法的 IPv4 地址。", f"{value!r} is not a valid IPv4 address.", want_zh, want_en
        )
    return Problem(
        where, f"不符合规则 {err.rule}={constraint!r}。", f"violates rule {err.rule}={constraint!r}.", want_zh, want_en
    )


def validate_document(file: Path, document: Any, rules: dict[str, Any], allow_unknown: bool = False) -> list[Problem]:
    if not isinstance(document, dict):
        return [
            Problem(
                str(file),
                "文件内容应为 YAML 映射（键: 值）。",
                "the file must hold a YAML mapping (key: value).",
                "参照 inventories/example-province/ 中的模板。",
                "follow the template in inventories/example-province/.",
            )
        ]
    validator = _Validator(rules, allow_unknown=allow_unknown)
    if validator.validate(document):
        return []
    return [_problem(file, rules, err) for err in _leaves(list(validator._errors))]
