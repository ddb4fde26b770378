"""Cerberus schemas for a provincial inventory.

Every field carries `meta` with a short bilingual description; error messages reuse it as the
fix hint so that adding a field documents its error too.
"""

from __future__ import annotations

from typing import Any

from hipgate.flows import EXCHANGE_RELAY_PORT

# Groups a deployment must have; each maps to the role it runs (see README, "Inventory").
REQUIRED_GROUPS: dict[str, tuple[str, str]] = {
    "frontend": ("前置机（连接国家平台）", "front-end server (前置机) facing the national platform"),
    "database": ("PostgreSQL 数据库服务器", "PostgreSQL database server"),
    "middleware": ("数据交换中间件服务器", "data-exchange middleware server"),
    "bastion": ("运维堡垒机", "administrators' bastion host"),
    "vault": ("密钥管理服务（OpenBao/Vault）", "secrets service (OpenBao/Vault)"),
    "backup_sites": ("异地备份站点（至少 2 个）", "off-site backup sites (at least 2)"),
    "natplat": ("国家平台接入端点", "national platform endpoint"),
}
MIN_BACKUP_SITES = 2
MIN_THRESHOLD = 2

# Groups that may appear besides the required ones (the lab adds `outsider`).
# outsider: an unauthorised host used to prove protected services refuse it.
# simulated_peers: hosts the lab runs in place of external systems (the national platform);
# site.yml configures them only in a lab, never in a province.
# log_collector: receives every host's logs over TLS (GBT22239-8.1.4.3-c); may be a host of another group.
# terminals: agencies' Linux terminals, checked by `hipgate preflight terminal` only (never configured).
OPTIONAL_GROUPS = {"outsider", "simulated_peers", "log_collector", "terminals"}

# Every pattern ends in \Z, never $: Python's $ also matches before a final newline, and
# hipgate.validation applies them with re.fullmatch as well.
IFACE_RE = r"^[A-Za-z0-9_.:-]{1,15}\Z"
HOSTNAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z"
# A DNS name (several labels), for time sources and the VPN peer's identity.
DNS_NAME_RE = r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\Z"
# IKE identity: a DNS name, an address, or user@domain (swanctl.conf writes it unquoted).
IKE_ID_RE = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,252}\Z"
CUSTODIAN_ID_RE = r"^[a-z][a-z0-9._-]{1,31}\Z"
FLOW_NAME_RE = r"^[a-z][a-z0-9-]{1,40}\Z"
PG_NAME_RE = r"^[a-z_][a-z0-9_]{0,62}\Z"
# A login name as useradd and ssh_config take it.
USER_RE = r"^[a-z_][a-z0-9_-]{0,31}\Z"
# Flow sources: a host or group name, or an IPv4 network (checked further by hipgate.flows).
FLOW_SOURCE_RE = r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,62}|[0-9.]{7,15}/[0-9]{1,2})\Z"
VAULT_ADDR_RE = r"^https?://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?/?\Z"
# PostgreSQL roles hipgate itself creates or relies on, and the server's predefined roles: never a
# client's role (a client in pg_read_server_files, or logged in as postgres, owns the server).
RESERVED_PG_ROLES = ("postgres", "hipgate_vault", "hipgate_backup", "pgbackrest", "public")
RESERVED_PG_PREFIX = "pg_"
# A network wider than this (fewer prefix bits) is "wide open" and must be acknowledged.
WIDE_PREFIX = 16
ACK_RISKS: dict[str, tuple[str, str]] = {
    "wide_management_network": ("管理网段过宽（前缀短于 /16）", "management network wider than /16"),
    "wide_flow_source": (
        "流的来源网段过宽（前缀短于 /16，含 0.0.0.0/0）",
        "flow source wider than /16 (0.0.0.0/0 too)",
    ),
    "plaintext_vault_addr": ("vault_addr 使用明文 http://", "vault_addr uses plaintext http://"),
}
PROVINCE_ID_RE = r"^[a-z0-9][a-z0-9-]{1,31}\Z"


def _m(zh: str, en: str) -> dict[str, str]:
    return {"zh": zh, "en": en}


