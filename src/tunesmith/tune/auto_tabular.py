"""`tunesmith auto DATA --task tabular --label-column L --time-budget 5m`: AutoML for a table.

Gradient-boosting trials take seconds, so the budget buys many of them: a TPE search over LightGBM's tree
shape, shrinkage, sampling and regularisation, with median pruning by boosting round, validation log loss as
the objective. Trial 0 is LightGBM's defaults, so the report says whether the search beat them; the final run
is scored on test against the baselines (majority class, logistic regression, default LightGBM).
"""
from __future__ import annotations

from pathlib import Path

from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.io import atomic_write_json

SECONDS_PER_TRIAL = 3.0  # a small table on 2 cores: load from the memo, boost, validate (bench/RESULTS.md)
SECONDS_PER_MILLION_CELLS = 20.0  # boosting time grows with rows x columns


def space(rows: int) -> dict:
    """LightGBM settings worth searching; leaves and leaf sizes scale with the table."""
    return {"tabular.num_leaves": {"type": "int", "low": 4, "high": max(8, min(256, rows // 20)), "log": True},
            "tabular.learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
            "tabular.min_child_samples": {"type": "int", "low": 5, "high": max(10, min(200, rows // 10)), "log": True},
            "tabular.feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
            "tabular.lambda_l2": {"type": "float", "low": 0.0, "high": 10.0}}  # from 0, the default


def auto_tabular(data: str, label_column: str, time_budget: str = "5m", output_dir: str = "runs",
                 test: str | None = None, max_trials: int = 100, task: str = "tabular-classification"):
    """Search LightGBM settings within the budget, train the winner, report; returns the Study."""
    import pandas as pd

    from tunesmith.data.load import read_table
    from tunesmith.tune.search import parse_duration, tune

    budget = parse_duration(time_budget)
    if not budget or budget < 30:
        raise UserError(f"--time-budget {time_budget}: give at least 30s")
    table: pd.DataFrame = read_table(data)
    rows, columns = len(table), len(table.columns) - 1
    per_trial = SECONDS_PER_TRIAL + SECONDS_PER_MILLION_CELLS * rows * columns / 1e6
    trials = int(max(3, min(max_trials, budget * 0.75 / per_trial)))
    reasons = [f"{rows} rows, {columns - 1} feature columns; about {per_trial:.0f} s per LightGBM trial on this "
               f"machine: up to {trials} trials in {budget * 0.75 / 60:.1f} min (a quarter of the budget is kept "
               "for the final run)",
               "search: TPE over leaves, learning rate, leaf size, feature fraction and L2; trial 0 is LightGBM's "
               "defaults; median pruning on validation log loss every 10 boosting rounds"]
    name = f"auto-{Path(data).stem}"
    cfg = build_config({
        "task": task,
        "data": {"train": data, "test": test, "label_column": label_column, "drop_missing": True},
        "audit": {"on_issue": "fix"},
        "tune": {"space": space(rows), "sampler": "tpe", "pruner": "median", "metric": "loss", "n_trials": trials,
                 "timeout": f"{int(budget * 0.75)}s", "study_name": name},
        "output_dir": output_dir,
    }, source="auto")
    study_dir = Path(output_dir) / name
    study_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(study_dir / "auto.json", {"rows": rows, "columns": columns, "trials": trials,
                                                "space": cfg.tune.model_dump(mode="json")["space"], "reasons": reasons})
    result = tune(cfg)
    result.summary["auto"] = {"reasons": reasons}
    atomic_write_json(result.path / "study.json", result.summary)
    return result
