"""AutoML: the plan follows the data and the budget; a run explains itself and compares with the defaults."""
from __future__ import annotations

import json

import optuna
import yaml

from tests.conftest import make_rows
from tests.tune.test_search import assert_same_config_apart_from, tunesmith
from tunesmith.tune.auto import auto, plan


def test_plan_follows_data_size_and_budget():
    small = plan({"rows": 800, "classes": 5, "tokens_p95": 64, "smallest_class": 100}, budget_s=3600)
    assert small["methods"] == ["linear-probe", "lora", "full"] and "train.lora.rank" in small["space"]
    big = plan({"rows": 200_000, "classes": 20, "tokens_p95": 300, "smallest_class": 50}, budget_s=600)
    assert big["methods"] == ["linear-probe"] and big["max_train_rows"] and big["max_length"] == 256
    assert any("stratified sample" in r for r in big["reasons"])


def test_auto_searches_explains_and_compares_with_plain_defaults(tiny_model, tmp_path, capsys):
    from tunesmith.cli import main

    data = tmp_path / "reviews.csv"
    make_rows(160, seed=1).to_csv(data, index=False)
    assert main(["auto", str(data), "--label-column", "label", "--time-budget", "10m", "--model", str(tiny_model),
                 "--output-dir", str(tmp_path / "runs"), "--max-trials", "4"]) == 0
    out = capsys.readouterr().out
    assert "methods searched:" in out and "vs the configuration as written:" in out
    result = auto(str(data), "label", time_budget="10m", model=str(tiny_model), output_dir=str(tmp_path / "runs"),
                  max_trials=4)  # the same study again: finds it complete, trains nothing new
    assert result.summary["trials"]["complete"] + result.summary["trials"]["pruned"] == 4
    plan_file = json.loads((result.path / "auto.json").read_text())
    assert plan_file["profile"]["rows"] == 160 and plan_file["reasons"]
    study = optuna.load_study(study_name=result.name, storage=result.storage)
    first = study.trials[0]
    assert first.user_attrs["defaults"]
    # the plain defaults, whole: the method auto wrote, and the rate and epochs its run resolved
    assert set(first.params) == {"train.method"}
    assert set(first.user_attrs["resolved"]) == {"train.learning_rate", "train.epochs"}
    html = (result.path / "report.html").read_text()
    assert "AutoML: what was chosen and why" in html
    # the AutoML outcome sentence follows the comparison in study.json, and never claims more than it supports
    gain = json.loads((result.path / "study.json").read_text())["gain_over_defaults"]
    outcome = {"better": "The search scored better than the plain defaults on validation, but validation is the "
                         "split it selected on",
               "same": "The plain defaults were the best configuration the search found."}.get(
        gain.get("outcome"), "The search could not show that it beat the plain defaults, even on the validation split")
    assert outcome in html and "not by chance" not in html
    assert json.loads((result.final_run / "results.json").read_text())["test"]["n"] > 0


def test_trial_0_is_what_train_runs_on_the_config_auto_wrote(tiny_model, tmp_path):
    """Issue 24 point 5: auto's trial 0 pinned the learning rate and epochs of `run.DEFAULT_LR` (full: 1e-4) and
    searched from a full dump, so it never ran what train runs (full fine-tuning: 4e-4, batch 32, decay 0.8)."""
    data, runs = tmp_path / "reviews.csv", tmp_path / "runs"
    make_rows(160, seed=1).to_csv(data, index=False)
    out = tunesmith("auto", str(data), "--label-column", "label", "--time-budget", "10m", "--model",
                    str(tiny_model), "--output-dir", str(runs), "--max-trials", "2")
    study_dir = runs / "auto-reviews"
    assert "methods searched:" in out and f"final run (scored on test): {study_dir / 'final'}" in out
    tunesmith("train", str(study_dir / "auto.yaml"), "run_name=plain")
    plain = yaml.safe_load((runs / "plain" / "config.yaml").read_text())["train"]
    assert (plain["method"], plain["batch_size"], plain["learning_rate"], plain["layer_decay"]) == ("full", 32, 4e-4,
                                                                                                     0.8)
    # trials score validation only (eval.test=false); tune.metric is macro_f1, as train.metric_for_best in train
    assert_same_config_apart_from(study_dir / "trial-0000", runs / "plain", {
        "run_name": ("trial-0000", "plain"), "output_dir": (str(study_dir), str(runs)), "eval.test": (False, True),
        "train.contrastive.refit_head": (False, True)})