# The data exchange (issue 17). Region codes are GB/T 2260 / 医保区划 codes inside the province (load.py
# checks they share its first two digits with sender_code); the relay port is the middleware -> frontend
# flow (flows.exchange_flows).
EXCHANGE: dict[str, Any] = {
    "interface": {
        "type": "string",
        "check_with": "path",
        "meta": _m(
            "国家平台接口文档（OpenAPI 3，相对清单目录或绝对路径）；默认使用 hipgate 自带文档",
            "the national platform's interface document (OpenAPI 3; relative to the inventory or absolute); "
            "default hipgate's own",
        ),
    },
    "sender_code": {
        "type": "string",
        "required": True,
        "regex": r"[1-9][0-9]0000(0[1-9]|[1-9][0-9])",
        "meta": _m(
            "发送方代码：省级 6 位医保区划 + 2 位节点号，如 44000001",
            "sender code: the province's 6-digit division and a 2-digit node number, e.g. 44000001",
        ),
    },
    "regions": {
        "type": "list",
        "required": True,
        "minlength": 1,
        "schema": {"type": "string", "regex": r"[1-9][0-9]{5}"},
        "meta": _m("本省统筹地区（6 位医保区划代码）", "the province's pooling regions (6-digit division codes)"),
    },
    "schedule": {
        "type": "string",
        "check_with": "oncalendar",
        "meta": _m("增量上传时间（systemd OnCalendar）", "incremental upload time (systemd OnCalendar)"),
    },
    "download_schedule": {
        "type": "string",
        "check_with": "oncalendar",
        "meta": _m("下载核查单与异常日志的时间（systemd OnCalendar）", "download time of forms and anomaly logs"),
    },
    "max_lag_minutes": {
        "type": "integer",
        "min": 1,
        "max": 7 * 24 * 60,
        "meta": _m("上传延迟告警阈值（分钟）", "upload lag above which an ALERT is raised (minutes)"),
    },
    "signtype": {
        "type": "string",
        "allowed": ["SM2", "ECDSA"],
        "meta": _m("报文签名算法", "message signature algorithm"),
    },
    "relay_port": {
        "type": "integer",
        "min": 1024,
        "max": 65535,
        "meta": _m(
            f"前置机中继端口（中间件 → 前置机，默认 {EXCHANGE_RELAY_PORT}）",
            f"the front-end server's relay port (middleware -> frontend, default {EXCHANGE_RELAY_PORT})",
        ),
    },
    "platform_url": {
        "type": "string",
        "regex": r"https://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:[1-9][0-9]{0,4})?(/[A-Za-z0-9._~/-]*)?",
        "meta": _m(
            "国家平台接口地址（https，隧道内）", "the national platform's interface address (https, in the tunnel)"
        ),
    },
}


HOST_VARS: dict[str, Any] = {
    "ansible_host": {
        "type": "string",
        "required": True,
        "check_with": "ipv4",
        "meta": _m("主机固定 IPv4 地址，如 10.86.1.10", "the host's fixed IPv4 address, e.g. 10.86.1.10"),
    },
    "ansible_port": {"type": "integer", "min": 1, "max": 65535, "meta": _m("SSH 端口 1-65535", "SSH port 1-65535")},
    "ansible_user": {
        "type": "string",
        "regex": USER_RE,
        "meta": _m("SSH 登录用户（小写字母、数字、_ -），如 hipgate", "SSH login user (a-z, 0-9, _ -), e.g. hipgate"),
    },
    "ansible_ssh_private_key_file": {
        "type": "string",
        "check_with": "path",
        "meta": _m("SSH 私钥文件路径", "path of the SSH private key"),
    },
    "ansible_ssh_common_args": {
        "type": "string",
        "check_with": "ssh_args",
        "meta": _m(
            "额外 SSH 参数（仅 -F 文件 与 -o 选项=值，不得执行命令）",
            "extra SSH arguments (-F file and -o Option=value only, none that runs a command)",
        ),
    },
    "ansible_python_interpreter": {
        "type": "string",
        "check_with": "path",
        "meta": _m("远端 Python 路径，如 /usr/bin/python3", "remote Python path, e.g. /usr/bin/python3"),
    },
    "ansible_become": {"type": "boolean", "meta": _m("是否使用 sudo 提权 (true/false)", "use sudo (true/false)")},
    "hipgate_leased_line_interface": {
        "type": "string",
        "regex": IFACE_RE,
        "meta": _m("本机医保专线网卡名，如 eth1", "this host's leased-line (医保专线) NIC name, e.g. eth1"),
    },
    "hipgate_site_owner": {
        "type": "string",
        "check_with": "text",
        "meta": _m("备份站点的保管方，如 省医保信息中心", "party holding this backup site, e.g. the provincial centre"),
    },
}

