"""Benchmark: tabular prediction on ISLP's Default table (10,000 card holders, 333 defaults).

    python bench/bench_tabular.py [--append]

1. Speed: a LightGBM run with default settings end to end (`tunesmith train` in a fresh process: load, audit,
   train, baselines, bootstrap intervals, report), against a plain LightGBM script on the same split (read, encode,
   train with the same early stopping). Prints both fit times and the overhead ratios.
2. Warm start on two real populations: a model trained on non-students continues on a small sample of students
   (the `student` column splits the table). Students' validation and test rows are fixed files; the students'
   training sample grows from 150 rows. Each run reports warm-started vs students-only vs non-students-only on the
   students' test split (paired bootstrap on PR-AUC) and re-scores the non-students' test split (forgetting).
--append adds a dated section to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tunesmith.demo import islp_table  # noqa: E402

PLAIN = """
import sys, time, json
tic = time.perf_counter()
import lightgbm as lgb, pandas as pd
from sklearn.metrics import average_precision_score
from sklearn.model_selection import train_test_split
df = pd.read_csv(sys.argv[1])
y = (df.pop("default") == "Yes").astype(int)
df["student"] = (df["student"] == "Yes").astype(float)
X_trval, X_te, y_trval, y_te = train_test_split(df, y, test_size=0.2, stratify=y, random_state=42)
X_tr, X_va, y_tr, y_va = train_test_split(X_trval, y_trval, test_size=0.25, stratify=y_trval, random_state=43)
fit = time.perf_counter()
b = lgb.train({"objective": "binary", "verbosity": -1, "learning_rate": 0.05}, lgb.Dataset(X_tr, y_tr), 1000,
              valid_sets=[lgb.Dataset(X_va, y_va)], callbacks=[lgb.early_stopping(50, verbose=False)])
fit = time.perf_counter() - fit
ap = average_precision_score(y_te, b.predict(X_te, num_iteration=b.best_iteration))
print(json.dumps({"fit_s": round(fit, 3), "wall_s": round(time.perf_counter() - tic, 2), "pr_auc": round(ap, 4),
                  "rounds": b.best_iteration}))
