"""Measure the data exchange end to end on a deployed lab (both halves, the tunnel, the platform simulator):

1. history: `history-export` then `history-upload` of one region-year of N settlements (default 2 000 000,
   seeded without capture, as history that predates the middleware): time, MB/s; the anchor is a plain
   `scp` of the same files from the front-end server to the platform's SFTP drop over the same tunnel
   (the tunnel's byte counters are read before and after, so the copy is proven to go through it);
2. incremental throughput: M settlements written with capture, then one `incremental` run: records/s;
3. lag: for a while, a steady stream of changed settlements on the database host while the deployed
   timer runs the incremental upload; p50/p99 of each record's lag from its captured change in the
   exchange database to the platform's acknowledgement recorded back in it (the middleware's lag samples);
4. peak RSS of each half: the middleware's runs (the largest process of each, from getrusage), the relay
   service (VmHWM since it was restarted at the start).

Writes benchmarks/results-exchange.md. The lab is booted and deployed unless --reuse; removed unless --keep."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchlib import HIPGATE, ROOT, lab_inventory, measured_by, run, write_results

from hipgate.exchange import deployed
from hipgate.lab import manager

# The history: a region-year no test uploads; the incremental records: the next year of the same region. The
# seed is reproducible and what was uploaded is never sent again: pass another --region for a second run on a lab.
REGION, YEAR = "441900", 2023
NEW_YEAR = 2024
SFTP_USER = "province"  # lab_platform_sftp_user
# Peak RSS of the command's largest process (the run module under sudo), printed last, in KiB.
RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, flush=True)\n"
    "sys.exit(code)\n"
)


def lab_dir(lab: str) -> Path:
    return lab_inventory(lab).parent


def sh(lab: str, host: str, command: str, stdin: str | None = None, check: bool = True) -> str:
    res = subprocess.run(
        ["ssh", "-F", str(lab_dir(lab) / "ssh_config"), host, "sudo", "-n", "sh", "-c", shlex.quote(command)],
        input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if check and res.returncode != 0:
        raise SystemExit(f"{host}: {command}\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return res.stdout


def psql(lab: str, sql: str) -> str:
    return sh(lab, "database", f"runuser -u postgres -- psql -d exchange -XAtqc {shlex.quote(sql)}").strip()


def middleware_run(lab: str, subcommand: str, *args: str) -> tuple[dict[str, Any], float, int]:
    """A middleware run on its host as the service runs it: its JSON summary, wall seconds, peak RSS KiB."""
    command = f"python3 -c {shlex.quote(RSS_WRAPPER)} {deployed.host_command(subcommand, *args)}"
    start = time.monotonic()
    out = sh(lab, "middleware", command)
    wall = time.monotonic() - start
    lines = out.strip().splitlines()
    rss = int(lines[-1].split()[1])
    summary = next(json.loads(line) for line in reversed(lines[:-1]) if line.startswith("{"))
    return summary, wall, rss


def tunnel_bytes(lab: str) -> int:
    """Bytes out of the front-end server's installed CHILD_SAs (ESP)."""
    out = sh(lab, "frontend", "swanctl --list-sas --raw 2>/dev/null")
    return sum(int(word.split("=")[1].rstrip("}")) for word in out.split() if word.startswith("bytes-out="))


def relay_hwm_kib(lab: str) -> int:
    pid = sh(lab, "frontend", "systemctl show -p MainPID --value hipgate-exchange-relay").strip()
    status = sh(lab, "frontend", f"cat /proc/{int(pid)}/status")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))


def deploy(lab: str) -> float:
    start = time.monotonic()
    inv = lab_inventory(lab)
    run([HIPGATE, "lab", "up", "--name", lab])
    run([HIPGATE, "deploy", "-i", str(inv)])
    token = ["--token-file", str(lab_dir(lab) / "custody" / "operator.token")]
    if run([HIPGATE, "custody", "status", "database", "-i", str(inv), *token], check=False).returncode != 0:
        run([HIPGATE, "custody", "init", "database", "-i", str(inv), *token])
    return time.monotonic() - start


def seed(lab: str, region: str, year: int, count: int, capture: bool) -> float:
    start = time.monotonic()
    run([HIPGATE, "lab", "seed-data", "--name", lab, "--regions", region, "--years", str(year),
         "--record-types", "setl", "--records-per-region-year", str(count), "--replace",
         "--capture" if capture else "--no-capture"])  # fmt: skip
    return time.monotonic() - start