# The same connection variables in all.vars or a group's vars (other variables are the roles');
# `hipgate` there would silently replace group_vars/all/hipgate.yml.
HIPGATE_HERE = _m(
    "hipgate 设置只能写在 group_vars/all/hipgate.yml", "hipgate settings belong in group_vars/all/hipgate.yml only"
)
HOST_VARS_IN_VARS: dict[str, Any] = {
    **{k: v for k, v in HOST_VARS.items() if k != "ansible_host"},
    "ansible_host": {**HOST_VARS["ansible_host"], "required": False},
    # Any value, null too: `hipgate: ~` would leave the roles their wide-open defaults.
    "hipgate": {"check_with": "misplaced_hipgate", "meta": HIPGATE_HERE},
}
HOST_VARS["hipgate"] = HOST_VARS_IN_VARS["hipgate"]

GROUP: dict[str, Any] = {
    "type": "dict",
    "nullable": False,
    "schema": {
        "hosts": {
            "type": "dict",
            "required": True,
            "empty": False,
            "keysrules": {"type": "string", "regex": HOSTNAME_RE},
            "valuesrules": {"type": "dict", "nullable": True, "schema": HOST_VARS},
            "meta": _m("该组的主机列表（至少 1 台）", "the group's hosts (at least one)"),
        },
        "vars": {
            "type": "dict",
            "allow_unknown": True,
            "schema": HOST_VARS_IN_VARS,
            "meta": _m("组变量", "group variables"),
        },
    },
    "meta": _m("一个主机组，含 hosts:", "a host group with a hosts: mapping"),
}

HOSTS_FILE: dict[str, Any] = {
    "all": {
        "type": "dict",
        "required": True,
        "schema": {
            "children": {
                "type": "dict",
                "required": True,
                "keysrules": {"type": "string", "allowed": sorted([*REQUIRED_GROUPS, *OPTIONAL_GROUPS])},
                "valuesrules": GROUP,
                "meta": _m("主机组: " + "、".join(REQUIRED_GROUPS), "host groups: " + ", ".join(REQUIRED_GROUPS)),
            },
            "vars": {
                "type": "dict",
                "allow_unknown": True,
                "schema": HOST_VARS_IN_VARS,
                "meta": _m(
                    "全局变量（hipgate 设置请放 group_vars/all/hipgate.yml）",
                    "global variables (hipgate settings go in group_vars/all/hipgate.yml)",
                ),
            },
        },
        "meta": _m("顶层 all: 组", "the top-level all: group"),
    },
}

CUSTODIAN: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "id": {
            "type": "string",
            "required": True,
            "regex": CUSTODIAN_ID_RE,
            "meta": _m("保管人登录名，小写字母开头，如 zhang.san", "custodian login id, lower case, e.g. zhang.san"),
        },
        "name": {
            "type": "string",
            "required": True,
            "check_with": "text",
            "meta": _m("保管人姓名", "custodian's full name"),
        },
        "organisation": {
            "type": "string",
            "required": True,
            "check_with": "text",
            "meta": _m("保管人所属单位", "custodian's organisation"),
        },
        "pgp_public_key_file": {
            "type": "string",
            "check_with": "path",
            "meta": _m("保管人 PGP 公钥文件（可选）", "custodian's PGP public key file (optional)"),
        },
    },
    "meta": _m("一名密码分段保管人", "one password-share custodian"),
}

