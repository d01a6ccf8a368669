"""Issue 24 point 3: a text longer than model.max_length is read whole, as overlapping windows whose logits
are averaged, in training and in predict and the ONNX export alike. The rows put the words that decide the
label at the end of a long filler text, so a run that truncates cannot see them."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from tests.conftest import NEGATIVE, NEUTRAL, POSITIVE, tiny_config
from tests.test_cli_paths import results, tunesmith, write


def _long_rows(n: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label, cues = [("pos", POSITIVE), ("neg", NEGATIVE)][i % 2]
        rows.append({"text": " ".join(rng.choices(NEUTRAL, k=30) + rng.sample(cues, 2)), "label": label})
    return pd.DataFrame(rows)


def _varied_rows(n: int, seed: int) -> pd.DataFrame:
    """Texts of every length and word, so that a text's windows give different logits."""
    rng = random.Random(seed)
    words = NEUTRAL + POSITIVE + NEGATIVE
    return pd.DataFrame({"text": [" ".join(rng.choices(words, k=rng.randint(20, 60))) for _ in range(n)],
                         "label": ["pos", "neg"] * (n // 2)})


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    """The same rows trained with windows (the default) and with truncation, through the executable."""
    tmp = tmp_path_factory.mktemp("long")
    _long_rows(240, seed=1).to_csv(tmp / "rows.csv", index=False)
    out = {}
    for mode in ("windows", "truncate"):
        cfg = tiny_config(tiny_model, tmp / "rows.csv", tmp / "runs", epochs=10)
        cfg["model"].update(max_length=16, long_text=mode)
        cfg["run_name"] = mode
        cfg["eval"] = {"baselines": ["majority_class"], "bootstrap_resamples": 100}
        cfg["audit"] = {"label_errors": False}
        tunesmith("train", str(write(tmp / f"{mode}.yaml", cfg)), cwd=tmp)
        out[mode] = tmp / "runs" / mode
    return out


def test_windows_read_the_end_of_long_texts_that_truncation_loses(runs):
    windowed, truncated = results(runs["windows"]), results(runs["truncate"])
    assert windowed["test"]["accuracy"] >= 0.9
    assert truncated["test"]["accuracy"] <= 0.75  # the cue words are past the first 16 tokens
    import yaml

    saved = yaml.safe_load((runs["windows"] / "config.yaml").read_text())["model"]
    assert (saved["long_text"], saved["max_length"], saved["window_overlap"]) == ("windows", 16, 2)
    assert yaml.safe_load((runs["truncate"] / "config.yaml").read_text())["model"]["long_text"] == "truncate"
    lengths = next(f for f in json.loads((runs["windows"] / "audit.json").read_text())["findings"]
                   if f["check"] == "lengths")
    assert "100.0% of training texts exceed max_length 16 tokens and are read as up to 8 windows" in \
        lengths["message"]


def _assert_predict_reproduces(run, tmp_path, *backend: str) -> None:
    """`tunesmith predict` on the run's test texts gives its test predictions and probabilities."""
    test = pd.read_csv(run / "test_predictions.csv")
    test[["text"]].to_csv(tmp_path / "in.csv", index=False)
    tunesmith("predict", str(run), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
              *backend, cwd=tmp_path)
    got = pd.read_csv(tmp_path / "out.csv")
    assert got["predicted"].tolist() == test["predicted"].tolist()
    assert (got["probability"] - test["confidence"]).abs().max() < 1e-4


def test_predict_and_the_onnx_export_read_the_windows_as_the_run_did(runs, tmp_path):
    _assert_predict_reproduces(runs["windows"], tmp_path)
    tunesmith("export", str(runs["windows"]), "--format", "onnx", cwd=tmp_path)
    _assert_predict_reproduces(runs["windows"], tmp_path, "--backend", "onnx")


def test_the_frozen_bottom_cache_holds_every_window(tiny_model, tmp_path):
    """With the bottom layer frozen and cached, a windowed text's logits are those of the model run through
    the layer (each window is a row of the cache)."""
    import torch
    from accelerate import Accelerator

    from tunesmith.config import build_config
    from tunesmith.evaluate.inference import predict_logits
    from tunesmith.tasks import get_task

    _varied_rows(40, seed=3).to_csv(tmp_path / "rows.csv", index=False)
    out, masks = {}, {}
    for cache in (True, False):
        raw = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", freeze_embeddings=True,
                          freeze_layers=1, cache_frozen_layers=cache)
        raw["model"]["max_length"] = 16
        cfg = build_config(raw)
        task = get_task(cfg.task)
        torch.manual_seed(0)
        p = task.prepare(cfg, task.load_data(cfg))
        assert p.resolved.get("frozen_cache") is (True if cache else None)
        assert all(isinstance(e["input_ids"][0], list) for e in p.encoded["test"])  # every text is windowed
        masks[cache] = [[len(m) for m in e["attention_mask"]] for e in p.encoded["test"]]
        out[cache], _ = predict_logits(p.model, p.encoded["test"], p.collate, 4, Accelerator(cpu=True), task.logits)
    assert masks[True] == masks[False]  # each text's cached windows are its own, in order
    assert abs(out[True] - out[False]).max() < 2e-6


def test_a_windowed_linear_probe_caches_each_windows_features(tiny_model, tmp_path):
    """linear-probe on windowed texts computes the frozen body once per window: its logits are those of the
    same model (same head, seed for seed) run through the body."""
    import torch
    from accelerate import Accelerator

    from tunesmith.config import build_config
    from tunesmith.evaluate.inference import predict_logits
    from tunesmith.tasks import get_task

    _varied_rows(40, seed=4).to_csv(tmp_path / "rows.csv", index=False)
    out = {}
    for method in ("linear-probe", "full"):
        raw = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", method=method)
        raw["model"]["max_length"] = 16
        cfg = build_config(raw)
        task = get_task(cfg.task)
        torch.manual_seed(0)
        p = task.prepare(cfg, task.load_data(cfg))
        assert p.resolved["feature_cache"] is (method == "linear-probe")
        assert all(isinstance(e["input_ids"][0], list) for e in p.encoded["test"])
        out[method], _ = predict_logits(p.model, p.encoded["test"], p.collate, 4, Accelerator(cpu=True), task.logits)
    assert abs(out["linear-probe"] - out["full"]).max() < 2e-6


def test_the_head_alone_reads_windows_and_predict_reproduces_it(tiny_model, tmp_path):
    """auto's small-data model (the head alone on the pre-trained encoder) fits its head on each text's mean
    window embedding; predict's mean of window logits is that head's output, so it reproduces the run."""
    _long_rows(120, seed=5).to_csv(tmp_path / "rows.csv", index=False)
    accuracy = {}
    for mode in ("windows", "truncate"):
        cfg = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", method="contrastive",
                          contrastive={"epochs": 0})
        cfg["train"].pop("learning_rate")
        cfg["model"].update(max_length=16, long_text=mode)
        cfg.update(run_name=mode, eval={"baselines": ["majority_class"], "bootstrap_resamples": 100},
                   audit={"label_errors": False})
        tunesmith("train", str(write(tmp_path / f"{mode}.yaml", cfg)), cwd=tmp_path)
        accuracy[mode] = results(tmp_path / "runs" / mode)["test"]["accuracy"]
    assert accuracy["windows"] >= accuracy["truncate"] + 0.25, accuracy
    _assert_predict_reproduces(tmp_path / "runs" / "windows", tmp_path)


def test_the_heads_embedding_of_a_windowed_text_is_the_mean_of_its_windows(tiny_model, tmp_path):
    """Not normalised again: the head is linear, so head(mean) is the mean of the windows' logits."""
    from tunesmith.config import build_config
    from tunesmith.tasks import get_task
    from tunesmith.tasks.contrastive import embed
    from tunesmith.tasks.text_classification import _windows_of

    _varied_rows(20, seed=6).to_csv(tmp_path / "rows.csv", index=False)
    raw = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", method="contrastive",
                      contrastive={"epochs": 0})
    raw["model"]["max_length"] = 16
    cfg = build_config(raw)
    task = get_task(cfg.task)
    p = task.prepare(cfg, task.load_data(cfg))
    texts = p.encoded["train"][:3]
    assert all(isinstance(e["input_ids"][0], list) for e in texts)
    whole = embed(p.model, texts, p.collate, 8)

    for i, ex in enumerate(texts):
        windows = embed(p.model, _windows_of([ex]), p.collate, 8)
        assert windows.norm(dim=1).sub(1).abs().max() < 1e-5  # each window's embedding is normalised
        # (a random tiny encoder gives nearly parallel windows: normalising the mean again moves it ~1e-6)
        assert (whole[i] - windows.mean(0)).abs().max() < 2e-7
