"""The tabular demo end to end on ISLP's real Default table (10,000 card holders, 333 defaults)."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from tunesmith.demo import islp_table, tabular_demo_config
from tunesmith.predict import predict
from tunesmith.run import fine_tune

pytestmark = pytest.mark.e2e


def test_default_demo(tmp_path):
    run = fine_tune(tabular_demo_config(tmp_path))
    res = run.results
    test = res["test"]
    assert test["n"] == 2000 and test["positives"] == 67  # a stratified 20% of 333 defaults
    assert 0.3 < test["pr_auc"] < 0.8 and test["roc_auc"] > 0.9
    assert res["baselines"]["majority_class"]["test"]["pr_auc"] == pytest.approx(test["prevalence"], abs=0.01)
    assert res["comparison"]["best_baseline"] == "logistic_regression"
    d = json.loads((run.model_dir / "decision.json").read_text())
    assert d["chosen_on"] == "validation" and 0.05 < d["threshold"] < 0.5 and d["positive_label"] == "Yes"
    assert "expected_cost" in test
    rows = pd.read_csv(islp_table("Default"), dtype=str, keep_default_na=False).head(50)
    assert set(predict(run.path, rows)["predicted"]) <= {"Yes", "No"}
