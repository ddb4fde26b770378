"""Runs ON the checked host (sent over SSH to `python3 -`, standard library only): measures, never
judges. Reads a JSON spec from argv[1], prints one JSON document of raw observations.

Kept free of hipgate imports: the host has only Python 3's standard library."""

import concurrent.futures
import errno
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import time


def dns_query(server, name, timeout):
    """One A query over UDP 53; returns rcode and the A records (or the error)."""
    qid = random.randint(0, 0xFFFF)
    qname = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack(">HH", 1, 1)
    start = time.monotonic()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.sendto(packet, (server, 53))
        while True:
            data, _ = sock.recvfrom(4096)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    except OSError as exc:
        return {"server": server, "name": name, "rcode": None, "answers": [], "error": _err(exc)}
    finally:
        sock.close()
    flags, qd, an = struct.unpack(">HHH", data[2:8])
    pos = 12
    for _ in range(qd):
        pos = _skip_name(data, pos) + 4
    answers = []
    for _ in range(an):
        pos = _skip_name(data, pos)
        rtype, _cls, _ttl, rdlen = struct.unpack(">HHIH", data[pos : pos + 10])
        pos += 10
        if rtype == 1 and rdlen == 4:
            answers.append(socket.inet_ntoa(data[pos : pos + 4]))
        pos += rdlen
    ms = round((time.monotonic() - start) * 1000, 1)
    return {"server": server, "name": name, "rcode": flags & 0xF, "answers": answers, "error": "", "ms": ms}


def _skip_name(data, pos):
    while True:
        length = data[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        if length == 0:
            return pos + 1
        pos += length + 1


def _err(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    return errno.errorcode.get(getattr(exc, "errno", None) or 0, type(exc).__name__)


def tcp_connect(address, port, timeout):
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            result = "open"
    except ConnectionRefusedError:
        result = "refused"
    except OSError as exc:
        result = _err(exc)
    return {"address": address, "port": port, "result": result, "ms": round((time.monotonic() - start) * 1000, 1)}


def ping(address, timeout):
    if not shutil.which("ping"):
        return {"address": address, "rc": None, "output": "ping not installed"}
    res = subprocess.run(
        ["ping", "-n", "-c", "1", "-W", str(max(1, int(timeout))), address],
        capture_output=True,
        text=True,
        check=False,
    )
    return {"address": address, "rc": res.returncode, "output": (res.stdout + res.stderr).strip()[-300:]}


def run(argv):
    try:
        res = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        # stderr only on failure: swanctl prints plugin-loading notices on every call.
        err = res.stderr[-1000:] if res.returncode != 0 else ""
        return {"argv": argv, "rc": res.returncode, "stdout": res.stdout[-6000:], "stderr": err}
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"argv": argv, "rc": None, "stdout": "", "stderr": type(exc).__name__}


def main():
    spec = json.loads(sys.argv[1])
    timeout = float(spec.get("timeout", 2))
    out = {"hostname": socket.gethostname(), "euid": os.geteuid()}
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        dns = [pool.submit(dns_query, s, n, timeout) for s in spec["dns_servers"] for n in spec["names"]]
        out["dns"] = [f.result() for f in dns]
        resolved = sorted({a for d in out["dns"] for a in d["answers"]})
        addresses = list(dict.fromkeys(spec.get("extra_addresses", []) + resolved))
        tcp = [pool.submit(tcp_connect, a, p, timeout) for a in addresses for p in spec["tcp_ports"]]
        icmp = [pool.submit(ping, a, timeout) for a in addresses] if spec.get("icmp") else []
        routes = {a: pool.submit(run, ["ip", "-j", "route", "get", a]) for a in spec["route_probes"]}
        vpn = pool.submit(run, ["swanctl", "--list-sas"]) if spec.get("vpn") else None
        chrony = pool.submit(run, ["chronyc", "-n", "tracking"]) if spec.get("time") else None
        out["tcp"] = [f.result() for f in tcp]
        out["icmp"] = [f.result() for f in icmp]
        out["routes"] = {a: f.result() for a, f in routes.items()}
        out["vpn"] = vpn.result() if vpn else None
        out["time"] = chrony.result() if chrony else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