FLOW: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "name": {
            "type": "string",
            "required": True,
            "regex": FLOW_NAME_RE,
            "meta": _m(
                "流名称，小写字母、数字与 -，如 app-to-db", "flow name: lower case, digits and -, e.g. app-to-db"
            ),
        },
        "from": {
            "type": "list",
            "required": True,
            "minlength": 1,
            "schema": {"type": "string", "regex": FLOW_SOURCE_RE},
            "meta": _m(
                "来源：组名、主机名、all 或 IPv4 网段，如 [middleware]",
                "sources: group, host, all or IPv4 network, e.g. [middleware]",
            ),
        },
        "to": {
            "type": "list",
            "required": True,
            "minlength": 1,
            "schema": {"type": "string", "regex": HOSTNAME_RE},
            "meta": _m("目的：组名或主机名，如 [database]", "destinations: group or host names, e.g. [database]"),
        },
        "proto": {
            "type": "string",
            "required": True,
            "allowed": ["tcp", "udp", "esp"],
            "meta": _m("协议 tcp、udp 或 esp", "protocol tcp, udp or esp"),
        },
        "ports": {
            "type": "list",
            "schema": {"type": ["integer", "string"], "regex": r"^[0-9]{1,5}(?:-[0-9]{1,5})?\Z"},
            "meta": _m('目的端口列表，如 [5432] 或 ["8000-8010"]', 'destination ports, e.g. [5432] or ["8000-8010"]'),
        },
        "purpose": {
            "type": "string",
            "required": True,
            "check_with": "text",
            "meta": _m("用途（中英文），写入报告", "purpose, in Chinese and English; shown in the report"),
        },
    },
    "meta": _m(
        "一条允许的流：name、from、to、proto、ports、purpose", "one allowed flow: name, from, to, proto, ports, purpose"
    ),
}

DB_CLIENT: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "from": {
            "type": "string",
            "required": True,
            "regex": HOSTNAME_RE,
            "meta": _m("客户端组名或主机名，如 middleware", "client group or host name, e.g. middleware"),
        },
        "database": {
            "type": "string",
            "required": True,
            "regex": PG_NAME_RE,
            "meta": _m("数据库名，如 exchange", "database name, e.g. exchange"),
        },
        "role": {
            "type": "string",
            "required": True,
            "regex": PG_NAME_RE,
            "check_with": "client_role",
            "meta": _m("数据库登录角色，如 exchange_app", "database login role, e.g. exchange_app"),
        },
    },
    "meta": _m("一条 pg_hba 允许项：from、database、role", "one pg_hba allowance: from, database, role"),
}

DATABASE: dict[str, Any] = {
    "port": {
        "type": "integer",
        "min": 1,
        "max": 65535,
        "meta": _m("数据库端口，默认 5432", "database port, default 5432"),
    },
    "databases": {
        "type": "list",
        "schema": {
            "type": "dict",
            "schema": {
                "name": {
                    "type": "string",
                    "required": True,
                    "regex": PG_NAME_RE,
                    "meta": _m("数据库名", "database name"),
                },
                "owner": {
                    "type": "string",
                    "required": True,
                    "regex": PG_NAME_RE,
                    "check_with": "client_role",
                    "meta": _m("属主角色", "owner role"),
                },
            },
        },
        "meta": _m("要创建的数据库：[{name, owner}]", "databases to create: [{name, owner}]"),
    },
    "clients": {
        "type": "list",
        "schema": DB_CLIENT,
        "meta": _m("允许连接数据库的 (主机, 库, 角色)", "who may connect: (host, database, role)"),
    },
}

VPN: dict[str, Any] = {
    "peer_address": {
        "type": "string",
        "required": True,
        "check_with": "ipv4",
        "meta": _m("国家平台 VPN 网关的 IKE 地址", "IKE address of the national platform's VPN gateway"),
    },
    "peer_id": {
        "type": "string",
        "required": True,
        "regex": IKE_ID_RE,
        "meta": _m(
            "对端身份（证书中的 DNS 名或 CN，或 PSK 时约定的标识）",
            "the peer's identity (DNS name or CN in its certificate, or the agreed id with a PSK)",
        ),
    },
    "local_address": {
        "type": "string",
        "check_with": "ipv4",
        "meta": _m(
            "前置机一侧的 IKE 地址，默认取医保专线网卡上的地址",
            "this side's IKE address; default: the address on the leased-line NIC",
        ),
    },
    "local_subnets": {
        "type": "list",
        "required": True,
        "minlength": 1,
        "schema": {"type": "string", "check_with": "cidr"},
        "meta": _m(
            "经隧道保护的省级网段（含前置机的固定地址），如 [10.86.200.0/28]",
            "provincial subnets the tunnel protects (holding the front-end server's fixed address), "
            "e.g. [10.86.200.0/28]",
        ),
    },
    "remote_subnets": {
        "type": "list",
        "minlength": 1,
        "schema": {"type": "string", "check_with": "cidr"},
        "meta": _m(
            "国家平台一侧的网段，默认 [network.platform_cidr]", "platform subnets; default [network.platform_cidr]"
        ),
    },
    "auth": {
        "type": "string",
        "allowed": ["certificate", "psk"],
        "meta": _m(
            "认证方式：certificate（X.509，默认）或 psk（仅作后备）",
            "authentication: certificate (X.509, default) or psk (fallback only)",
        ),
    },
}

