"""Benchmark: TPE + ASHA search against the full grid over the same small space, on Banking77.

    python bench/bench_tune.py [--rows 2000] [--tpe-trials 6] [--append]

Both studies train minilm-l6 on the same seeded stratified sample of the Banking77 training file
(validation split off it; the test file is not used), evaluate on validation after every epoch,
and optimise validation accuracy. Compute is counted in trial-epochs (evaluations reached) and in
wall seconds. Prints both and, with --append, adds a dated table to bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path

import optuna

from tunesmith.config import build_config
from tunesmith.tune.search import tune

ROOT = Path(__file__).resolve().parents[1]
SPACE = {"train.learning_rate": {"type": "categorical", "choices": [3e-5, 1e-4, 3e-4, 1e-3]},
         "train.weight_decay": {"type": "categorical", "choices": [0.0, 0.1]},
         "train.warmup_ratio": {"type": "categorical", "choices": [0.0, 0.1]}}


def study(shared: Path, rows: int, sampler: str, pruner: str, trials: int, out: Path) -> dict:
    cfg = build_config({
        "model": {"name": "minilm-l6", "max_length": 48},
        "data": {"train": str(shared / "data" / "banking77_train.csv"), "text_column": "text",
                 "label_column": "category", "drop_missing": True, "max_train_rows": rows},
        # the written config is a grid point, so trial 0 measures it in both studies
        "train": {"epochs": 3, "batch_size": 32, "learning_rate": 1e-4, "weight_decay": 0.0, "warmup_ratio": 0.0,
                  "metric_for_best": "accuracy"},
        # the label-error model would run once per trial; the search does not need it
        "audit": {"on_issue": "warn", "label_errors": False},
        "tune": {"space": SPACE, "sampler": sampler, "pruner": pruner, "metric": "accuracy", "n_trials": trials,
                 "seed": 0},
        "output_dir": str(out), "run_name": f"{sampler}-{pruner}",
    })
    tic = time.perf_counter()
    res = tune(cfg, final_run=False)
    wall = time.perf_counter() - tic
    s = optuna.load_study(study_name=res.name, storage=res.storage)
    return {"sampler": sampler, "pruner": pruner, "trials": len(s.trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in s.trials),
            "trial_epochs": sum(len(t.intermediate_values) for t in s.trials), "wall_s": round(wall, 1),
            "best": round(res.best["value"], 4), "best_params": res.best["params"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--tpe-trials", type=int, default=6)
    ap.add_argument("--append", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(tempfile.mkdtemp(prefix="tunesmith-bench-tune-"))
    grid = study(a.shared, a.rows, "grid", "none", 16, out)
    print(grid, flush=True)
    tpe = study(a.shared, a.rows, "tpe", "asha", a.tpe_trials, out)
    print(tpe, flush=True)
    gap = 100 * (grid["best"] - tpe["best"])
    share = tpe["trial_epochs"] / grid["trial_epochs"]
    print(f"TPE+ASHA best is {gap:.2f} points below the grid's best, using {share:.0%} of its trial-epochs "
          f"and {tpe['wall_s'] / grid['wall_s']:.0%} of its wall time", flush=True)
    if a.append:
        lines = [f"\n## {dt.date.today()} — search: TPE + ASHA vs full grid, Banking77 sample ({platform.machine()}, "
                 f"{os.cpu_count()} cores)\n",
                 f"minilm-l6, {a.rows} training rows (seeded stratified sample; 10% of them for validation), 3 epochs, "
                 "batch 32, max length 48; space: learning rate {3e-5, 1e-4, 3e-4, 1e-3} x weight decay {0, 0.1} x "
                 "warm-up {0, 0.1} (16 points); objective: validation accuracy after each epoch.\n",
                 "| search | trials | pruned | trial-epochs | wall s | best validation accuracy | best parameters |",
                 "|---|---|---|---|---|---|---|"]
        for r in (grid, tpe):
            lines.append(f"| {r['sampler']} + {r['pruner']} | {r['trials']} | {r['pruned']} | {r['trial_epochs']} | "
                         f"{r['wall_s']} | {r['best']} | {r['best_params']} |")
        lines.append(f"\nTPE + ASHA: {gap:.2f} points below the grid's best with {share:.0%} of its trial-epochs.")
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
