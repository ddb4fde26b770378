"""`hipgate lab seed-data`: a plan (seed, regions, years, records per region-year, bad share) made into
records, written as a psql COPY script or JSON Lines to a local file, or piped over ssh into the lab's
database host, with the manifest of the bad records beside it."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from hipgate.errors import Problem, UserError, fail
from hipgate.exchange.dataset import Dataset, dataset_ddl, load_dataset
from hipgate.exchange.seed import pgcopy as copy
from hipgate.exchange.seed.bad import Manifest
from hipgate.exchange.seed.dictionaries import Dictionaries, load_dictionaries
from hipgate.exchange.seed.generate import DEFAULT_BAD_SHARE, Partition, context, generate

DEFAULT_REGIONS = ("440100", "440300", "440600")  # 广州市, 深圳市, 佛山市
DEFAULT_YEARS = (2023, 2024)
DEFAULT_RECORD_TYPES = ("setl", "cross_visit")
DEFAULT_DATABASE = "exchange"


@dataclass(frozen=True)
class Plan:
    seed: int = 1
    regions: tuple[str, ...] = DEFAULT_REGIONS
    years: tuple[int, ...] = DEFAULT_YEARS
    per_region_year: int = 10_000
    bad_share: float = DEFAULT_BAD_SHARE
    record_types: tuple[str, ...] = DEFAULT_RECORD_TYPES
    storable_only: bool = False  # only bad kinds the exchange tables hold with their defect

    def partitions(self) -> list[Partition]:
        return [Partition(rt, r, y) for rt in self.record_types for r in self.regions for y in self.years]

    @property
    def total(self) -> int:
        return len(self.partitions()) * self.per_region_year

    def header(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "regions": list(self.regions),
            "years": list(self.years),
            "per_region_year": self.per_region_year,
            "bad_share": self.bad_share,
            "record_types": list(self.record_types),
            "storable_only": self.storable_only,
        }


def check_plan(plan: Plan, ds: Dataset | None = None, dicts: Dictionaries | None = None) -> None:
    """Every problem of the plan at once (unknown record type or region, bad year, share or count)."""
    ds, dicts = ds or load_dataset(), dicts or load_dictionaries()
    problems: list[Problem] = []
    if plan.per_region_year < 0:
        zh, en = "记录数不能为负。", "the count cannot be negative."
        problems.append(Problem("--records-per-region-year", zh, en, "给出 ≥ 0 的整数。", "give an integer ≥ 0."))
    if not 0 <= plan.bad_share <= 0.5:
        zh, en = f"坏记录比例 {plan.bad_share} 超出 0–0.5。", f"bad share {plan.bad_share} is outside 0-0.5."
        problems.append(Problem("--bad-share", zh, en, "如 0.01（1 %）。", "for example 0.01 (1 %)."))
    for rt in plan.record_types:
        for region in plan.regions:
            for year in plan.years:
                try:
                    context(Partition(rt, region, year), plan.seed, ds, dicts)
                except UserError as exc:
                    problems += [p for p in exc.problems if p not in problems]
    if problems:
        raise UserError(problems)


def records(
    plan: Plan, part: Partition, manifest: Manifest | None, ds: Dataset, dicts: Dictionaries
) -> Iterator[dict[str, Any]]:
    return generate(
        part, plan.per_region_year, seed=plan.seed, bad_share=plan.bad_share, storable_only=plan.storable_only,
        manifest=manifest, ds=ds, dicts=dicts,
    )  # fmt: skip


def _year_bounds(year: int) -> tuple[str, str]:
    return f"{year:04d}-01-01", f"{year + 1:04d}-01-01"


def delete_sql(ds: Dataset, part: Partition, schema: str = "exchange") -> str:
    """DELETE of one partition's rows, its items first (explicitly: ON DELETE CASCADE is a trigger, which the
    no-capture load's replica mode skips), so a re-seed replaces them. The region is a 6-digit code and the
    year an integer (checked by context()); both go in as literals of that form only."""
    rt = ds.record_type(part.record_type)
    assert rt.region and rt.year and part.region.isdigit() and len(part.region) == 6
    start, end = _year_bounds(int(part.year))
    where = (
        f"{copy.ident(rt.region)} = '{part.region}'"
        f" AND {copy.ident(rt.year)} >= '{start}' AND {copy.ident(rt.year)} < '{end}'"
    )
    table = copy.table_name(schema, rt.code)
    out = ""
    if rt.items is not None:
        keys = ", ".join(copy.ident(k) for k in rt.key)
        out += (
            f"DELETE FROM {copy.table_name(schema, rt.items.code)} WHERE ({keys}) IN"
            f" (SELECT {keys} FROM {table} WHERE {where});\n"
        )
    return out + f"DELETE FROM {table} WHERE {where};\n"


def script(
    plan: Plan,
    manifest: Manifest | None = None,
    *,
    ds: Dataset | None = None,
    dicts: Dictionaries | None = None,
    schema: str = "exchange",
    create_tables: bool = False,
    replace: bool = False,
    capture: bool = True,
) -> Iterator[bytes]:
    """The whole plan as one psql script (run it with -1, --single-transaction: all or nothing).
    capture=False loads the rows as history that predates the middleware: the capture triggers do not
    fire (session_replication_role = replica, a superuser's setting, for this transaction only), so only
    the history upload carries them."""
    ds, dicts = ds or load_dataset(), dicts or load_dictionaries()
    if not capture:
        yield b"SET LOCAL session_replication_role = replica;\n"
    if create_tables:
        yield dataset_ddl(ds, schema).encode()
    for part in plan.partitions():
        if replace:
            yield delete_sql(ds, part, schema).encode()
        yield from copy.copy_script(records(plan, part, manifest, ds, dicts), part.record_type, ds, schema)


def jsonl(
    plan: Plan, manifest: Manifest | None = None, *, ds: Dataset | None = None, dicts: Dictionaries | None = None
) -> Iterator[bytes]:
    """The plan's records as JSON Lines, as a history file holds them (one record a line, UTF-8)."""
    ds, dicts = ds or load_dataset(), dicts or load_dictionaries()
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    for part in plan.partitions():
        lines: list[str] = []
        for rec in records(plan, part, manifest, ds, dicts):
            lines.append(dumps(rec))
            if len(lines) >= 256:
                yield ("\n".join(lines) + "\n").encode()
                lines.clear()
        if lines:
            yield ("\n".join(lines) + "\n").encode()


@contextmanager
def manifest_file(path: Path, plan: Plan) -> Iterator[Manifest]:
    """A manifest written to `path` as JSON Lines as the records are made: a header line with the plan,
    one line per bad record, a last line with the counts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        f.write(dumps({"manifest": plan.header()}) + "\n")
        manifest = Manifest(sink=lambda entry: f.write(dumps(entry) + "\n"))
        yield manifest
        f.write(dumps({"summary": manifest.summary()}) + "\n")


def read_manifest(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(plan header, entries, summary) of a manifest file."""
    header: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        if "manifest" in doc:
            header = doc["manifest"]
        elif "summary" in doc:
            summary = doc["summary"]
        else:
            entries.append(doc)
    return header, entries, summary


@contextmanager
def open_output(path: Path) -> Iterator[IO[bytes]]:
    """A local output file, gzip-compressed when its name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=6) as f:
            yield f
    else:
        with path.open("wb") as f:
            yield f


def psql_command(database: str = DEFAULT_DATABASE) -> list[str]:
    """psql as postgres on the database host, reading a script on stdin, all in one transaction."""
    copy.ident(database)  # a plain name or refused: it goes into a remote shell command line
    return [
        "sudo", "-n", "runuser", "-u", "postgres", "--",
        "psql", "-X", "-q", "-d", database, "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", "-",
    ]  # fmt: skip


@contextmanager
def piped(argv: list[str], what: str) -> Iterator[IO[bytes]]:
    """A sink that is a command's stdin; the command must succeed, else its stderr is the error."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors)
        assert proc.stdin is not None
        broken = False
        try:
            yield proc.stdin
        except BrokenPipeError:
            broken = True  # the command stopped reading: its error says why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
        rc = proc.wait()
        if rc != 0 or broken:
            errors.seek(0)
            tail = errors.read()[-3000:].decode(errors="replace").strip()
            raise fail(
                what,
                f"载入失败（退出码 {rc}）：{tail}",
                f"loading failed (exit {rc}): {tail}",
                "检查数据库与交换表是否存在（--create-tables 建表），或用 --replace 替换已有的同一分区数据。",
                "check the database and its exchange tables exist (--create-tables makes the tables), or --replace.",
            )


@contextmanager
def lab_database_sink(lab_name: str, database: str = DEFAULT_DATABASE) -> Iterator[IO[bytes]]:
    """The lab's database host as a sink: ssh with the lab's ssh_config to host `database`, psql as
    postgres reading the script on stdin. The remote command line is fixed but for the database name,
    which must be a plain identifier."""
    from hipgate.lab import artifacts, manager

    lab = manager.load(lab_name)
    if lab is None:
        zh, en = "实验环境未启动。", "the lab is not up."
        raise fail(f"lab {lab_name}", zh, en, "先运行 hipgate lab up。", "run hipgate lab up first.")
    lab.host("database")
    argv = ["ssh", "-F", str(artifacts.ssh_config_path(lab)), "database", " ".join(psql_command(database))]
    with piped(argv, f"lab {lab_name}: database/{database}") as sink:
        yield sink


def ship(pieces: Iterator[bytes], sink: IO[bytes], progress: Callable[[copy.Progress], None] | None = None) -> int:
    """Write the stream to a sink; the bytes written."""
    return copy.stream(pieces, sink.write, progress).bytes


def default_manifest(out: Path | None, lab_name: str) -> Path:
    from hipgate.paths import project_root

    if out is not None:
        name = out.name.removesuffix(".gz")
        return out.with_name(f"{name}.manifest.jsonl")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return project_root() / "artifacts" / "seed" / lab_name / f"manifest-{stamp}.jsonl"
