"""CPU cost of the exchange checks and of the simulator reading a history file, before and after issue 17
item 4: records/s of the dataset check (`validate_record`), of the interface-document check of 4101 records
(one request per record before, one per batch of up to 500 after), and of the simulator parsing a completed
history file into its ledger (`uploads.parse_file`).

"Before" is the code at BASE, the commit this work started from, exported with `git archive` and run in the
same benchmark run; "after" is this checkout. Both read the same records: settlements (`setl`, with their
items) made once by the seed generator (hipgate.exchange.seed, seed 1, 1 % bad of every kind), written as a
history file (gzip JSON Lines). Each phase runs in a child process of its own; the figures are CPU time
(process_time: the machine is shared, wall time is shown too), the best of a few rounds in which before and
after take turns. The parent checks that before and after say
the same of every record (the violations, zh and en) and leave the same ledger (every row of `records`,
bodies byte for byte, and the anomalies published). Anchors of the same run: the before figure, and for the
parse `json.loads` of the file's lines, the least a reader must do. Writes benchmarks/results-exchange-cpu.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import ROOT, measured_by, write_results

BASE = "a5ea48f"  # main before issue 17 item 4 (compiled checks, batch document checks, batched ledger writes)
SEED, REGION, YEAR, BAD_SHARE = 1, "440100", 2024, 0.01


# ---------------------------------------------------------------- children (run with either tree)


def _records(path: Path, n: int) -> tuple[list[bytes], list[dict[str, Any]]]:
    with gzip.open(path, "rb") as f:
        lines = [line for _, line in zip(range(n), f, strict=False)]
    return lines, [json.loads(line) for line in lines]


def _digest(found: list[list[Any]]) -> tuple[int, str]:
    """(records with violations, SHA-256 of every violation's path, rule, zh and en, record by record)."""
    flat = [[(v.path, v.rule, v.zh, v.en) for v in vs] for vs in found]
    return sum(1 for vs in flat if vs), hashlib.sha256(json.dumps(flat, ensure_ascii=False).encode()).hexdigest()


def _timed(fn: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - cpu, time.perf_counter() - wall


def child_validate(path: Path, n: int) -> dict[str, Any]:
    from hipgate.exchange.dataset import load_dataset, validate_record

    ds = load_dataset()
    rt = ds.records["setl"]
    _, records = _records(path, n)
    found, cpu, wall = _timed(lambda: [validate_record(rt, r, ds) for r in records])
    bad, digest = _digest(found)
    return {"records": len(records), "cpu": cpu, "wall": wall, "bad": bad, "digest": digest}


def child_interface(path: Path, n: int) -> dict[str, Any]:
    from types import SimpleNamespace

    from hipgate.exchange import incremental
    from hipgate.exchange.dataset import load_dataset
    from hipgate.exchange.interface import load_interface

    ds = load_dataset()
    ex = SimpleNamespace(ds=ds, iface=load_interface(), sender_code="44000001")
    rt = ds.records["setl"]
    _, records = _records(path, n)
    if hasattr(incremental, "batch_violations"):
        found, cpu, wall = _timed(lambda: incremental.batch_violations(ex, rt, "4101", records))
    else:  # before: each record alone as a one-record request
        found, cpu, wall = _timed(lambda: [incremental.record_violations(ex, rt, "4101", r) for r in records])
    bad, digest = _digest(found)
    return {"records": len(records), "cpu": cpu, "wall": wall, "bad": bad, "digest": digest}


def child_parse(path: Path, n: int) -> dict[str, Any]:
    import sqlite3
    import zlib

    from hipgate.simulator import uploads
    from hipgate.simulator.config import Config
    from hipgate.simulator.context import Env, secret_of
    from hipgate.simulator.contract import load_contract
    from hipgate.simulator.faults import FaultBook
    from hipgate.simulator.ledger import Ledger

    data = path.read_bytes()
    with gzip.open(path, "rb") as f:
        lines = f.read().splitlines()
    state = Path(tempfile.mkdtemp(prefix="hipgate-bench-parse-"))
    try:
        cfg = Config("127.0.0.1", 0, state / "x", state / "x", "127.0.0.1", 0, state, "SM2", state / "x", "5A01", (),
                     "440000", state / "x", seed=17, anomaly_share=0.02, keep_files=True)  # fmt: skip
        env = Env(cfg, load_contract(), Ledger(state), FaultBook(), state / "uploads", secret_of(17))
        upload_id, chunk = "UBENCH", 4 << 20
        uploads.upload_dir(env, upload_id).mkdir(parents=True)
        for i in range(0, len(data), chunk):
            uploads.chunk_path(env, upload_id, i // chunk).write_bytes(data[i : i + chunk])
        with env.ledger.tx() as conn:
            conn.execute(
                "INSERT INTO files (upload_id, file_sha256, sender_code, file_name, admdvs, year, record_type,"
                " file_size, chunk_size, chunk_count, declared_records, status, started_at, file_qry_no, parse_status)"
                " VALUES (?, ?, '44000001', ?, ?, ?, 'setl', ?, ?, ?, ?, 'complete', '2025-01-01 00:00:00', 'FQBENCH',"
                " 'pending')",
                (upload_id, hashlib.sha256(data).hexdigest(), f"setl_{REGION}_{YEAR}_001.jsonl.gz", REGION, YEAR,
                 len(data), chunk, -(-len(data) // chunk), len(lines)),
            )  # fmt: skip
        _, cpu, wall = _timed(lambda: uploads.parse_file(env, upload_id))
        env.ledger.close()
        db = sqlite3.connect(state / "ledger.sqlite3")
        ledger = hashlib.sha256()
        for row in db.execute(
            "SELECT record_type, rec_key, updt_time, day, fingerprint, body, sender_code, msgid, file_qry_no,"
            " versions, duplicates, reversed_at FROM records ORDER BY record_type, rec_key"
        ):
            ledger.update(repr(row).encode())
        anomalies = 0
        for (body,) in db.execute("SELECT body FROM outbox WHERE record_type = 'anomaly' ORDER BY rec_key"):
            item = json.loads(body)
            ledger.update(repr(sorted((k, v) for k, v in item.items() if k not in ("detc_time", "updt_time"))).encode())
            anomalies += 1
        status = db.execute("SELECT parse_status, parsed_records, accepted, invalid_lines FROM files").fetchone()
        db.close()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    _, floor_cpu, _ = _timed(lambda: [json.loads(line) for line in lines])
    # The C work a ledger row needs whatever the Python around it: parse, one sorted encode, zlib level 1, SHA-256.
    encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode

    def c_work() -> None:
        for line in lines:
            body = encode(json.loads(line)).encode()
            zlib.compress(body, 1)
            hashlib.sha256(body).hexdigest()

    _, c_cpu, _ = _timed(c_work)
    return {"records": len(lines), "cpu": cpu, "wall": wall, "ledger": ledger.hexdigest(), "anomalies": anomalies,
            "status": list(status), "json_loads_cpu": floor_cpu, "c_work_cpu": c_cpu}  # fmt: skip


CHILDREN = {"validate": child_validate, "interface": child_interface, "parse": child_parse}


# ---------------------------------------------------------------- the parent


def _before_tree(work: Path) -> Path | None:
    """BASE's src/, datasets/ and interfaces/ (what hipgate reads) under work/before, or None without git."""
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", BASE, "src", "datasets", "interfaces"],
                             capture_output=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"no before tree ({exc}): only the after figures and the json.loads anchor", file=sys.stderr)
        return None
    tree = work / "before"
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(tree, filter="data")
    return tree


def _run(phase: str, tree: Path | None, path: Path, n: int) -> dict[str, Any]:
    env = dict(os.environ)
    if tree is not None:  # the before code first on the path, and its datasets/ and interfaces/
        env["PYTHONPATH"] = str(tree / "src")
        env["HIPGATE_HOME"] = str(tree)
    argv = [sys.executable, __file__, "--child", phase, "--file", str(path), "--records", str(n)]
    res = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=tree or ROOT)
    if res.returncode:
        raise SystemExit(f"{phase} ({'before' if tree else 'after'}) failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{phase} {'before' if tree else 'after'}: {out}", flush=True)
    return out


def _write_file(path: Path, n: int) -> None:
    from hipgate.exchange.dataset import load_dataset
    from hipgate.exchange.seed.generate import Partition, generate

    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        for rec in generate(Partition("setl", REGION, YEAR), n, seed=SEED, bad_share=BAD_SHARE, ds=load_dataset()):
            f.write(dumps(rec).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000, help="settlements for the dataset check and the parse")
    parser.add_argument("--interface-records", type=int, default=5_000, help="settlements for the document check")
    parser.add_argument("--rounds", type=int, default=2, help="turns of before and after; each keeps its best")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-exchange-cpu.md"))
    parser.add_argument("--child")
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](Path(args.file), args.records)))
        return
    work = Path(tempfile.mkdtemp(prefix="hipgate-bench-exchange-cpu-"))
    load_before = os.getloadavg()[0]
    try:
        path = work / f"setl_{REGION}_{YEAR}_001.jsonl.gz"
        _write_file(path, args.records)
        before_tree = _before_tree(work)
        sizes = {
            "validate": args.records,
            "interface": min(args.interface_records, args.records),
            "parse": args.records,
        }
        results: dict[str, dict[str, dict[str, Any] | None]] = {}
        for phase, n in sizes.items():
            # Before and after take turns, and each keeps its best round: other work on the machine slows
            # whichever runs while it is busy, CPU time included (shared cores and caches).
            runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
            for _ in range(args.rounds):
                if before_tree:
                    runs["before"].append(_run(phase, before_tree, path, n))
                runs["after"].append(_run(phase, None, path, n))
            results[phase] = {
                name: max(done, key=lambda r: r["records"] / r["cpu"]) if done else None for name, done in runs.items()
            }
            _same(phase, [*runs["before"], *runs["after"]])
        size = path.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loads = (load_before, os.getloadavg()[0])
    write_results(Path(args.out), _report(results, args.records, size, args.rounds, loads))


