"""Runs ON the checked terminal (sent over SSH to `python3 -`, standard library only): OS release,
memory, free disk, browsers present with their versions. Measures, never judges."""

import json
import os
import shutil
import subprocess
import sys


def os_release():
    values = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                values[key] = value.strip('"')
    except OSError:
        pass
    return {k: values.get(k, "") for k in ("ID", "ID_LIKE", "VERSION_ID", "PRETTY_NAME")}


def mem_total_kib():
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 0


def browsers(names):
    found = []
    for name in names:
        path = shutil.which(name)
        if not path:
            continue
        try:
            res = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
            version = (res.stdout or res.stderr).strip().splitlines()[0] if (res.stdout or res.stderr).strip() else ""
        except (OSError, subprocess.TimeoutExpired):
            version = ""
        found.append({"name": name, "path": path, "version": version})
    return found


def main():
    spec = json.loads(sys.argv[1])
    disk = os.statvfs(spec.get("disk_path", "/"))
    print(
        json.dumps(
            {
                "os": os_release(),
                "mem_total_kib": mem_total_kib(),
                "disk_path": spec.get("disk_path", "/"),
                "disk_free_bytes": disk.f_bavail * disk.f_frsize,
                "browsers": browsers(spec["browsers"]),
            }
        )
    )


if __name__ == "__main__":
    main()