SETTINGS: dict[str, Any] = {
    "hipgate": {
        "type": "dict",
        "required": True,
        "schema": {
            "province": {
                "type": "string",
                "required": True,
                "check_with": "text",
                "meta": _m("省份名称", "province name"),
            },
            # Keys the control node's state (<HIPGATE_STATE_DIR>/<province_id>/{custody,pki}): two inventories
            # with the same folder name never share unseal keys or a CA.
            "province_id": {
                "type": "string",
                "required": True,
                "regex": PROVINCE_ID_RE,
                "meta": _m(
                    "省份标识：小写字母、数字、连字符，2-32 个字符，如 example-province；决定控制节点状态目录"
                    " <HIPGATE_STATE_DIR>/<province_id>/，各省不得相同",
                    "province id: lowercase letters, digits, hyphens, 2-32 characters, e.g. example-province; it "
                    "names the control node's state directory <HIPGATE_STATE_DIR>/<province_id>/ and must differ "
                    "between provinces",
                ),
            },
            "acknowledge": {
                "type": "list",
                "schema": {
                    "type": "dict",
                    "schema": {
                        "risk": {
                            "type": "string",
                            "required": True,
                            "allowed": sorted(ACK_RISKS),
                            "meta": _m("确认接受的风险名称", "name of the accepted risk"),
                        },
                        "reason": {
                            "type": "string",
                            "required": True,
                            "check_with": "text",
                            "meta": _m(
                                "接受该风险的理由（写入报告）", "why the risk is accepted (shown in the report)"
                            ),
                        },
                    },
                },
                "meta": _m(
                    "明确接受的宽松设置：[{risk, reason}]，risk 为 " + "、".join(ACK_RISKS),
                    "explicitly accepted wide-open settings: [{risk, reason}], risk one of " + ", ".join(ACK_RISKS),
                ),
            },
            "network": {
                "type": "dict",
                "required": True,
                "schema": {
                    "platform_cidr": {
                        "type": "string",
                        "required": True,
                        "check_with": "cidr",
                        "meta": _m(
                            "国家平台网段 CIDR，如 10.123.0.0/16",
                            "national platform network as CIDR, e.g. 10.123.0.0/16",
                        ),
                    },
                    "dns_servers": {
                        "type": "list",
                        "required": True,
                        "minlength": 1,
                        "schema": {"type": "string", "check_with": "ipv4"},
                        "meta": _m("DNS 服务器 IPv4 地址列表", "list of DNS server IPv4 addresses"),
                    },
                    "leased_line_interface": {
                        "type": "string",
                        "required": True,
                        "regex": IFACE_RE,
                        "meta": _m("医保专线网卡名，如 eth1", "leased-line (医保专线) NIC name, e.g. eth1"),
                    },
                    "management_networks": {
                        "type": "list",
                        "required": True,
                        "minlength": 1,
                        "schema": {"type": "string", "check_with": "cidr"},
                        "meta": _m(
                            "管理网段 CIDR 列表（Ansible 控制节点与运维入口所在网段），如 [10.86.0.0/28]",
                            "management networks as CIDRs (where Ansible and operators connect from), "
                            "e.g. [10.86.0.0/28]",
                        ),
                    },
                    "platform_names": {
                        "type": "list",
                        "schema": {"type": "string", "regex": HOSTNAME_RE},
                        "meta": _m("国家平台域名列表", "national platform host names"),
                    },
                    "platform_ports": {
                        "type": "list",
                        "minlength": 1,
                        "schema": {"type": "integer", "min": 1, "max": 65535},
                        "meta": _m(
                            "上线前须可达的平台 TCP 端口，默认 [443]，如 [80, 443]",
                            "platform TCP ports that must be reachable before go-live; default [443], e.g. [80, 443]",
                        ),
                    },
                    "preflight_groups": {
                        "type": "list",
                        "minlength": 1,
                        "schema": {"type": "string", "regex": HOSTNAME_RE},
                        "meta": _m(
                            "网络预检的主机组，默认 [frontend]",
                            "groups whose hosts the network preflight checks; default [frontend]",
                        ),
                    },
                },
                "meta": _m("网络参数", "network settings"),
            },
            "vpn": {
                "type": "dict",
                "schema": VPN,
                "meta": _m("到国家平台的 IPsec VPN（IKEv2）", "IPsec VPN (IKEv2) to the national platform"),
            },
            "flows": {
                "type": "list",
                "schema": FLOW,
                "meta": _m("访问关系矩阵（允许的流）", "the flow matrix (allowed flows)"),
            },
            "database": {
                "type": "dict",
                "schema": DATABASE,
                "meta": _m("数据库访问声明", "database access declaration"),
            },
            "time": {
                "type": "dict",
                "schema": {
                    "ntp_servers": {
                        "type": "list",
                        "minlength": 1,
                        "schema": {"type": "string", "regex": DNS_NAME_RE},
                        "meta": _m(
                            "NTP 时间源（IPv4 地址或域名）列表",
                            "list of NTP time sources (IPv4 addresses or DNS names)",
                        ),
                    },
                },
                "meta": _m("时间同步参数", "time-sync settings"),
            },
            "custodians": {
                "type": "list",
                "required": True,
                "minlength": MIN_THRESHOLD,
                "schema": CUSTODIAN,
                "meta": _m(
                    f"数据库密码分段保管人列表（至少 {MIN_THRESHOLD} 人）",
                    f"database-password custodians (at least {MIN_THRESHOLD})",
                ),
            },
            "custody": {
                "type": "dict",
                "required": True,
                "schema": {
                    "threshold": {
                        "type": "integer",
                        "required": True,
                        "min": MIN_THRESHOLD,
                        "meta": _m(
                            f"恢复密码所需保管人数（≥{MIN_THRESHOLD} 且 ≤ 保管人总数）",
                            f"custodians needed to recover (≥{MIN_THRESHOLD}, ≤ custodians)",
                        ),
                    },
                    "vault_addr": {
                        "type": "string",
                        "regex": VAULT_ADDR_RE,
                        "meta": _m(
                            "OpenBao/Vault 地址，默认 https://<vault 组首台主机>:8200",
                            "OpenBao/Vault address, default https://<first vault host>:8200",
                        ),
                    },
                    "ca_file": {
                        "type": "string",
                        "check_with": "path",
                        "meta": _m("校验 Vault 证书的 CA 文件", "CA file that verifies Vault's certificate"),
                    },
                    "journal": {
                        "type": "string",
                        "check_with": "path",
                        "meta": _m(
                            "保管日志文件，默认 ~/.hipgate/custody/<清单目录名>/journal.jsonl",
                            "custody journal file, default ~/.hipgate/custody/<inventory dir name>/journal.jsonl",
                        ),
                    },
                },
                "meta": _m("分段保管参数", "split-custody settings"),
            },
            "exchange": {
                "type": "dict",
                "schema": EXCHANGE,
                "meta": _m(
                    "与国家平台的数据交换（中间件）", "data exchange with the national platform (the middleware)"
                ),
            },
            "backup": {
                "type": "dict",
                "required": True,
                "schema": {
                    "full_max_age_hours": {
                        "type": "integer",
                        "required": True,
                        "min": 1,
                        "max": 24 * 31,
                        "meta": _m(
                            "最新全量备份允许的最大时长（小时）", "maximum age of the newest full backup, in hours"
                        ),
                    },
                    "retention_full": {
                        "type": "integer",
                        "required": True,
                        "min": 1,
                        "meta": _m("每个仓库保留的全量备份份数", "full backups kept per repository"),
                    },
                    "full_schedule": {
                        "type": "string",
                        "check_with": "oncalendar",
                        "meta": _m("全量备份时间（systemd OnCalendar）", "full-backup time (systemd OnCalendar)"),
                    },
                    "diff_schedule": {
                        "type": "string",
                        "check_with": "oncalendar",
                        "meta": _m(
                            "差异备份时间（systemd OnCalendar）", "differential-backup time (systemd OnCalendar)"
                        ),
                    },
                    "restore_test_schedule": {
                        "type": "string",
                        "check_with": "oncalendar",
                        "meta": _m("恢复演练时间（systemd OnCalendar）", "restore-test time (systemd OnCalendar)"),
                    },
                },
                "meta": _m("备份策略", "backup policy"),
            },
        },
        "meta": _m("hipgate 设置", "hipgate settings"),
    },
}