def _same(phase: str, runs: list[dict[str, Any]]) -> None:
    """Every run, before or after, said the same of every record and left the same ledger."""
    keys = ("ledger", "anomalies", "status") if phase == "parse" else ("bad", "digest")
    if any(run[k] != runs[0][k] for run in runs for k in keys):
        raise SystemExit(f"{phase}: the runs differ / 各次结果不一致: {runs}")


def _rate(r: dict[str, Any] | None, key: str = "cpu") -> str:
    return f"{r['records'] / r[key]:,.0f}" if r else "–"


def _report(
    results: dict[str, dict[str, Any]], n: int, size: int, rounds: int, loads: tuple[float, float]
) -> list[str]:
    names = {
        "validate": "dataset check, `validate_record` (compiled closures)",
        "interface": "document check of 4101 records (one request per batch of ≤ 500)",
        "parse": "simulator reads a history file into its ledger (`parse_file`)",
    }
    lines = [
        "# Exchange CPU benchmark / 交换中间件与模拟平台 CPU 基准",
        "",
        f"{measured_by('bench-exchange-cpu')}: settlements (`setl`, with their items) from the seed generator "
        f"(seed {SEED}, {BAD_SHARE:.0%} bad of every kind), {n:,} for the dataset check and the parse "
        f"(a {size / 1e6:.1f} MB history file), {results['interface']['after']['records']:,} for the document "
        f"check. Before: the code at `{BASE}` (main before issue 17 item 4), run in the same run. Records/s of "
        f"CPU time, one process per phase, before and after taking turns, the best of {rounds} rounds each (wall "
        "time of that round in brackets). "
        f"Load average at the start and the end: {loads[0]:.1f}, {loads[1]:.1f} (other work shares these 2 cores).",
        "",
        "| phase | records | before, records/s | after, records/s | after / before |",
        "|---|---|---|---|---|",
    ]
    for phase, r in results.items():
        before, after = r["before"], r["after"]
        ratio = f"{(after['records'] / after['cpu']) / (before['records'] / before['cpu']):.1f}×" if before else "–"
        lines.append(
            f"| {names[phase]} | {after['records']:,} | {_rate(before)} ({_rate(before, 'wall')}) | "
            f"{_rate(after)} ({_rate(after, 'wall')}) | {ratio} |"
        )
    p = results["parse"]["after"]
    loads_rate = p["records"] / p["json_loads_cpu"]
    c_rate = p["records"] / p["c_work_cpu"]
    same = "identical" if results["parse"]["before"] else "not compared (no before tree)"
    lines += [
        f"| anchor: `json.loads` of the same file's lines | {p['records']:,} | – | {loads_rate:,.0f} | – |",
        f"| anchor: a ledger row's C work (parse, sorted encode, zlib level 1, SHA-256) | {p['records']:,} | – | "
        f"{c_rate:,.0f} | – |",
        "",
        f"Parse after / `json.loads` of the same lines: {(p['records'] / p['cpu']) / loads_rate:.2f}; after / the "
        f"C work alone: {(p['records'] / p['cpu']) / c_rate:.2f}. Before and after found the same violations in "
        f"every record (zh and en) and left the same ledger ({same}: every row of `records`, bodies byte for byte, "
        f"and {p['anomalies']:,} anomalies; {p['status'][2]:,} accepted, {p['status'][3]:,} invalid lines).",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
