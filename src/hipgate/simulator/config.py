"""The simulator's configuration file (YAML). Relative paths are relative to the file.

```yaml
listen: {host: 10.232.1.10, port: 443}          # platform-facing HTTPS
tls:
  cert: server.crt                              # PEM chain, then the key
  key: server.key
  client_ca: clients-ca.crt                     # optional: require a client certificate it signed
admin: {host: 127.0.0.1, port: 8443}            # control API, plain HTTP, loopback only
state_dir: /var/lib/hipgate-simulator           # ledger.sqlite3 and uploads/
interface: interfaces/national-platform.openapi.yaml   # optional: the project's document
province: "440000"                              # optional: the first sender's division
seed: 17                                        # everything generated follows from it
anomaly_share: 0.02                             # share of accepted records that get an anomaly
clock_tolerance: 300                            # seconds inf_time may be off (-1103)
retry_after: 2                                  # default Retry-After of the 429/503 faults
keep_files: false                               # keep a history file's chunks after parsing
signing: {signtype: SM2, key: platform-sign.key, cainfo: "5A01"}   # the simulator's reply signature
senders:                                        # who may call, one entry per certificate
  - {sender_code: "44000001", cainfo: "3F9C", signtype: SM2, public: mw-sign.pem}
  - {sender_code: "44000002", cainfo: "3F9D", signtype: ECDSA, public: mw2-sign.crt,
     infnos: ["4101", "9101", "9102", "9103"], revoked: false}
```

`public` is a PEM public key or certificate; `infnos` limits the transactions a sender may call (else
-1004); `revoked: true` refuses its certificate (-1102). Several entries may share a sender_code (several
certificates). The admin host must be a loopback address (refused otherwise).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hipgate.paths import project_root

SENDER_CODE_RE = re.compile(r"[1-9][0-9]0000(0[1-9]|[1-9][0-9])")
CAINFO_RE = re.compile(r"[0-9A-F]{2,64}")
SIGNTYPES = ("SM2", "ECDSA")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the field."""


@dataclass(frozen=True)
class SenderCert:
    sender_code: str
    cainfo: str
    signtype: str
    public: Path
    infnos: frozenset[str] | None = None  # None: every transaction
    revoked: bool = False


@dataclass(frozen=True)
class Config:
    listen_host: str
    listen_port: int
    cert: Path
    key: Path
    admin_host: str
    admin_port: int
    state_dir: Path
    signing_signtype: str
    signing_key: Path
    signing_cainfo: str
    senders: tuple[SenderCert, ...]
    province: str
    interface: Path
    client_ca: Path | None = None
    seed: int = 0
    anomaly_share: float = 0.02
    clock_tolerance: int = 300
    retry_after: int = 2
    keep_files: bool = False


def _get(doc: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
    if name not in doc:
        if required:
            raise ConfigError(f"{name}: required / 必填")
        return None
    value = doc[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise ConfigError(f"{name}: expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _port(doc: dict[str, Any], where: str) -> tuple[str, int]:
    host = _get(doc, "host", str)
    port = _get(doc, "port", int)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{where}.port: {port} is not a port / 不是合法端口")
    return host, port


def _path(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def _sender(base: Path, i: int, doc: Any) -> SenderCert:
    where = f"senders[{i}]"
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping")
    code = str(_get(doc, "sender_code", (str, int)))
    if not SENDER_CODE_RE.fullmatch(code):
        raise ConfigError(f"{where}.sender_code: {code!r} is not a sender code (province division + 2-digit node)")
    cainfo = _get(doc, "cainfo", str)
    if not CAINFO_RE.fullmatch(cainfo):
        raise ConfigError(f"{where}.cainfo: upper-case hex serial number expected / 应为大写十六进制序列号")
    signtype = _get(doc, "signtype", str)
    if signtype not in SIGNTYPES:
        raise ConfigError(f"{where}.signtype: one of {', '.join(SIGNTYPES)}")
    infnos = _get(doc, "infnos", list, required=False)
    unknown = set(doc) - {"sender_code", "cainfo", "signtype", "public", "infnos", "revoked"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    return SenderCert(
        sender_code=code,
        cainfo=cainfo,
        signtype=signtype,
        public=_path(base, _get(doc, "public", str)),
        infnos=frozenset(str(x) for x in infnos) if infnos is not None else None,
        revoked=bool(doc.get("revoked", False)),
    )


KNOWN = {
    "listen", "tls", "admin", "state_dir", "interface", "province", "seed", "anomaly_share", "clock_tolerance",
    "retry_after", "keep_files", "signing", "senders",
}  # fmt: skip


def parse_config(doc: Any, base: Path) -> Config:
    if not isinstance(doc, dict):
        raise ConfigError("the config must be a mapping / 配置应为映射")
    unknown = set(doc) - KNOWN
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)} / 未知配置项")
    listen_host, listen_port = _port(_get(doc, "listen", dict), "listen")
    admin_host, admin_port = _port(_get(doc, "admin", dict), "admin")
    try:
        loopback = ipaddress.ip_address(admin_host).is_loopback
    except ValueError:
        loopback = admin_host == "localhost"
    if not loopback:
        # The control API can make the platform lose requests: never reachable from the platform network.
        raise ConfigError(f"admin.host: {admin_host} is not a loopback address / 管理端口只能监听回环地址")
    if admin_host == listen_host and admin_port == listen_port and admin_port != 0:
        raise ConfigError("admin: the admin port must not be the platform port / 管理端口不能与平台端口相同")
    tls = _get(doc, "tls", dict)
    signing = _get(doc, "signing", dict)
    if signing.get("signtype") not in SIGNTYPES:
        raise ConfigError(f"signing.signtype: one of {', '.join(SIGNTYPES)}")
    cainfo = str(_get(signing, "cainfo", str))
    if not CAINFO_RE.fullmatch(cainfo):
        raise ConfigError("signing.cainfo: upper-case hex serial number expected")
    senders = _get(doc, "senders", list)
    if not senders:
        raise ConfigError("senders: at least one sender / 至少一个发送方")
    parsed = tuple(_sender(base, i, s) for i, s in enumerate(senders))
    province = str(doc.get("province") or parsed[0].sender_code[:6])
    if not re.fullmatch(r"[1-9][0-9]0000", province):
        raise ConfigError(f"province: {province!r} is not a province-level division (NN0000)")
    share = float(_get(doc, "anomaly_share", (int, float), required=False) or 0.0)
    if not 0.0 <= share <= 1.0:
        raise ConfigError("anomaly_share: between 0 and 1")
    client_ca = tls.get("client_ca")
    return Config(
        listen_host=listen_host,
        listen_port=listen_port,
        cert=_path(base, _get(tls, "cert", str)),
        key=_path(base, _get(tls, "key", str)),
        client_ca=_path(base, client_ca) if client_ca else None,
        admin_host=admin_host,
        admin_port=admin_port,
        state_dir=_path(base, _get(doc, "state_dir", str)),
        interface=_path(base, doc["interface"])
        if doc.get("interface")
        else project_root() / "interfaces" / "national-platform.openapi.yaml",
        province=province,
        seed=int(doc.get("seed", 0)),
        anomaly_share=share,
        clock_tolerance=int(doc.get("clock_tolerance", 300)),
        retry_after=int(doc.get("retry_after", 2)),
        keep_files=bool(doc.get("keep_files", False)),
        signing_signtype=signing["signtype"],
        signing_key=_path(base, _get(signing, "key", str)),
        signing_cainfo=cainfo,
        senders=parsed,
    )


def load_config(path: Path) -> Config:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_config(doc, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
