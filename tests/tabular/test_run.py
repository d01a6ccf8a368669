"""A tabular run end to end on small synthetic tables: the run folder, the saved model and schema, the
threshold chosen on validation and applied by predict, each model kind, each split mode."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.tabular.tables import config, make_table
from tunesmith.config import build_config
from tunesmith.predict import predict
from tunesmith.run import fine_tune
from tunesmith.tasks import get_task


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("binary")
    path = tmp / "t.csv"
    make_table(800).to_csv(path, index=False)
    return fine_tune(build_config(config(path, tmp / "runs", eval={"costs": {"fn": 10, "fp": 1}}))), path


def test_run_folder_model_and_schema(binary_run):
    run, _ = binary_run
    assert sorted(p.name for p in run.path.iterdir()) == [
        "audit.json", "config.yaml", "data_report.json", "environment.json", "metrics.jsonl", "model", "report.html",
        "results.json", "splits.json", "status.json", "test_predictions.csv", "validation_predictions.csv"]
    assert sorted(p.name for p in run.model_dir.iterdir()) == [
        "README.md", "decision.json", "lightgbm.txt", "model_info.json", "schema.json"]
    assert (run.model_dir / "lightgbm.txt").read_text().startswith("tree\n")  # LightGBM's own text format
    schema = json.loads((run.model_dir / "schema.json").read_text())
    kinds = {c["name"]: c["kind"] for c in schema["columns"]}
    assert kinds == {"x1": "numeric", "x2": "numeric", "city": "categorical", "member": "boolean",
                     "signup": "datetime"}
    assert schema["positive_label"] == "yes" and "signup.hour" in schema["features"]
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["column_report"]["signup"]["derived"] == ["signup.year", "signup.month", "signup.day_of_week",
                                                             "signup.hour"]


def test_scores_baselines_and_cost_threshold(binary_run):
    run, _ = binary_run
    res = run.results
    test = res["test"]
    assert res["headline"] == "pr_auc"
    assert test["ci"]["pr_auc"]["low"] <= test["pr_auc"] <= test["ci"]["pr_auc"]["high"]
    assert test["pr_auc"] > test["prevalence"] + 0.2  # the target is learnable
    assert set(res["baselines"]) == {"majority_class", "logistic_regression", "lightgbm_default"}
    assert res["comparison"]["best_baseline"] == "logistic_regression"  # the target is logistic in x1, x2
    d = res["decision"]
    assert d["chosen_on"] == "validation" and d["threshold"] < 0.5  # a missed fraud costs 10 false alarms
    assert d["validation_cost_per_row"] <= d["validation_cost_at_0.5"]
    own = res["baselines"]["logistic_regression"]["decision"]  # each baseline decides at its own threshold
    assert own["chosen_on"] == "validation" and own["threshold"] != d["threshold"]
    assert "expected_cost" in test and set(test["recall_at_fpr"]) == {"0.001", "0.01"}


def test_predict_reloads_the_model_and_applies_the_threshold(binary_run):
    run, path = binary_run
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    saved = pd.read_csv(run.path / "test_predictions.csv")
    rows = table.iloc[saved["row"] - 2].reset_index(drop=True)  # the CSV line numbers of the test rows
    out = predict(run.path, rows)
    np.testing.assert_allclose(out["score"], saved["score"], atol=1e-6)
    threshold = json.loads((run.model_dir / "decision.json").read_text())["threshold"]
    assert ((out["score"] >= threshold) == (out["predicted"] == "yes")).all()
    between = (out["score"] >= threshold) & (out["score"] < 0.5)
    assert between.any() and (out.loc[between, "predicted"] == "yes").all()  # not argmax: the cost threshold
    unseen = rows.head(3).assign(city=["atlantis", "", "oslo"])
    assert predict(run.path, unseen)["score"].between(0, 1).all()


@pytest.mark.parametrize("model, file", [("xgboost", "xgboost.json"), ("logistic", "linear.json")])
def test_other_models_save_in_their_format_and_reload_identically(tmp_path, model, file):
    path = tmp_path / "t.csv"
    make_table(500, seed=2).to_csv(path, index=False)
    run = fine_tune(build_config(config(path, tmp_path / "runs", tabular={"model": model})))
    assert (run.model_dir / file).is_file()
    saved = pd.read_csv(run.path / "test_predictions.csv")
    rows = pd.read_csv(path, keep_default_na=False, dtype=str).iloc[saved["row"] - 2]
    np.testing.assert_allclose(predict(run.path, rows)["score"], saved["score"], atol=1e-6)
    assert "lightgbm_default" in run.results["baselines"]  # another model: default LightGBM is a baseline


def test_multiclass_target(tmp_path):
    df = make_table(600, seed=4)
    z = df["x1"] + df["x2"].fillna(0) + np.random.default_rng(0).normal(scale=0.3, size=len(df))
    df["fraud"] = np.select([z < -0.7, z < 0.7], ["low", "mid"], "high")  # no single column decides it
    df.to_csv(tmp_path / "t.csv", index=False)
    run = fine_tune(build_config(config(tmp_path / "t.csv", tmp_path / "runs")))
    res = run.results
    assert res["labels"] == ["high", "low", "mid"] and res["headline"] == "accuracy"
    assert res["test"]["accuracy"] > 0.7 and "accuracy" in res["comparison"]
    assert "score" not in pd.read_csv(run.path / "test_predictions.csv").columns


@pytest.mark.parametrize("mode, column", [("time", "signup"), ("group", "customer")])
def test_split_modes_keep_their_column_out_of_the_features(tmp_path, mode, column):
    df = make_table(400, seed=5)
    df["customer"] = [f"c{i % 50}" for i in range(len(df))]
    df["signup"] = pd.to_datetime(df["signup"])
    df.to_parquet(tmp_path / "t.parquet")  # typed columns, NaN in x2
    cfg = build_config(config(tmp_path / "t.parquet", tmp_path / "runs", data={f"{mode}_column": column}))
    task = get_task(cfg.task)
    data = task.load_data(task.configure(cfg))
    assert data.data_report["split_mode"] == mode
    assert column not in [c["name"] for c in data.data_report["columns"]]
    s = data.splits
    if mode == "time":
        assert s["train"][column].max() < s["validation"][column].min() <= s["validation"][column].max() \
            < s["test"][column].min()
    else:
        assert not set(s["train"][column]) & (set(s["validation"][column]) | set(s["test"][column]))
