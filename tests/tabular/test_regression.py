"""tabular-regression: RMSE, MAE and R² with intervals against the training mean and a linear regression."""
from __future__ import annotations

import numpy as np
import pandas as pd

from tests.tabular.tables import config, make_table
from tunesmith.config import build_config
from tunesmith.predict import predict
from tunesmith.run import fine_tune


def test_regression_run_scores_and_predicts(tmp_path):
    df = make_table(600, seed=6).drop(columns=["fraud"])
    rng = np.random.default_rng(0)
    # a threshold effect no linear model captures, plus a categorical one
    df["spend"] = (10 * (df["x1"] > 0) + 3 * (df["city"] == "oslo") + rng.normal(size=len(df))).round(3)
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = config(tmp_path / "t.csv", tmp_path / "runs", data={"label_column": "spend"})
    run = fine_tune(build_config({**cfg, "task": "tabular-regression", "tabular": {"threads": 1}}))  # defaults
    res = run.results
    assert res["headline"] == "rmse" and set(res["baselines"]) == {"mean", "linear_regression"}
    test = res["test"]
    assert test["ci"]["rmse"]["low"] <= test["rmse"] <= test["ci"]["rmse"]["high"] and test["r2"] > 0.8
    assert res["comparison"]["best_baseline"] == "linear_regression"
    assert res["comparison"]["rmse_reduction"]["verdict"] == "better, and not by chance"
    saved = pd.read_csv(run.path / "test_predictions.csv")
    rows = pd.read_csv(tmp_path / "t.csv", keep_default_na=False, dtype=str).iloc[saved["row"] - 2]
    np.testing.assert_allclose(predict(run.path, rows)["predicted"], saved["predicted"], rtol=1e-6)
