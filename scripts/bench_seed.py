"""Measure the lab seed data: generating N settlements (with their items), the same as a COPY text stream
(the psql script `hipgate lab seed-data` sends to the database host), and, as the anchor, PostgreSQL
loading that very text with a plain `psql -f` COPY into the exchange tables of a local cluster; then
the whole path at once, the generator piping into psql as the lab does (both processes on this machine).

Each phase runs in a child process of its own and reports its peak RSS. Writes
benchmarks/results-seed.md."""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import ROOT, measured_by, write_results

sys.path.insert(0, str(ROOT / "tests"))
from helpers import PG_BIN, postgres_cluster

REGIONS = ("440100", "440300", "440600", "441900")
YEARS = (2023, 2024)


def plan_for(records: int) -> dict:
    per = -(-records // (len(REGIONS) * len(YEARS)))
    return {"seed": 1, "regions": REGIONS, "years": YEARS, "per_region_year": per, "record_types": ("setl",)}


def child(phase: str, records: int, out: str | None) -> None:
    """One phase, in this (child) process: print its numbers as JSON."""
    from hipgate.exchange.dataset import load_dataset
    from hipgate.exchange.seed import run
    from hipgate.exchange.seed.bad import Manifest
    from hipgate.exchange.seed.dictionaries import load_dictionaries

    ds = load_dataset()
    plan = run.Plan(**plan_for(records), bad_share=0.01, storable_only=True)
    manifest = Manifest(sink=lambda entry: None)
    start = time.monotonic()
    cpu = time.process_time()
    size = items = 0
    if phase == "generate":
        for part in plan.partitions():
            for rec in run.records(plan, part, manifest, ds, load_dictionaries()):
                items += len(rec["setl_item"])
    else:
        sink = open(out, "wb") if out else sys.stdout.buffer  # noqa: SIM115
        for piece in run.script(plan, manifest, ds=ds):
            sink.write(piece)
            size += len(piece)
        sink.flush()
        if out:
            sink.close()
    seconds = time.monotonic() - start
    done = {
        "phase": phase,
        "records": sum(manifest.records.values()),
        "items": items,
        "bad": sum(manifest.counts.values()),
        "bytes": size,
        "seconds": seconds,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(done), file=sys.stderr if phase == "pipe" else sys.stdout)


def _child(phase: str, records: int, out: str | None = None, **kw) -> subprocess.Popen:
    argv = [sys.executable, __file__, "--child", phase, "--records", str(records)]
    if out:
        argv += ["--file", out]
    return subprocess.Popen(argv, **kw)


def _result(proc: subprocess.Popen, stream: str = "stdout") -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"phase failed:\n{(err or b'')[-3000:].decode(errors='replace')}")
    text = (out if stream == "stdout" else err).decode()
    return json.loads(text.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-seed.md"))
    parser.add_argument("--child")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.records, args.file)
        return
    work = Path(tempfile.mkdtemp(prefix="hipgate-bench-seed-"))
    load_before = os.getloadavg()[0]
    try:
        gen = _result(_child("generate", args.records, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        print(f"generate: {gen}", flush=True)
        script = work / "seed.sql"
        text = _result(_child("copy", args.records, str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        print(f"copy text: {text}", flush=True)
        anchor = pipe = None
        if (PG_BIN / "initdb").exists() and shutil.which("psql"):
            anchor, pipe = _postgres(args.records, script)
            print(f"psql COPY: {anchor}\npipe: {pipe}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loads = (load_before, os.getloadavg()[0])
    write_results(Path(args.out), _report(args.records, gen, text, anchor, pipe, loads))


def _postgres(records: int, script: Path) -> tuple[dict, dict]:
    from hipgate.exchange.dataset import dataset_ddl, load_dataset

    ddl = dataset_ddl(load_dataset())
    settings = ("max_wal_size=4GB", "checkpoint_timeout=30min")
    with postgres_cluster("peer", settings) as cluster:
        psql = [*cluster["as_pg"], "psql", "-X", "-q", "-h", str(cluster["sock"]), "-p", str(cluster["port"])]
        out = {}
        for name in ("anchor", "pipe"):
            db = f"exchange_{name}"
            subprocess.run([*psql, "-d", "postgres", "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
            subprocess.run([*psql, "-d", db, "-v", "ON_ERROR_STOP=1", "-f", "-"], input=ddl.encode(), check=True)
            load = [*psql, "-d", db, "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-"]
            start = time.monotonic()
            if name == "anchor":  # the saved text, as a plain COPY: what PostgreSQL alone takes
                with script.open("rb") as f:
                    res = subprocess.run(load, stdin=f, capture_output=True, check=False)
                if res.returncode:
                    raise SystemExit(res.stderr.decode(errors="replace")[-3000:])
                out[name] = {"seconds": time.monotonic() - start}
            else:  # the lab's path: the generator's stream piped into psql
                sink = subprocess.Popen(load, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
                gen = _child("pipe", records, stdout=sink.stdin, stderr=subprocess.PIPE)
                assert sink.stdin is not None and sink.stderr is not None
                sink.stdin.close()  # the generator holds the pipe now
                numbers = _result(gen, "stderr")
                err = sink.stderr.read()
                if sink.wait():
                    raise SystemExit(err.decode(errors="replace")[-3000:])
                out[name] = {**numbers, "seconds": time.monotonic() - start}
            rows = subprocess.run(
                [*psql, "-d", db, "-At", "-c", "SELECT (SELECT count(*) FROM exchange.setl) || ' ' ||"
                 " (SELECT count(*) FROM exchange.setl_item) || ' ' || pg_database_size(current_database())"],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            out[name] |= {"setl": int(rows[0]), "setl_item": int(rows[1]), "db_bytes": int(rows[2])}
            subprocess.run([*psql, "-d", "postgres", "-c", f"DROP DATABASE {db}"], check=True, capture_output=True)
        return out["anchor"], out["pipe"]


def _report(
    records: int, gen: dict, text: dict, anchor: dict | None, pipe: dict | None, loads: tuple[float, float]
) -> list[str]:
    n, mb = gen["records"], text["bytes"] / 1e6
    rows = text["records"] + gen["items"]
    lines = [
        "# Seed data benchmark / 实验数据生成基准",
        "",
        f"{measured_by('bench-seed')}: {n:,} settlements (`setl`, {gen['items']:,} items: {rows:,} rows) in "
        f"{len(REGIONS)} regions × {len(YEARS)} years, 1 % bad (storable kinds: the tables' stream), seed 1. "
        f"COPY text: {mb:,.0f} MB ({text['bytes'] / n:,.0f} bytes a settlement with its items). "
        "Each phase is a process of its own; peak RSS is that process's. "
        f"Load average at the start and the end: {loads[0]:.1f}, {loads[1]:.1f} (other work shares these cores).",
        "",
        "| phase | wall | CPU | records/s | MB/s | peak RSS |",
        "|---|---|---|---|---|---|",
        f"| generate (records as dicts) | {gen['seconds']:.1f} s | {gen['cpu_seconds']:.1f} s | "
        f"{n / gen['seconds']:,.0f} | {mb / gen['seconds']:.1f}¹ | {gen['peak_rss_mib']:.0f} MiB |",
        f"| generate + COPY text (psql script to a file) | {text['seconds']:.1f} s | {text['cpu_seconds']:.1f} s | "
        f"{n / text['seconds']:,.0f} | {mb / text['seconds']:.1f} | {text['peak_rss_mib']:.0f} MiB |",
    ]
    if anchor and pipe:
        lines += [
            f"| anchor: `psql -f` of that text, plain COPY into the exchange tables | {anchor['seconds']:.1f} s | – | "
            f"{n / anchor['seconds']:,.0f} | {mb / anchor['seconds']:.1f} | – |",
            f"| the lab's path: generator piped into `psql -f -` | {pipe['seconds']:.1f} s | "
            f"{pipe['cpu_seconds']:.1f} s² | {n / pipe['seconds']:,.0f} | {mb / pipe['seconds']:.1f} | "
            f"{pipe['peak_rss_mib']:.0f} MiB² |",
            "",
            f"Ratio generation + COPY text / plain COPY: {text['seconds'] / anchor['seconds']:.2f} "
            f"(generation alone: {gen['seconds'] / anchor['seconds']:.2f}). Loaded: {anchor['setl']:,} settlements and "
            f"{anchor['setl_item']:,} items, database {anchor['db_bytes'] / 2**30:.1f} GiB.",
        ]
    else:
        lines += ["", "No PostgreSQL 15 binaries here: no COPY anchor (scripts/setup --with-test-tools installs them)."]
    lines += [
        "",
        "¹ the COPY text's size over the generation time: the data rate generation alone could feed. "
        "² the generator's process.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
