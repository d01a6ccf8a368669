"""Warm start: a booster trained on a source population continues on a small, shifted target sample; the run
compares warm-started, target-only and source-only models on the target test split and re-scores the source
run's test split."""
from __future__ import annotations

import pytest

from tests.tabular.tables import config, make_table
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.run import fine_tune


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    make_table(3000, seed=10).to_csv(tmp / "source.csv", index=False)
    make_table(200, seed=12, shift=-1.0, prevalence_bias=-2.0).to_csv(tmp / "target.csv", index=False)
    source = fine_tune(build_config({**config(tmp / "source.csv", tmp / "runs"), "run_name": "source"}))
    warm = fine_tune(build_config({**config(tmp / "target.csv", tmp / "runs", tabular={"init_from": str(source.path)}),
                                   "run_name": "warm"}))
    return source, warm


def test_warm_start_beats_the_small_target_sample_alone(runs):
    source, warm = runs
    w = warm.results["warm_start"]
    assert w["metric"] == "pr_auc"
    assert w["test"]["warm_start"] > w["test"]["target_only"]  # 120 target training rows are too few alone
    assert set(warm.results["baselines"]) == {"majority_class", "logistic_regression", "target_only", "source_only"}
    gain = w["test"]["warm_start"] - w["test"]["target_only"]
    assert w["vs_target_only"]["pr_auc"]["difference"] == pytest.approx(gain)
    tr = warm.results["training"]
    assert tr["init_rounds"] == source.results["training"]["rounds"] and tr["rounds"] >= tr["init_rounds"]


def test_forgetting_is_measured_on_the_source_test_split(runs):
    source, warm = runs
    f = warm.results["warm_start"]["forgetting"]
    assert f["checked"] and f["rows"] == source.results["test"]["n"]
    assert f["source_model"] == pytest.approx(source.results["test"]["pr_auc"])  # the same rows, the same model


def test_warm_start_needs_a_booster_run_of_the_same_kind(runs, tmp_path):
    source, _ = runs
    cfg = build_config(config(tmp_path / "t.csv", tmp_path / "runs",
                              tabular={"init_from": str(source.path), "model": "xgboost"}))
    from tunesmith.tasks import get_task

    with pytest.raises(UserError, match="its model is lightgbm; a warm start continues a booster of the same kind"):
        get_task(cfg.task).configure(cfg)


def test_a_missing_source_data_file_skips_only_the_forgetting_check(tmp_path):
    make_table(600, seed=13).to_csv(tmp_path / "source.csv", index=False)
    make_table(200, seed=12, shift=-1.0).to_csv(tmp_path / "target.csv", index=False)
    source = fine_tune(build_config({**config(tmp_path / "source.csv", tmp_path / "runs"), "run_name": "source"}))
    (tmp_path / "source.csv").unlink()
    warm = fine_tune(build_config({**config(tmp_path / "target.csv", tmp_path / "runs",
                                            tabular={"init_from": str(source.path)}), "run_name": "warm"}))
    f = warm.results["warm_start"]["forgetting"]
    assert not f["checked"] and "could not be read" in f["why"] and "source.csv: file not found" in f["why"]