"""


def cli(*args: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    tic = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tunesmith.cli", *args], capture_output=True, text=True, env=env,
                         check=True).stdout
    return time.perf_counter() - tic, out


def speed(tmp: Path) -> dict:
    default = islp_table("Default")
    cfg = {"task": "tabular-classification", "output_dir": str(tmp / "runs"), "run_name": "speed",
           "data": {"train": str(default), "label_column": "default", "validation_size": 0.2, "test_size": 0.2}}
    (tmp / "speed.yaml").write_text(yaml.safe_dump(cfg))
    wall, _ = cli("train", str(tmp / "speed.yaml"))
    res = json.loads((tmp / "runs" / "speed" / "results.json").read_text())
    (tmp / "plain.py").write_text(PLAIN)
    tic = time.perf_counter()
    plain = json.loads(subprocess.run([sys.executable, str(tmp / "plain.py"), str(default)], capture_output=True,
                                      text=True, check=True).stdout)
    plain["process_wall_s"] = round(time.perf_counter() - tic, 2)
    return {"tunesmith_wall_s": round(wall, 2), "tunesmith_fit_s": res["training"]["train_seconds"],
            "tunesmith_rounds": res["training"]["rounds"], "tunesmith_pr_auc": round(res["test"]["pr_auc"], 4),
            "plain": plain}


def warm_start(tmp: Path, sizes: list[int]) -> list[dict]:
    df = pd.read_csv(islp_table("Default"), dtype=str, keep_default_na=False)
    source, target = df[df["student"] == "No"], df[df["student"] == "Yes"]
    source.to_csv(tmp / "nonstudents.csv", index=False)
    shuffled = target.sample(frac=1.0, random_state=0)
    n = len(shuffled)
    test, val, pool = shuffled[: int(0.4 * n)], shuffled[int(0.4 * n): int(0.6 * n)], shuffled[int(0.6 * n):]
    test.to_csv(tmp / "students_test.csv", index=False)
    val.to_csv(tmp / "students_val.csv", index=False)
    base = {"task": "tabular-classification", "output_dir": str(tmp / "runs"),
            "data": {"label_column": "default", "validation_size": 0.2, "test_size": 0.2},
            "tabular": {"drop_columns": ["student"], "num_leaves": 7, "min_child_samples": 50}}
    (tmp / "source.yaml").write_text(yaml.safe_dump({**base, "run_name": "source",
                                                     "data": {**base["data"], "train": str(tmp / "nonstudents.csv")}}))
    cli("train", str(tmp / "source.yaml"))
    rows = []
    for size in sizes:
        sample = pool.head(size)
        sample.to_csv(tmp / f"students_{size}.csv", index=False)
        cfg = {**base, "run_name": f"warm-{size}",
               "data": {**base["data"], "train": str(tmp / f"students_{size}.csv"),
                        "validation": str(tmp / "students_val.csv"), "test": str(tmp / "students_test.csv")},
               "tabular": {**base["tabular"], "init_from": str(tmp / "runs" / "source"),
                           "min_child_samples": 10}}
        (tmp / f"warm-{size}.yaml").write_text(yaml.safe_dump(cfg))
        cli("train", str(tmp / f"warm-{size}.yaml"))
        res = json.loads((tmp / "runs" / f"warm-{size}" / "results.json").read_text())
        w = res["warm_start"]
        rows.append({"train_rows": size, "train_positives": int((sample["default"] == "Yes").sum()),
                     "test_rows": res["test"]["n"], "test_positives": res["test"]["positives"], **w["test"],
                     "vs_target_only": w["vs_target_only"]["pr_auc"], "vs_source_only": w["vs_source_only"]["pr_auc"],
                     "forgetting": w["forgetting"], "rounds_added": res["training"]["rounds_trained"]})
    return rows


def _pair(p: dict) -> str:
    return f"{p['difference']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}] ({p['verdict']})"


def markdown(sp: dict, warm: list[dict]) -> str:
    versions = {p: md.version(p) for p in ("lightgbm", "pandas", "scikit-learn")}
    head = (f"## {dt.date.today()} — tabular: ISLP Default, speed and warm start ({platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, lightgbm {versions['lightgbm']}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})\n\n")
    p = sp["plain"]
    lines = [head, "Speed, LightGBM defaults (learning rate 0.05, 31 leaves, early stopping 50 rounds on "
             "validation):\n",
             "| | wall s (process) | fit s | rounds | test PR-AUC |", "|---|---|---|---|---|",
             f"| tunesmith train (load, audit, fit, 3 baselines, bootstrap, report) | {sp['tunesmith_wall_s']} | "
             f"{sp['tunesmith_fit_s']} | {sp['tunesmith_rounds']} | {sp['tunesmith_pr_auc']} |",
             f"| plain LightGBM script (read, encode, fit, score) | {p['process_wall_s']} | {p['fit_s']} | "
             f"{p['rounds']} | {p['pr_auc']} |", "",
             f"Overhead: end to end {sp['tunesmith_wall_s'] / p['process_wall_s']:.1f}x the plain script's process; "
             f"fit {sp['tunesmith_fit_s'] / max(p['fit_s'], 1e-9):.2f}x the plain fit.\n",
             "Warm start: non-students (7,056 rows) -> students. Students' test file 1,177 rows, validation 589; "
             "PR-AUC on the students' test split; paired bootstrap (1,000 resamples) of warm-started minus each; "
             "forgetting: PR-AUC on the non-students' test split before / after.\n",
             "| student train rows (defaults) | warm-started | students only | non-students only | warm - students "
             "only [95% CI] | warm - non-students only [95% CI] | non-students test before / after | rounds added |",
             "|---|---|---|---|---|---|---|---|"]
    for r in warm:
        f = r["forgetting"]
        forget = f"{f['source_model']:.4f} / {f['warm_started']:.4f}" if f["checked"] else "not checked"
        lines.append(f"| {r['train_rows']} ({r['train_positives']}) | {r['warm_start']:.4f} | {r['target_only']:.4f} | "
                     f"{r['source_only']:.4f} | {_pair(r['vs_target_only'])} | {_pair(r['vs_source_only'])} | "
                     f"{forget} | {r['rounds_added']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="150,300,600,1178", help="Students' training sample sizes.")
    parser.add_argument("--append", action="store_true", help="Append the results to bench/RESULTS.md.")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sp = speed(Path(tmp))
        print(json.dumps(sp))
        warm = warm_start(Path(tmp), [int(s) for s in a.sizes.split(",")])
        for r in warm:
            print(json.dumps(r))
    text = markdown(sp, warm)
    print(text)
    if a.append:
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n" + text)


if __name__ == "__main__":
    main()
