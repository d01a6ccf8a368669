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


def test_predict_and_the_onnx_export_read_the_windows_as_the_run_did(runs, tmp_path):
    run = runs["windows"]
    test = pd.read_csv(run / "test_predictions.csv")
    test[["text"]].to_csv(tmp_path / "in.csv", index=False)
    tunesmith("predict", str(run), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "torch.csv"),
              cwd=tmp_path)
    torch_out = pd.read_csv(tmp_path / "torch.csv")
    assert torch_out["predicted"].tolist() == test["predicted"].tolist()
    assert (torch_out["probability"] - test["confidence"]).abs().max() < 1e-4
    tunesmith("export", str(run), "--format", "onnx", cwd=tmp_path)
    tunesmith("predict", str(run), "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "onnx.csv"),
              "--backend", "onnx", cwd=tmp_path)
    onnx_out = pd.read_csv(tmp_path / "onnx.csv")
    assert onnx_out["predicted"].tolist() == test["predicted"].tolist()
    assert (onnx_out["probability"] - test["confidence"]).abs().max() < 1e-4
