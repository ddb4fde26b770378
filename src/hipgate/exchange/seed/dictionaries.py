"""The small dictionaries the seed data draws from (datasets/dictionaries/): GB/T 2260 divisions, a sample
of 医保版 ICD-10 diagnoses and a sample of the national drug, service and consumable catalogues."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from hipgate.errors import UserError, fail
from hipgate.inventory.yamlio import read_yaml
from hipgate.paths import project_root

DIVISIONS_FILE = "admdvs-gbt2260.yml"
DIAGNOSES_FILE = "icd10-sample.yml"
CATALOGUE_FILE = "med_list-sample.yml"
DIAGNOSIS_USES = ("outpatient", "chronic", "inpatient", "maternity_outpatient", "maternity_inpatient")


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    level: str  # province | prefecture | county
    parent: str | None
    valid_from: int  # the first year of its unbroken validity up to the snapshot (python-stdnum's table)


@dataclass(frozen=True)
class Diagnosis:
    code: str
    name: str
    category: str
    use: str
    sex: str | None = None  # "1" male, "2" female, None either
    ages: tuple[int, int] = (0, 120)
    items: tuple[str, ...] = ()  # catalogue codes a visit for it usually has


@dataclass(frozen=True)
class CatalogueItem:
    code: str
    name: str
    kind: str  # western_drug | patent_medicine | medical_service | consumable
    type: str  # med_chrgitm_type
    lv: str  # chrgitm_lv
    unit: str
    pric: Decimal
    cnt: tuple[int, int]
    per_day: bool
    roles: tuple[str, ...]


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per loaded directory
class Dictionaries:
    root: Path
    province: str
    divisions: dict[str, Division]
    diagnoses: tuple[Diagnosis, ...]
    catalogue: dict[str, CatalogueItem]
    formats: dict[str, str]
    children: dict[str, tuple[Division, ...]]  # a division's prefectures or counties, in file order

    def prefectures(self, province: str) -> tuple[Division, ...]:
        return self.children.get(province, ())

    def counties(self, prefecture: str) -> tuple[Division, ...]:
        return self.children.get(prefecture, ())

    def provinces(self) -> tuple[Division, ...]:
        return tuple(d for d in self.divisions.values() if d.level == "province")

    def province_of(self, code: str) -> str:
        return code[:2] + "0000"


def default_root() -> Path:
    return project_root() / "datasets" / "dictionaries"


def _bad(file: Path, exc: Exception) -> UserError:
    return fail(
        str(file),
        f"词典文件格式错误（{type(exc).__name__}: {exc}）。",
        f"the dictionary file is malformed ({type(exc).__name__}: {exc}).",
        "按文件头注释的格式改正（每条一行的 YAML 映射）。",
        "fix it to the form its header describes (one YAML mapping per entry).",
    )


def _divisions(file: Path) -> tuple[str, dict[str, Division]]:
    doc = read_yaml(file)
    try:
        out = {
            str(e["code"]): Division(
                str(e["code"]), str(e["name"]), str(e["level"]), e.get("parent"), int(e["valid_from"])
            )
            for e in doc["entries"]
        }
        return str(doc["province"]), out
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(file, exc) from None


def _diagnosis(e: dict[str, Any]) -> Diagnosis:
    sex = str(e["sex"]) if e.get("sex") else None
    ages = (int(e.get("ages", (0, 120))[0]), int(e.get("ages", (0, 120))[1]))
    items = tuple(str(c) for c in e.get("items", ()))
    return Diagnosis(str(e["code"]), str(e["name"]), str(e["category"]), str(e["use"]), sex, ages, items)


def _item(e: dict[str, Any]) -> CatalogueItem:
    return CatalogueItem(
        str(e["code"]), str(e["name"]), str(e["kind"]), str(e["type"]), str(e["lv"]), str(e["unit"]),
        Decimal(str(e["pric"])), (int(e["cnt"][0]), int(e["cnt"][1])), bool(e.get("per_day", False)),
        tuple(e.get("roles", ())),
    )  # fmt: skip


def _diagnoses(file: Path) -> tuple[Diagnosis, ...]:
    doc = read_yaml(file)
    try:
        out = tuple(_diagnosis(e) for e in doc["entries"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(file, exc) from None
    if unknown := sorted({d.use for d in out} - set(DIAGNOSIS_USES)):
        raise _bad(file, ValueError(f"unknown use {unknown}; uses are {', '.join(DIAGNOSIS_USES)}"))
    return out


def _catalogue(file: Path) -> tuple[dict[str, CatalogueItem], dict[str, str]]:
    doc: dict[str, Any] = read_yaml(file)
    try:
        out = {str(e["code"]): _item(e) for e in doc["entries"]}
        return out, {str(k): str(v) for k, v in doc["formats"].items()}
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise _bad(file, exc) from None


@lru_cache(maxsize=4)
def _load(root: Path) -> Dictionaries:
    province, divisions = _divisions(root / DIVISIONS_FILE)
    diagnoses = _diagnoses(root / DIAGNOSES_FILE)
    catalogue, formats = _catalogue(root / CATALOGUE_FILE)
    missing = sorted({c for d in diagnoses for c in d.items} - set(catalogue))
    if missing:
        raise _bad(root / DIAGNOSES_FILE, ValueError(f"items not in {CATALOGUE_FILE}: {', '.join(missing)}"))
    children: dict[str, list[Division]] = {}
    for d in divisions.values():
        if d.parent:
            children.setdefault(d.parent, []).append(d)
    kids = {k: tuple(v) for k, v in children.items()}
    return Dictionaries(root, province, divisions, diagnoses, catalogue, formats, kids)


def load_dictionaries(root: Path | None = None) -> Dictionaries:
    """The dictionaries under `root` (default datasets/dictionaries/), read once per process."""
    return _load((root or default_root()).resolve())
