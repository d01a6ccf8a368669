"""A search over LightGBM settings: every trial reports its validation score every 10 boosting rounds, so a
pruner can stop it by round; the final run is scored on test."""
from __future__ import annotations

import optuna

from tests.tabular.tables import config, make_table
from tunesmith.config import build_config
from tunesmith.tune.search import tune


def test_search_over_lightgbm_settings_reports_by_boosting_round(tmp_path):
    make_table(500, seed=8).to_csv(tmp_path / "t.csv", index=False)
    cfg = config(tmp_path / "t.csv", tmp_path / "runs", tune={
        "space": {"tabular.num_leaves": {"type": "int", "low": 3, "high": 31},
                  "tabular.learning_rate": {"type": "float", "low": 0.05, "high": 0.3, "log": True}},
        "n_trials": 3, "metric": "macro_f1", "pruner": "median"})
    cfg["tabular"]["early_stopping_rounds"] = 20
    result = tune(build_config(cfg))
    study = optuna.load_study(study_name=result.summary["study"], storage=f"sqlite:///{result.path / 'study.db'}")
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        assert steps[:3] == [1, 2, 3]  # evaluation k = boosting round 10 k
        assert all(0 <= v <= 1 for v in trial.intermediate_values.values())  # macro-F1, not a loss
    assert result.final_run is not None and (result.final_run / "report.html").is_file()
