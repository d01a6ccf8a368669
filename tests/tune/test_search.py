"""Hyperparameter search on the tiny model: samplers, pruners, conditional space, shared and resumed studies."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import make_rows, tiny_config
from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.tune.search import tune

LR = {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}


def study_config(tiny_model, tmp_path, space=None, **tune_settings) -> dict:
    train = tmp_path / "train.csv"
    if not train.exists():
        make_rows(160, seed=1).to_csv(train, index=False)
    cfg = tiny_config(tiny_model, train, tmp_path / "runs", epochs=2)
    cfg["audit"] = {"label_errors": False}
    cfg["eval"] = {"baselines": ["majority_class"], "bootstrap_resamples": 200}
    cfg["tune"] = {"space": space or {"train.learning_rate": LR}, "n_trials": 3, **tune_settings}
    return cfg


def states(study_dir) -> list[str]:
    return [json.loads((p / "status.json").read_text())["status"] for p in sorted(study_dir.glob("trial-*"))]


@pytest.mark.parametrize("sampler, pruner", [("grid", "none"), ("random", "median"), ("tpe", "asha"),
                                             ("random", "hyperband")])
def test_each_sampler_and_pruner_runs(tiny_model, tmp_path, sampler, pruner):
    space = {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 3e-3, "step": 1e-3}} \
        if sampler == "grid" else None
    res = tune(build_config(study_config(tiny_model, tmp_path, space, sampler=sampler, pruner=pruner)))
    assert res.summary["trials"]["complete"] + res.summary["trials"]["pruned"] == 3
    assert res.summary["sampler"] == sampler and res.summary["pruner"] == pruner
    # trials never see the test split: every trial runs with eval.test off, and each completed one scored none
    study = optuna.load_study(study_name=res.name, storage=res.storage)
    assert sorted(p.name for p in res.path.glob("trial-*")) == [f"trial-{t.number:04d}" for t in study.trials]
    for t in study.trials:
        folder = res.path / f"trial-{t.number:04d}"
        assert yaml.safe_load((folder / "config.yaml").read_text())["eval"]["test"] is False
        assert not (folder / "test_predictions.csv").exists()
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]  # pruned ones write none
    assert complete
    for t in complete:
        assert "test" not in json.loads((res.path / f"trial-{t.number:04d}" / "results.json").read_text())
    final = json.loads((res.final_run / "results.json").read_text())
    assert "test" in final and "baselines" in final
    # the final run reproduces the best trial: same config, same seed, same validation score
    assert final["training"]["best_validation_macro_f1"] == pytest.approx(res.best["value"], abs=1e-9)
    html = (res.path / "report.html").read_text()
    assert "Optimisation history" in html and "Gain over the default configuration" in html
    if sampler == "grid":
        assert {round(t.params["train.learning_rate"], 6) for t in study.trials} <= {0.001, 0.002, 0.003}


def test_pruned_trials_are_marked_pruned(tiny_model, tmp_path):
    # trial 0 is the written config (lr 3e-3, learns); the others draw tiny learning rates and learn nothing
    space = {"train.learning_rate": {"type": "float", "low": 1e-8, "high": 3e-3, "log": True}}
    # validation loss (minimised) separates the runs from the first evaluation; accuracy is flat at first
    cfg = study_config(tiny_model, tmp_path, space, sampler="random", pruner="asha", n_trials=5, seed=3,
                       metric="loss")
    cfg["train"].update(epochs=3, eval_every_steps=4)  # 12 evaluations: ASHA rungs at 1, 3 and 9
    res = tune(build_config(cfg), final_run=False)
    study = optuna.load_study(study_name=res.name, storage=res.storage)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, [(t.params, t.intermediate_values) for t in study.trials]
    for t in pruned:
        assert len(t.intermediate_values) < 12  # stopped before the end
        status = json.loads((res.path / f"trial-{t.number:04d}" / "status.json").read_text())["status"]
        assert status == "pruned"
    assert study.trials[0].user_attrs["defaults"] and study.trials[0].params["train.learning_rate"] == 3e-3


def test_conditional_parameters(tiny_model, tmp_path):
    space = {"train.method": {"type": "categorical", "choices": ["full", "lora"]},
             "train.lora.rank": {"type": "int", "low": 2, "high": 8, "log": True, "when": {"train.method": "lora"}},
             "train.learning_rate": LR}
    res = tune(build_config(study_config(tiny_model, tmp_path, space, sampler="random", pruner="none",
                                         n_trials=4, seed=1)), final_run=False)
    study = optuna.load_study(study_name=res.name, storage=res.storage)
    methods = set()
    for t in study.trials:
        methods.add(t.params["train.method"])
        assert ("train.lora.rank" in t.params) == (t.params["train.method"] == "lora")
    assert methods == {"full", "lora"}


def test_bad_space_is_rejected(tiny_model, tmp_path):
    with pytest.raises(UserError, match="not a config field"):
        tune(build_config(study_config(tiny_model, tmp_path, {"train.lr": LR})))
    with pytest.raises(UserError, match="must be a parameter listed before"):
        tune(build_config(study_config(tiny_model, tmp_path, {
            "train.lora.rank": {"type": "int", "low": 2, "high": 8, "when": {"train.method": "lora"}},
            "train.method": {"type": "categorical", "choices": ["full", "lora"]}})))
    with pytest.raises(UserError, match="tune.space.train.learning_rate.*low <= high"):
        bad = {"train.learning_rate": {"type": "float", "low": 1, "high": 0}}
        build_config(study_config(tiny_model, tmp_path, bad))


def test_interrupted_study_resumes_where_it_stopped(tiny_model, tmp_path):
    cfg = build_config(study_config(tiny_model, tmp_path, sampler="random", pruner="none", n_trials=2))
    first = tune(cfg, final_run=False)
    stamps = {p.name: (p / "results.json").stat().st_mtime for p in first.path.glob("trial-*")}
    second = tune(cfg, n_trials=4, final_run=False)
    assert second.summary["trials"]["complete"] == 4
    assert sorted(p.name for p in second.path.glob("trial-*")) == [f"trial-{i:04d}" for i in range(4)]
    for name, stamp in stamps.items():  # finished trials were not run again
        assert (second.path / name / "results.json").stat().st_mtime == stamp


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tiny_model, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(study_config(tiny_model, tmp_path, sampler="random", pruner="none")))
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    cmd = [sys.executable, "-m", "tunesmith.cli", "tune", str(cfg_path), "--trials", "6", "--storage", url,
           "--study", "shared", "--no-final"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7  # a trial already running when the budget is reached still finishes
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2  # both processes took trials
    folders = sorted(p.name for p in (tmp_path / "runs" / "shared").glob("trial-*"))
    assert folders == [f"trial-{n:04d}" for n in sorted(numbers)]  # one run folder per trial, none shared


def test_grid_without_the_written_config_on_the_grid_skips_the_defaults_trial(tiny_model, tmp_path):
    space = {"train.learning_rate": {"type": "categorical", "choices": [1e-3, 3e-3]},
             "train.weight_decay": {"type": "categorical", "choices": [0.0, 0.1]}}  # written: 0.01, off the grid
    res = tune(build_config(study_config(tiny_model, tmp_path, space, sampler="grid", pruner="none", n_trials=4)),
               final_run=False)
    study = optuna.load_study(study_name=res.name, storage=res.storage)
    assert not any(t.user_attrs.get("defaults") for t in study.trials)
    assert {(t.params["train.learning_rate"], t.params["train.weight_decay"]) for t in study.trials} == {
        (1e-3, 0.0), (1e-3, 0.1), (3e-3, 0.0), (3e-3, 0.1)}
    assert "no trial ran the configuration as written" in (res.path / "report.html").read_text()


def test_trials_share_data_tokens_and_frozen_features(tiny_model, tmp_path, monkeypatch):
    """One tokenization and one pass of the frozen body serve every trial of a study (item 4)."""
    from tunesmith.models import features
    from tunesmith.tasks.text_classification import TextClassification

    calls = {"tokenize": 0, "features": 0}
    tokenize, cache = TextClassification._tokenize, features.cache_features

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(TextClassification, "_tokenize", counted("tokenize", tokenize))
    monkeypatch.setattr(features, "cache_features", counted("features", cache))
    cfg = study_config(tiny_model, tmp_path, pruner="none")
    cfg["train"]["method"] = "linear-probe"
    res = tune(build_config(cfg))
    assert calls == {"tokenize": 1, "features": 1}  # 3 trials and the final run
    assert res.summary["shared"] == {"data": 3, "audit": 3, "tokens": 3, "features": 3}


def test_a_blocking_audit_stops_the_study_with_its_error(tiny_model, tmp_path, capsys):
    """A user error (here a train/test leak the audit blocks on) fails every trial alike: the study
    stops at its first trial with that one error line, exit 2, instead of running trials forever."""
    from tunesmith.cli import main

    rows = make_rows(160, seed=1)
    rows.iloc[:120].to_csv(tmp_path / "train.csv", index=False)
    pd.concat([rows.iloc[120:], rows.iloc[:3]]).to_csv(tmp_path / "test.csv", index=False)  # 3 leaked rows
    # the timeout only bounds this test should the study loop again (it used to run trials until killed)
    cfg = study_config(tiny_model, tmp_path, sampler="random", pruner="none", n_trials=50, timeout="40s")
    cfg["data"]["test"] = str(tmp_path / "test.csv")
    with pytest.raises(UserError, match="data audit found blocking issues"):
        tune(build_config(cfg))
    assert [p.name for p in (tmp_path / "runs").glob("run-study/trial-*")] == ["trial-0000"]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**cfg, "tune": {**cfg["tune"], "study_name": "cli-study"}}))
    assert main(["tune", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data audit found blocking issues"), err
    assert len(list((tmp_path / "runs" / "cli-study").glob("trial-*"))) == 1


def test_failing_trials_count_against_the_budget_and_end_the_study(tiny_model, tmp_path, monkeypatch, capsys):
    """Other failures count against the budget, and max_consecutive_failures in a row end the study
    with the last error."""
    from tunesmith import run as run_module

    real, calls = run_module.fine_tune, []

    def flaky(cfg, *args, **kwargs):
        calls.append(cfg.run_name)
        if len(calls) in failing:
            raise RuntimeError(f"CUDA out of memory in call {len(calls)}")
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(run_module, "fine_tune", flaky)
    failing = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
    cfg = study_config(tiny_model, tmp_path, sampler="random", pruner="none", n_trials=100,
                       max_consecutive_failures=2, study_name="broken")
    with pytest.raises(UserError, match=r"study broken: 2 trials in a row failed "
                                        r"\(tune.max_consecutive_failures = 2\); "
                                        r"the last, trial 1: RuntimeError: CUDA out of memory in call 2"):
        tune(build_config(cfg))
    assert len(calls) == 2 and not list((tmp_path / "runs" / "broken").glob("trial-*"))  # stopped after 2
    assert capsys.readouterr().err.count("warning: trial ") == 2  # one line per failure, no traceback

    calls.clear()
    failing = {1}  # the budget counts the failure: 2 trials, one failed, one complete
    cfg = study_config(tiny_model, tmp_path, sampler="random", pruner="none", n_trials=2, study_name="flaky")
    res = tune(build_config(cfg), final_run=False)
    assert res.summary["trials"]["fail"] == 1 and res.summary["trials"]["complete"] == 1
    assert calls == ["trial-0000", "trial-0001"]
    assert "Traceback" not in capsys.readouterr().err


def test_storage_credentials_never_reach_disk_or_the_terminal(tiny_model, tmp_path, capsys):
    """A storage URL's secret is masked in study.json, trial and final configs, reports and the CLI output.
    SQLite takes no user:password@, but it does accept a password query parameter, masked the same way."""
    from tunesmith.cli import main

    url = f"sqlite:///file:{tmp_path / 'study.db'}?mode=rwc&uri=true&password=s3cr3t-pw"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(study_config(tiny_model, tmp_path, sampler="random", pruner="none", n_trials=2,
                                                storage=url)))
    assert main(["tune", str(path)]) == 0
    out = capsys.readouterr()
    study_dir = tmp_path / "runs" / "run-study"
    written = [p for p in study_dir.rglob("*") if p.is_file() and p.suffix in {".json", ".yaml", ".html", ".md",
                                                                              ".csv", ".jsonl"}]
    assert {p.relative_to(study_dir).as_posix() for p in written} >= {
        "study.json", "report.html", "trial-0000/config.yaml", "final/config.yaml", "final/report.html"}
    leaks = [p for p in written if "s3cr3t" in p.read_text()]
    assert not leaks and "s3cr3t" not in out.out + out.err
    assert json.loads((study_dir / "study.json").read_text())["storage"].endswith("password=***&uri=true")
    assert "password=***" in (study_dir / "final" / "config.yaml").read_text()


def tunesmith(*args: str) -> str:
    """The installed `tunesmith` executable, as a user runs it; returns its output, failing on a non-zero exit."""
    exe = os.path.join(os.path.dirname(sys.executable), "tunesmith")
    proc = subprocess.run([exe, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _flat(node, prefix: str = "") -> dict:
    if not isinstance(node, dict):
        return {prefix: node}
    return {k: v for key, sub in node.items() for k, v in _flat(sub, f"{prefix}{key}.").items()} if node else \
        {prefix: node}


def assert_same_config_apart_from(run_dir, train_dir, allowed: dict) -> None:
    """RUN_DIR's config.yaml is TRAIN_DIR's byte for byte, apart from `allowed` (dotted key: (run's value,
    train's value)), which must differ exactly so."""
    text = (train_dir / "config.yaml").read_text()
    ours, theirs = yaml.safe_load((run_dir / "config.yaml").read_text()), yaml.safe_load(text)
    flat_ours, flat_theirs = _flat(ours), _flat(theirs)
    assert {k.rstrip("."): (v, flat_theirs.get(k)) for k, v in flat_ours.items() if v != flat_theirs.get(k)} == allowed
    for key in allowed:  # with those put back, the file is train's, byte for byte (key order included)
        *parents, leaf = key.split(".")
        node = ours
        for part in parents:
            node = node[part]
        node[leaf] = allowed[key][1]
    assert yaml.safe_dump(ours, sort_keys=False) == text


def test_trial_0_and_the_final_run_are_what_train_runs(tiny_model, tmp_path):
    """Issue 24 point 5: `tune` searched configurations that `train` never runs (a full dump made every field
    look set, so full fine-tuning's batch, rate and layer decay defaults were skipped)."""
    train = tmp_path / "train.csv"
    make_rows(160, seed=1).to_csv(train, index=False)
    runs = tmp_path / "runs"
    cfg = {"task": "text-classification", "model": {"name": str(tiny_model), "max_length": 32},
           "data": {"train": str(train), "text_column": "text", "label_column": "label"},
           # batch size, learning rate, layer decay and epochs left unset: full fine-tuning's defaults fill them
           "train": {"method": "full", "seed": 7, "freeze_embeddings": False, "freeze_layers": 0},
           "audit": {"label_errors": False}, "eval": {"baselines": ["majority_class"], "bootstrap_resamples": 200},
           "tune": {"space": {"train.learning_rate": LR, "train.batch_size": {"type": "categorical",
                                                                             "choices": [8, 16, 32]}},
                    "sampler": "random", "pruner": "none"},
           "output_dir": str(runs), "run_name": "plain"}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    tunesmith("train", str(path))
    out = tunesmith("tune", str(path), "--trials", "2")
    study_dir = runs / "plain-study"
    plain = yaml.safe_load((runs / "plain" / "config.yaml").read_text())["train"]
    assert (plain["batch_size"], plain["learning_rate"], plain["layer_decay"]) == (32, 4e-4, 0.8)  # the defaults
    paths = {"output_dir": (str(study_dir), str(runs))}
    # trials score validation only: tune sets eval.test=false (and train.metric_for_best=tune.metric, macro_f1
    # here as in train), so that is the one difference besides the run's name and folder
    assert_same_config_apart_from(study_dir / "trial-0000", runs / "plain", {
        "run_name": ("trial-0000", "plain"), **paths, "eval.test": (False, True),
        "train.contrastive.refit_head": (False, True)})
    best = json.loads((study_dir / "study.json").read_text())["best"]
    assert best["params"].keys() == {"train.learning_rate", "train.batch_size"}
    assert f"with {best['params']}" in out
    assert f"best trial {best['number']}: validation" in out  # the CLI's summary (issue 24 point 1)
    assert f"final run (scored on test): {study_dir / 'final'}" in out
    searched = {k: (v, plain[k.split(".")[1]]) for k, v in best["params"].items() if v != plain[k.split(".")[1]]}
    # the final run is the best trial's searched values on top of what train resolves
    assert_same_config_apart_from(study_dir / "final", runs / "plain", {
        "run_name": ("final", "plain"), **paths, **searched})
