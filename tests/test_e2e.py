"""End to end on the real shipped encoder (minilm-l6) and real public text (BBC News)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunesmith.config import build_config
from tunesmith.models.registry import resolve_model
from tunesmith.run import fine_tune

pytestmark = pytest.mark.e2e


def test_registry_resolves_minilm_to_the_installed_package():
    resolved = resolve_model("minilm-l6")
    cfg = json.loads((Path(resolved.source) / "config.json").read_text())
    assert resolved.kind == "registry" and cfg["hidden_size"] == 384 and cfg["num_hidden_layers"] == 6


def test_minilm_fine_tuned_on_bbc_news_beats_majority(tmp_path, monkeypatch):
    from transformers import pipeline

    from tunesmith.demo import bbc_news_csv

    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    data = bbc_news_csv()
    cfg = build_config({
        "model": {"name": "minilm-l6", "max_length": 64},
        "data": {"train": str(data), "max_train_rows": 400, "test_size": 0.2},
        "train": {"epochs": 2, "batch_size": 16, "learning_rate": 2e-4, "seed": 0},
        "audit": {"on_issue": "fix"},  # BBC News holds a few duplicated articles: keep them out of test
        "output_dir": str(tmp_path / "runs"), "run_name": "bbc",
    })
    run = fine_tune(cfg)
    test, majority = run.results["test"], run.results["baselines"]["majority_class"]["test"]
    audit = json.loads((run.path / "audit.json").read_text())
    leaked = {r["row"] for f in audit["findings"] if f["check"].startswith("leakage") for r in f["rows"]
              if r["split"] == "test"}
    assert test["n"] == 80 - len(leaked)  # leaked test rows were removed before scoring
    assert set(run.results["labels"]) == {"business", "entertainment", "politics", "sports", "tech"}
    assert test["accuracy"] >= majority["accuracy"] + 0.4, (test["accuracy"], majority["accuracy"])
    clf = pipeline("text-classification", model=str(run.model_dir), device="cpu")
    out = clf(["The striker scored twice as the club won the league title on Saturday."])
    assert out[0]["label"] == "sports"
