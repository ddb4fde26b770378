"""Synthetic exchange records for the lab and the benchmarks (issue 17, item 6).

- `generate(Partition(record_type, region, year), count, seed=…, bad_share=…, manifest=…)` streams one
  region-year of settlements (with their items), cross-province visits or test persons, deterministic
  from (seed, record type, region, year) alone; `bad.KINDS` are the deliberately bad records, each
  under the id of the data-quality rule it violates, listed in the `Manifest`.
- `pgcopy.copy_text` / `pgcopy.copy_script` / `pgcopy.load` put records into the exchange tables with COPY,
  in constant memory; `run` is what `hipgate lab seed-data` does with a `Plan`.

Dictionaries (datasets/dictionaries/): GB/T 2260 divisions, a sample of 医保版 ICD-10 and of the national
catalogues. 身份证号 are built and checked with python-stdnum (stdnum.cn.ric).
"""

from hipgate.exchange.seed.bad import KINDS, BadKind, Manifest
from hipgate.exchange.seed.generate import Partition, generate
from hipgate.exchange.seed.pgcopy import copy_script, copy_text, load
from hipgate.exchange.seed.run import Plan

__all__ = ["KINDS", "BadKind", "Manifest", "Partition", "Plan", "copy_script", "copy_text", "generate", "load"]
