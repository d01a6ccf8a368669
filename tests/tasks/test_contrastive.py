"""train.method contrastive: label-built pairs, the embedding it trains, a run predict() can load,
exact resume, and train.method auto picking it on small data."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import build_tiny_bert, make_rows, tiny_config
from tunesmith.config import build_config
from tunesmith.run import fine_tune
from tunesmith.tasks.contrastive import (build_pairs, default_pairs_per_example, head_input, pair_collate,
                                         pair_examples)
from tunesmith.tasks.method_choice import choose_method


def test_pairs_join_two_different_examples_of_one_class_each_anchor_as_often_as_asked():
    labels = [0, 0, 0, 1, 1, 2, 0, 1]  # class 2 has a single example: it cannot be paired
    pairs = build_pairs(labels, pairs_per_example=2, seed=3)
    assert all(labels[i] == labels[j] and i != j for i, j in pairs)
    assert Counter(i for i, _ in pairs) == {0: 2, 1: 2, 2: 2, 3: 2, 4: 2, 6: 2, 7: 2}
    # with at least two other members, an anchor's partners differ
    assert all(len({j for a, j in pairs if a == i}) == 2 for i in (0, 1, 2, 6))
    assert pairs == build_pairs(labels, 2, seed=3)  # seeded
    assert pairs != build_pairs(labels, 2, seed=4)
    assert default_pairs_per_example(684) == 2 and default_pairs_per_example(44) == 23  # >= 1,000 pairs


def test_pair_rows_collate_to_a_flat_batch_of_both_members_with_their_labels():
    encoded = [{"input_ids": [2, 10 + i, 3], "labels": lab} for i, lab in enumerate([0, 1, 0, 1])]
    rows = pair_examples(encoded, [(0, 2), (3, 1)])
    batch = pair_collate(lambda exs: {"input_ids": torch.tensor([e["input_ids"] for e in exs]),
                                      "labels": torch.tensor([e["labels"] for e in exs])})(rows)
    assert batch["input_ids"][:, 1].tolist() == [10, 12, 13, 11]
    assert batch["labels"].tolist() == [0, 0, 1, 1]


def test_the_contrastive_embedding_is_what_the_bert_head_reads(tiny_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    batch = dict(AutoTokenizer.from_pretrained(tiny_model)(["good film", "bad plot here"], padding=True,
                                                           return_tensors="pt"))
    with torch.no_grad():
        pooled = model.bert(**batch).pooler_output
        emb = head_input(model, batch)
        # and the head maps exactly that embedding to the logits
        assert torch.allclose(model.classifier(emb), model(**batch).logits, atol=1e-6)
    assert torch.allclose(emb, pooled, atol=1e-6)


def test_the_head_starts_as_the_nearest_class_mean_classifier(tiny_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunesmith.tasks.contrastive import init_head_from_centroids

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model).eval()
    texts = ["good film", "bad plot here", "great happy day", "awful sad night", "nice", "terrible boring"]
    batch = dict(AutoTokenizer.from_pretrained(tiny_model)(texts, padding=True, return_tensors="pt"))
    y = np.array([0, 1, 0, 1, 0, 1])
    with torch.no_grad():
        emb = head_input(model, batch)
        init_head_from_centroids(model, emb, y)
        logits = model(**batch).logits
    means = torch.nn.functional.normalize(torch.stack([emb[torch.as_tensor(y == c)].mean(0) for c in (0, 1)]), dim=1)
    cosine = torch.nn.functional.normalize(emb, dim=1) @ means.T
    assert torch.allclose(logits, cosine * emb.norm(dim=1, keepdim=True) * 20 / emb.norm(dim=1).mean(), atol=1e-5)


@pytest.mark.parametrize("counts, method", [([10] * 77, "contrastive"), ([30] * 77, "contrastive"),
                                            ([400] * 5, "full"), ([1] * 20 + [2], "linear-probe")])
def test_auto_chooses_by_examples_per_class(counts, method):
    choice = choose_method(counts)
    assert choice["method"] == method and f"{sum(counts)} training rows" in choice["reason"]


def _small_config(tmp_path, **train):
    model = build_tiny_bert(tmp_path / "tiny3", num_labels=3)
    make_rows(90, seed=2, classes=3).to_csv(tmp_path / "train.csv", index=False)
    cfg = tiny_config(model, tmp_path / "train.csv", tmp_path / "runs", epochs=2, **train)
    cfg["train"]["contrastive"] = {"epochs": 2, "learning_rate": 3e-3}
    cfg["audit"] = {"on_issue": "warn"}  # the templated rows have near-duplicates
    return cfg


def test_auto_on_small_data_runs_contrastive_and_predict_loads_the_saved_model(tmp_path):
    from tunesmith.predict import predict

    cfg = _small_config(tmp_path, method="auto")
    del cfg["train"]["learning_rate"]  # the head stage's default
    run = fine_tune(build_config(cfg))
    assert run.results["method"] == "contrastive" and run.results["method_choice"]["method"] == "contrastive"
    assert "per class" in run.results["method_choice"]["reason"]
    assert "method chosen automatically" in (run.path / "report.html").read_text()
    assert run.config.train.method == "contrastive" and run.config.train.learning_rate == 1e-4
    assert run.results["training"]["warmup"]["phase"] == "contrastive"
    stage = [json.loads(l) for l in (run.path / "contrastive" / "metrics.jsonl").read_text().splitlines()]
    assert {r["type"] for r in stage} == {"train", "eval"}
    saved = pd.read_csv(run.path / "test_predictions.csv")
    out = predict(run.path, saved["text"].tolist())
    assert out["label"].tolist() == saved["predicted"].tolist()
    assert np.allclose(out["probability"], saved["confidence"], atol=1e-4)
    # the head stage trained the head only: the body is the one the contrastive stage left
    from safetensors.torch import load_file

    assert sorted(load_file(run.path / "checkpoints" / "last" / "model.safetensors")) == \
        ["classifier.bias", "classifier.weight"]
    assert "classifier.weight" not in load_file(run.path / "contrastive" / "checkpoints" / "last" / "model.safetensors")


def test_resume_of_a_contrastive_run_killed_in_its_contrastive_stage_is_exact(tmp_path):
    cfg = _small_config(tmp_path, method="contrastive", checkpoint_every_steps=3, logging_steps=1)
    cfg["model"]["dropout"] = 0.2  # the random numbers must be restored too
    script = textwrap.dedent(f"""
        import os, signal
        from tunesmith.config import build_config
        from tunesmith.run import fine_tune
        from tunesmith.tasks import contrastive
        calls = []
        real = contrastive.ContrastiveLoss.__call__
        def dying(self, model, batch):
            calls.append(1)
            if len(calls) == 8:  # the 8th step of the stage; its last checkpoint is at step 6
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, model, batch)
        contrastive.ContrastiveLoss.__call__ = dying
        fine_tune(build_config({cfg!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    run_dir = tmp_path / "runs" / "run"
    state = json.loads((run_dir / "contrastive" / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and not (run_dir / "metrics.jsonl").exists()

    resumed = fine_tune(None, resume=run_dir)
    cfg["run_name"] = "straight"
    straight = fine_tune(build_config(cfg))
    for split in ("validation", "test"):
        for key in ("accuracy", "loss"):
            assert resumed.results[split][key] == pytest.approx(straight.results[split][key], rel=1e-6, abs=1e-7)
    for stage in ("contrastive/metrics.jsonl", "metrics.jsonl"):
        logs = [[json.loads(l) for l in (r.path / stage).read_text().splitlines()] for r in (resumed, straight)]
        assert [x["step"] for x in logs[0]] == [x["step"] for x in logs[1]]
        assert [x["loss"] for x in logs[0]] == pytest.approx([x["loss"] for x in logs[1]], rel=1e-5)
