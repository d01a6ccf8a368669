"""The study report's comparison with the configuration as written: honest about selection, and
available for SFT studies (compared on per-conversation validation losses)."""
from __future__ import annotations

import json

import optuna
import pandas as pd
import yaml

from tests.conftest import make_chats
from tests.sft.test_sft import sft_config, write_jsonl
from tests.tune.test_search import study_config
from tunesmith.config import build_config
from tunesmith.tune.report import gain_over_defaults
from tunesmith.tune.search import tune


def test_gain_over_defaults_is_labelled_selection_biased(tiny_model, tmp_path, capsys):
    """The best trial is picked on validation and compared on validation: the verdict may not claim
    'not by chance'; study.json, the report and the CLI summary say what the comparison supports."""
    from tunesmith.cli import main

    # written: a learning rate too small to learn; the grid's other point learns
    space = {"train.learning_rate": {"type": "categorical", "choices": [1e-7, 1e-2]}}
    cfg = study_config(tiny_model, tmp_path, space, sampler="grid", pruner="none", n_trials=2)
    cfg["train"].update(learning_rate=1e-7, epochs=4)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["tune", str(path), "--no-final"]) == 0
    out = capsys.readouterr().out
    study_dir = tmp_path / "runs" / "run-study"
    gain = json.loads((study_dir / "study.json").read_text())["gain_over_defaults"]
    assert gain["best_trial"] != gain["default_trial"] and gain["low"] > 0  # clearly better on validation...
    assert gain["outcome"] == "better" and gain["selection_biased"] is True and gain["split"] == "validation"
    assert gain["verdict"].startswith("better on validation, but validation chose the best of 2 trials")
    assert "biased upward" in gain["supports"]
    html = (study_dir / "report.html").read_text()
    line = next(ln for ln in out.splitlines() if ln.startswith("vs the configuration as written"))
    assert "selection-biased: best of 2 trials on this split" in line
    for text in (json.dumps(gain), html, out):  # ...which does not make it a real gain
        assert "not by chance" not in text
    assert "biased upward" in html


def test_an_sft_study_compares_the_best_trial_with_the_defaults_on_response_losses(tiny_lm, tmp_path):
    cfg = sft_config(tiny_lm, write_jsonl(tmp_path / "chats.jsonl", make_chats(40)), tmp_path / "runs", epochs=2)
    cfg["train"]["learning_rate"] = 1e-6  # the written config barely moves; the grid's other point learns
    cfg["sft"]["eval_generations"] = 0
    cfg["tune"] = {"space": {"train.learning_rate": {"type": "categorical", "choices": [1e-6, 1e-2]}},
                   "sampler": "grid", "pruner": "none", "n_trials": 2}
    res = tune(build_config(cfg), final_run=False)
    study = optuna.load_study(study_name=res.name, storage=res.storage)
    default = next(t for t in study.trials if t.user_attrs.get("defaults"))
    assert study.best_trial.number != default.number and res.best["params"] == {"train.learning_rate": 1e-2}
    gain = res.summary["gain_over_defaults"]
    losses = pd.read_csv(res.path / f"trial-{default.number:04d}" / "validation_losses.csv")
    assert list(losses.columns) == ["row", "loss_sum", "tokens"] and losses["row"].is_unique
    assert gain["available"] and gain["metric"] == "response loss reduction"
    assert gain["conversations"] == len(losses) == json.loads(
        (res.path / "trial-0000" / "data_report.json").read_text())["split_rows"]["validation"]
    assert gain["difference"] > 0 and gain["selection_biased"] is True  # lower loss for the best trial
    assert "response loss reduction" in (res.path / "report.html").read_text()
    # a trial folder without per-example scores (e.g. written by a worker on another machine): said, not a crash
    (res.path / f"trial-{default.number:04d}" / "validation_losses.csv").unlink()
    missing = gain_over_defaults(study, "loss")
    assert missing["available"] is False and "no per-example validation scores" in missing["why"]
