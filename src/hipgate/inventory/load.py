"""Load and validate a provincial inventory; every problem names file, field and fix."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cerberus import Validator, errors

from hipgate.errors import Problem, UserError
from hipgate.inventory import schema
from hipgate.inventory.yamlio import read_yaml

HOSTS_NAMES = ("hosts.yml", "hosts.yaml")


@dataclass
class Inventory:
    """A validated deployment: hosts with their vars, group membership and hipgate settings."""

    path: Path
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def address(self, host: str) -> str:
        return str(self.hosts[host]["ansible_host"])

    def group_hosts(self, group: str) -> list[str]:
        return list(self.groups.get(group, []))


class _Validator(Validator):  # type: ignore[misc]
    def _check_with_ipv4(self, fld: str, value: Any) -> None:
        try:
            ipaddress.IPv4Address(value)
        except (ipaddress.AddressValueError, ValueError):
            self._error(fld, "ipv4")

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
    if custom == "ipv4":
        return Problem(
            where, f"{value!r} 不是合法的 IPv4 地址。", f"{value!r} is not a valid IPv4 address.", want_zh, want_en
        )
    return Problem(
        where, f"不符合规则 {err.rule}={constraint!r}。", f"violates rule {err.rule}={constraint!r}.", want_zh, want_en
    )


def _validate(file: Path, document: Any, rules: dict[str, Any]) -> list[Problem]:
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
    validator = _Validator(rules, allow_unknown=False)
    if validator.validate(document):
        return []
    return [_problem(file, rules, err) for err in _leaves(list(validator._errors))]


def _find_hosts_file(path: Path) -> Path:
    if path.is_dir():
        for name in HOSTS_NAMES:
            if (path / name).is_file():
                return path / name
        return path / HOSTS_NAMES[0]  # read_yaml reports it missing
    return path


def _read_settings(inv_dir: Path) -> tuple[Path, Any]:
    """hipgate settings live in group_vars/all/hipgate.yml (or group_vars/all.yml)."""
    for candidate in (inv_dir / "group_vars" / "all" / "hipgate.yml", inv_dir / "group_vars" / "all.yml"):
        if candidate.is_file():
            return candidate, read_yaml(candidate)
    return inv_dir / "group_vars" / "all" / "hipgate.yml", read_yaml(inv_dir / "group_vars" / "all" / "hipgate.yml")


def _cross_checks(hosts_file: Path, settings_file: Path, inv: Inventory, raw_hosts: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    children = raw_hosts["all"]["children"]
    for group, (desc_zh, desc_en) in schema.REQUIRED_GROUPS.items():
        if group not in children:
            problems.append(
                Problem(
                    f"{hosts_file}: all.children.{group}",
                    f"缺少主机组 {group}（{desc_zh}）。",
                    f"host group {group} ({desc_en}) is missing.",
                    f"在 all.children 下添加 {group}: 及其 hosts:。",
                    f"add {group}: with its hosts: under all.children.",
                )
            )
    sites = inv.group_hosts("backup_sites")
    if "backup_sites" in children and len(sites) < schema.MIN_BACKUP_SITES:
        problems.append(
            Problem(
                f"{hosts_file}: all.children.backup_sites.hosts",
                f"异地备份站点至少需要 {schema.MIN_BACKUP_SITES} 个，当前 {len(sites)} 个。",
                f"at least {schema.MIN_BACKUP_SITES} off-site backup sites are required, found {len(sites)}.",
                "再添加一个由另一方保管的异地备份站点。",
                "add another off-site backup site, held by the other party.",
            )
        )
    # One host may sit in several groups, but must keep one address; two hosts must not share one.
    owner: dict[str, str] = {}
    first_addr: dict[str, str] = {}
    for group, members in children.items():
        for name, hvars in (members.get("hosts") or {}).items():
            addr = (hvars or {}).get("ansible_host")
            where = f"{hosts_file}: all.children.{group}.hosts.{name}.ansible_host"
            known = first_addr.setdefault(name, addr) if addr is not None else None
            if known is not None and addr is not None and addr != known:
                problems.append(
                    Problem(
                        where,
                        f"主机 {name} 在不同组中地址不一致（{known} 与 {addr}）。",
                        f"host {name} has two addresses ({known} and {addr}) in different groups.",
                        "同一主机在各组中使用同一个地址。",
                        "give the host one address in every group.",
                    )
                )
            if addr is not None and owner.setdefault(addr, name) != name:
                problems.append(
                    Problem(
                        where,
                        f"IP 地址 {addr} 重复（已被主机 {owner[addr]} 使用）。",
                        f"duplicate IP address {addr} (already used by host {owner[addr]}).",
                        "为每台主机分配唯一的固定 IP。",
                        "give every host its own fixed IP.",
                    )
                )
    hip = inv.settings
    custodians = hip.get("custodians") or []
    threshold = (hip.get("custody") or {}).get("threshold")
    if isinstance(threshold, int) and threshold > len(custodians):
        problems.append(
            Problem(
                f"{settings_file}: hipgate.custody.threshold",
                f"门限 {threshold} 大于保管人数量 {len(custodians)}，密码将无法恢复。",
                f"threshold {threshold} exceeds the {len(custodians)} custodians; "
                "the password could never be recovered.",
                f"将门限设为 {schema.MIN_THRESHOLD} 到 {len(custodians)} 之间，或增加保管人。",
                f"set the threshold between {schema.MIN_THRESHOLD} and {len(custodians)}, or add custodians.",
            )
        )
    seen: set[str] = set()
    for i, cust in enumerate(custodians):
        cid = cust.get("id")
        if cid in seen:
            problems.append(
                Problem(
                    f"{settings_file}: hipgate.custodians.[{i}].id",
                    f"保管人 id {cid!r} 重复。",
                    f"custodian id {cid!r} is duplicated.",
                    "每名保管人使用唯一的 id。",
                    "give every custodian a unique id.",
                )
            )
        seen.add(cid)
    return problems


def load_inventory(path: Path | str) -> Inventory:
    """Read and validate an inventory directory (or its hosts.yml); raise UserError listing every problem."""
    path = Path(path)
    hosts_file = _find_hosts_file(path)
    inv_dir = hosts_file.parent
    raw_hosts = read_yaml(hosts_file)
    problems = _validate(hosts_file, raw_hosts, schema.HOSTS_FILE)
    settings_file, raw_settings = _read_settings(inv_dir)
    problems += _validate(settings_file, raw_settings, schema.SETTINGS)
    if problems:
        raise UserError(problems)
    inv = Inventory(path=inv_dir, settings=raw_settings["hipgate"])
    for group, members in raw_hosts["all"]["children"].items():
        for name, hvars in members["hosts"].items():
            inv.groups.setdefault(group, []).append(name)
            inv.hosts.setdefault(name, dict(hvars or {}))
    cross = _cross_checks(hosts_file, settings_file, inv, raw_hosts)
    if cross:
        raise UserError(cross)
    return inv
