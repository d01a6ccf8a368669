"""Caching the frozen bottom (models/frozen_bottom.py, train.cache_frozen_layers): training on the stored
outputs is training through the frozen layers, and the saved model is the whole model."""
from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tests.conftest import tiny_config
from tunesmith.config import build_config
from tunesmith.run import fine_tune


def test_training_on_the_cached_bottom_matches_training_through_it(tiny_model, tiny_csv, tmp_path):
    runs = {}
    for cache in (False, True):
        cfg = tiny_config(tiny_model, tiny_csv, tmp_path / "runs", epochs=2, logging_steps=1, freeze_embeddings=True,
                          freeze_layers=1, cache_frozen_layers=cache, learning_rate=1e-2)
        cfg["model"]["dropout"] = 0.0  # the cache runs the bottom without dropout; the plain run then does too
        cfg["run_name"] = f"cache-{cache}"
        runs[cache] = fine_tune(build_config(cfg))
    plain, cached = runs[False], runs[True]
    report = json.loads((cached.path / "data_report.json").read_text())
    assert report["frozen_cache"] is True and "frozen_cache" not in json.loads(
        (plain.path / "data_report.json").read_text())
    logs = [[json.loads(l) for l in (r.path / "metrics.jsonl").read_text().splitlines()] for r in (plain, cached)]
    assert [x["step"] for x in logs[0]] == [x["step"] for x in logs[1]]
    assert [x["loss"] for x in logs[1]] == pytest.approx([x["loss"] for x in logs[0]], rel=1e-5)
    for split in ("validation", "test"):
        assert cached.results[split]["loss"] == pytest.approx(plain.results[split]["loss"], rel=1e-5)
    # the saved model is the whole model (embeddings and the frozen layer included), with the same weights
    weights = [load_file(r.path / "model" / "model.safetensors") for r in (plain, cached)]
    assert sorted(weights[1]) == sorted(weights[0])
    assert any(k.startswith("bert.encoder.layer.0.") for k in weights[1])
    # A key bias adds q.b to every score of query q, which softmax ignores: its gradient is zero in exact
    # arithmetic, so AdamW turns summation-order noise (which differs between the two paths and between CPUs)
    # into rate-sized steps. Those weights are left undetermined by the mathematics and are not compared.
    # (the frozen layer 0's key bias never moves, so it is compared like the rest)
    undetermined = ["bert.encoder.layer.1.attention.self.key.bias"]
    assert set(undetermined) <= set(weights[0])
    for name, value in weights[0].items():
        if name not in undetermined:
            assert weights[1][name].allclose(value, rtol=1e-5, atol=1e-6), name
