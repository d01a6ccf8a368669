"""Benchmark: TPE + ASHA search against the full grid over the same small space, on Banking77.

    python bench/bench_tune.py [--rows 2000] [--tpe-trials 4] [--seeds 3] [--append]

Both studies train minilm-l6 on the same seeded stratified sample of the Banking77 training file
(validation split off it; the test file is not used), evaluate on validation after every epoch,
and optimise validation accuracy. Compute is counted in trial-epochs (evaluations reached) and in
wall seconds. The TPE + ASHA study runs once per sampler seed (one seed's luck says little).
Prints both and, with --append, adds a dated table to bench/RESULTS.md.
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


def study(shared: Path, rows: int, sampler: str, pruner: str, trials: int, out: Path, seed: int = 0) -> dict:
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
                 "seed": seed},
        "output_dir": str(out), "run_name": f"{sampler}-{pruner}-{seed}",
    })
    tic = time.perf_counter()
    res = tune(cfg, final_run=False)
    wall = time.perf_counter() - tic
    s = optuna.load_study(study_name=res.name, storage=res.storage)
    return {"sampler": sampler, "pruner": pruner, "seed": seed, "trials": len(s.trials),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in s.trials),
            "trial_epochs": sum(len(t.intermediate_values) for t in s.trials), "wall_s": round(wall, 1),
            "best": round(res.best["value"], 4), "best_params": res.best["params"], "shared": res.summary["shared"]}


def grid_from(db: Path) -> dict:
    """The grid study of an earlier run of this script (same space, data and seed): trial-epochs are
    counted, not timed, so an earlier grid stands as the reference without 16 more trainings."""
    storage = f"sqlite:///{db.resolve()}"
    name = optuna.study.get_all_study_names(storage)[0]
    s = optuna.load_study(study_name=name, storage=storage)
    best = s.best_trial
    return {"sampler": "grid", "pruner": "none", "seed": 0, "trials": len(s.trials), "pruned": 0,
            "trial_epochs": sum(len(t.intermediate_values) for t in s.trials),
            "wall_s": round(sum(t.duration.total_seconds() for t in s.trials), 1), "best": round(best.value, 4),
            "best_params": best.params, "shared": "-", "source": str(db)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--tpe-trials", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--grid-from", type=Path, help="study.db of an earlier grid study of this script")
    ap.add_argument("--append", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = Path(tempfile.mkdtemp(prefix="tunesmith-bench-tune-"))
    grid = grid_from(a.grid_from) if a.grid_from else study(a.shared, a.rows, "grid", "none", 16, out)
    print(grid, flush=True)
    tpes = []
    for seed in range(a.seeds):
        tpes.append(study(a.shared, a.rows, "tpe", "asha", a.tpe_trials, out, seed))
        print(tpes[-1], flush=True)
    verdicts = []
    for r in tpes:
        gap, share = 100 * (grid["best"] - r["best"]), r["trial_epochs"] / grid["trial_epochs"]
        r["gap"], r["share"] = round(gap, 2), round(share, 3)
        verdicts.append(gap <= 0.5 and share <= 0.25)
        print(f"seed {r['seed']}: TPE+ASHA best is {gap:.2f} points below the grid's best, using {share:.0%} of its "
              f"trial-epochs and {r['wall_s'] / grid['wall_s']:.0%} of its wall time", flush=True)
    summary = f"target (within 0.5 points at <= 25% of the trial-epochs) met by {sum(verdicts)} of {len(tpes)} seeds"
    print(summary, flush=True)
    if a.append:
        lines = [f"\n## {dt.date.today()} — search: TPE + ASHA vs full grid, Banking77 sample ({platform.machine()}, "
                 f"{os.cpu_count()} cores)\n",
                 f"minilm-l6, {a.rows} training rows (seeded stratified sample; 10% of them for validation), 3 epochs, "
                 "batch 32, max length 48; space: learning rate {3e-5, 1e-4, 3e-4, 1e-3} x weight decay {0, 0.1} x "
                 f"warm-up {{0, 0.1}} (16 points); objective: validation accuracy after each epoch. TPE + ASHA: "
                 f"{a.tpe_trials} trials per study (default start-up and prune_after settings), sampler seeds "
                 f"0..{a.seeds - 1}.\n",
                 "| search | seed | trials | pruned | trial-epochs | wall s | best validation accuracy | gap, points "
                 "| best parameters |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in (grid, *tpes):
            lines.append(f"| {r['sampler']} + {r['pruner']} | {r['seed']} | {r['trials']} | {r['pruned']} | "
                         f"{r['trial_epochs']} | {r['wall_s']} | {r['best']} | {r.get('gap', '-')} | "
                         f"{r['best_params']} |")
        if a.grid_from:
            lines.append(f"\nThe grid row is the grid study of an earlier run of this script ({grid['source']}; "
                         "its wall time is the sum of its trial durations).")
        lines.append(f"\n{summary}.")
        with open(ROOT / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