def scp_anchor(lab: str, files: list[dict[str, Any]]) -> tuple[float, int]:
    """The same files copied by plain scp from the front-end server to the platform's SFTP drop, through
    the tunnel: wall seconds, tunnel bytes out during the copy. A throwaway key, removed afterwards."""
    work = "/var/tmp/hipgate-bench"
    sh(lab, "frontend", f"rm -rf {work} && mkdir -m 0700 {work} && ssh-keygen -q -t ed25519 -N '' -f {work}/key")
    pub = sh(lab, "frontend", f"cat {work}/key.pub").strip()
    keys = f"/home/{SFTP_USER}/.ssh/authorized_keys"
    authorize = (f"install -d -m 0700 -o {SFTP_USER} -g {SFTP_USER} /home/{SFTP_USER}/.ssh && "
                 f"cat >> {keys} && chown {SFTP_USER}: {keys} && chmod 0600 {keys}")  # fmt: skip
    sh(lab, "natplat", authorize, stdin=pub + "\n")
    ssh_config = str(lab_dir(lab) / "ssh_config")
    try:
        names = []
        for f in files:  # the middleware's files to the front-end server, through this machine
            name = Path(f["path"]).name
            names.append(f"{work}/{name}")
            with subprocess.Popen(["ssh", "-F", ssh_config, "middleware", "sudo", "-n", "cat", f["path"]],
                                  stdout=subprocess.PIPE) as src:  # fmt: skip
                subprocess.run(["ssh", "-F", ssh_config, "frontend", "sudo", "-n", "sh", "-c",
                                shlex.quote(f"cat > {work}/{name}")], stdin=src.stdout, check=True)  # fmt: skip
        target = manager.load(lab).platform_address(11)  # sftp.natplat.lab (lab_platform_simulator)
        before = tunnel_bytes(lab)
        start = time.monotonic()
        sh(lab, "frontend", f"scp -q -i {work}/key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                            f"-o BatchMode=yes {' '.join(names)} {SFTP_USER}@{target}:/inbox/")  # fmt: skip
        wall = time.monotonic() - start
        return wall, tunnel_bytes(lab) - before
    finally:
        sh(lab, "natplat", f"sed -i '\\#{pub.split()[1]}#d' {keys}; rm -f /srv/sftp/inbox/*.jsonl.gz", check=False)
        sh(lab, "frontend", f"rm -rf {work}", check=False)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def lag_stream(lab: str, region: str, seconds: int, per_second: int) -> tuple[list[float], int]:
    """Change `per_second` of the incremental records every second for `seconds` while the timer runs; then
    wait for them to be acknowledged. Every lag sample of the messages that carried them; how many changed."""
    since = psql(lab, "SELECT clock_timestamp()")
    sh(lab, "middleware", "systemctl start hipgate-exchange-incremental.timer")
    changed, offset = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        psql(lab, "UPDATE exchange.setl SET fixmedins_name = fixmedins_name || '*', updt_time = now() WHERE setl_id IN"
                  f" (SELECT setl_id FROM exchange.setl WHERE mdtrtarea_admvs = '{region}'"
                  f" AND setl_time >= '{NEW_YEAR}-01-01'"
                  f" ORDER BY setl_id OFFSET {offset} LIMIT {per_second})")  # fmt: skip
        changed += per_second
        offset += per_second
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    wait_until = time.monotonic() + 300
    pending = "SELECT count(*) FROM exchange.hipgate_outbox WHERE status = 'pending'"
    behind = (
        "SELECT count(*) FROM exchange.hipgate_change c JOIN exchange.hipgate_watermark w USING (record_type)"
        " WHERE c.xid >= w.horizon"
    )  # changes the incremental runs have not passed yet
    while psql(lab, behind) != "0" or psql(lab, pending) != "0":
        if time.monotonic() > wait_until:
            raise SystemExit("the changed records were not all acknowledged within 300 s")
        time.sleep(5)
    sh(lab, "middleware", "systemctl stop hipgate-exchange-incremental.timer")
    raw = psql(lab, "SELECT coalesce(string_agg(s::text, ' '), '') FROM exchange.hipgate_lag_sample l"
                    " JOIN exchange.hipgate_outbox o USING (msgid), unnest(l.lags_s) s"
                    f" WHERE o.created_at >= '{since}'")  # fmt: skip
    return [float(x) for x in raw.split()], changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="bench-ex", help="the lab's name (its own: not the tests' labs)")
    parser.add_argument("--records", type=int, default=2_000_000, help="history settlements")
    parser.add_argument("--incremental", type=int, default=20_000, help="settlements for the incremental run")
    parser.add_argument("--lag-seconds", type=int, default=180)
    parser.add_argument("--lag-rate", type=int, default=20, help="changed settlements a second")
    parser.add_argument("--region", default=REGION, help="the history's division (not uploaded on this lab yet)")
    parser.add_argument("--reuse", action="store_true", help="the lab is up and deployed already")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-exchange.md"))
    args = parser.parse_args()
    lab, region = args.name, args.region
    timings: dict[str, float] = {}
    load = [os.getloadavg()[0]]
    try:
        if not args.reuse:
            print(f"==> lab up + deploy ({lab})", flush=True)
            timings["deploy"] = deploy(lab)
        sh(lab, "middleware", "systemctl stop hipgate-exchange-incremental.timer hipgate-exchange-downloads.timer")
        sh(lab, "frontend", "systemctl restart hipgate-exchange-relay")
        print(f"==> seed {args.records:,} history settlements", flush=True)
        timings["seed history"] = seed(lab, region, YEAR, args.records, capture=False)
        history_dir = "/var/tmp/hipgate-bench-history"
        sh(lab, "middleware", f"rm -rf {history_dir} && install -d -o hipgate-exchange -m 0700 {history_dir}")
        print("==> history-export", flush=True)
        exported, export_wall, export_rss = middleware_run(lab, "history-export", "--region", region,
                                                           "--year", str(YEAR), "--dir", history_dir)  # fmt: skip
        if not exported.get("files"):
            raise SystemExit(f"nothing exported for {region} {YEAR} (uploaded already? pass another --region)")
        files = [{**f, "path": f"{history_dir}/{f['file_name']}"} for f in exported.get("files", [])
                 if f["file_name"].startswith("setl_")]  # fmt: skip
        size = sum(f["file_size"] for f in files)
        records = sum(f["record_count"] for f in files)
        print(f"==> history-upload ({size / 1e6:,.0f} MB)", flush=True)
        before = tunnel_bytes(lab)
        uploaded, upload_wall, upload_rss = middleware_run(lab, "history-upload", "--region", region,
                                                           "--year", str(YEAR), "--progress", "json")  # fmt: skip
        upload_tunnel = tunnel_bytes(lab) - before
        if uploaded.get("errors") or len(uploaded.get("completed", [])) != len(files):
            raise SystemExit(f"the history upload did not complete: {uploaded}")
        print("==> scp anchor", flush=True)
        scp_wall, scp_tunnel = scp_anchor(lab, files)
        print(f"==> incremental: {args.incremental:,} settlements", flush=True)
        timings["seed incremental"] = seed(lab, region, NEW_YEAR, args.incremental, capture=True)
        inc, inc_wall, inc_rss = middleware_run(lab, "incremental")
        if not inc.get("accepted"):
            raise SystemExit(f"the incremental run sent nothing (sent already? pass another --region): {inc}")
        print(f"==> lag: {args.lag_rate}/s for {args.lag_seconds} s under the timer", flush=True)
        lags, changed = lag_stream(lab, region, args.lag_seconds, args.lag_rate)
        relay_kib = relay_hwm_kib(lab)
        load.append(os.getloadavg()[0])
    finally:
        if not args.keep:
            run([HIPGATE, "lab", "down", "--name", lab], check=False)
    mb = size / 1e6
    ratio = scp_wall / upload_wall  # (bytes / upload time) / (bytes / scp time)
    accepted = int(inc.get("accepted", 0))
    lines = [
        "# Exchange benchmark / 数据交换性能基准",
        "",
        f"{measured_by('bench-exchange')}, on the lab `{lab}` (every host a systemd-nspawn container on this "
        f"machine; the tunnel strongSwan between frontend and natplat). Load average at the start and the end: "
        f"{load[0]:.1f}, {load[-1]:.1f}.",
        "",
        "| what | records | bytes | wall | rate | peak RSS |",
        "|---|---|---|---|---|---|",
        f"| history-export (region {region}, {YEAR}) | {records:,} | {mb:,.1f} MB | {export_wall:,.1f} s | "
        f"{records / export_wall:,.0f} records/s | {export_rss / 1024:,.0f} MiB |",
        f"| history-upload through the relay and the tunnel | {records:,} | {mb:,.1f} MB | {upload_wall:,.1f} s | "
        f"{mb / upload_wall:,.1f} MB/s | {upload_rss / 1024:,.0f} MiB |",
        f"| anchor: `scp` of the same files, frontend → the platform's SFTP drop | – | {mb:,.1f} MB | "
        f"{scp_wall:,.1f} s | {mb / scp_wall:,.1f} MB/s | – |",
        f"| incremental run (4101, batches of the deployed size) | {accepted:,} | – | {inc_wall:,.1f} s | "
        f"{accepted / inc_wall:,.0f} records/s | {inc_rss / 1024:,.0f} MiB |",
        f"| relay service (front-end server), whole run | – | – | – | – | {relay_kib / 1024:,.0f} MiB |",
        "",
        f"History upload / scp: **{ratio:.2f}** (goal ≥ 0.8). Tunnel bytes out during the upload: "
        f"{upload_tunnel / 1e6:,.1f} MB; during the scp: {scp_tunnel / 1e6:,.1f} MB (both went through the tunnel).",
        "",
        f"Lag under the deployed timer (`*-*-* *:*:00`, one run a minute), {changed:,} changed settlements at "
        f"{args.lag_rate}/s for {args.lag_seconds} s: {len(lags):,} samples, p50 **{percentile(lags, 0.5):.1f} s**, "
        f"p99 **{percentile(lags, 0.99):.1f} s**, max {max(lags):.1f} s, mean {statistics.fmean(lags):.1f} s "
        "(from each record's captured change to the acknowledgement recorded back in the exchange database).",
        "",
        "Set-up, not measured: " + ", ".join(f"{k} {v:,.0f} s" for k, v in timings.items()) + ".",
        "",
    ]
    write_results(Path(args.out), lines)


if __name__ == "__main__":
    main()
