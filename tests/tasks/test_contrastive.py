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
    assert default_pairs_per_example(684) == 4 and default_pairs_per_example(2053) == 2  # >= 2,500 pair rows


def test_pair_rows_collate_to_a_flat_batch_of_both_members_with_their_labels():
    encoded = [{"input_ids": [2, 10 + i, 3], "labels": lab} for i, lab in enumerate([0, 1, 0, 1])]
    rows = pair_examples(encoded, [(0, 2), (3, 1)])
    batch = pair_collate(lambda exs: {"input_ids": torch.tensor([e["input_ids"] for e in exs]),
                                      "labels": torch.tensor([e["labels"] for e in exs])})(rows)
    assert batch["input_ids"][:, 1].tolist() == [10, 12, 13, 11]
    assert batch["labels"].tolist() == [0, 0, 1, 1]


def test_each_anchor_is_scored_with_its_partner_and_with_the_previous_rows_partner_by_class():
    from tunesmith.tasks.contrastive import batch_pairs

    # three pair rows: texts (a1, p1, a2, p2, a3, p3) of classes 0 0 | 1 1 | 0 0
    first, second, target = batch_pairs(torch.tensor([0, 0, 1, 1, 0, 0]))
    assert first.tolist() == [0, 2, 4, 0, 2, 4]
    assert second.tolist() == [1, 3, 5, 5, 1, 3]
    assert target.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # a1 with p3 share class 0: not a negative


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


def test_the_fitted_head_in_the_model_scores_as_sklearns_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    from tunesmith.tasks.contrastive import fit_head, set_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    y[:3] = [0, 1, 2]
    weight, bias = fit_head(x, y, n_classes=4)  # class 3 never seen in training
    head = torch.nn.Linear(8, 4)
    model = torch.nn.Module()
    model.classifier = head
    assert set_head(model, weight, bias)
    with torch.no_grad():
        logits = head(torch.from_numpy(x)).numpy()
    ref = LogisticRegression(max_iter=2000, C=10.0).fit(x, y).predict_log_proba(x)
    shifted = logits[:, :3] - np.log(np.exp(logits[:, :3]).sum(1, keepdims=True))
    assert np.allclose(shifted, ref, atol=1e-4)
    assert (logits[:, 3] < logits[:, :3].min(1) - 10).all()
    # two classes: sklearn's single row becomes two logits with the same difference
    w2, b2 = fit_head(x, (y > 0).astype(int), n_classes=2)
    ref2 = LogisticRegression(max_iter=2000, C=10.0).fit(x, y > 0).decision_function(x)
    assert np.allclose((x @ w2.numpy().T + b2.numpy()) @ np.array([-1, 1]), ref2, atol=1e-4)


def _encoded(folder, rows):
    from transformers import AutoTokenizer, DataCollatorWithPadding

    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(rows["text"].tolist(), truncation=True, max_length=32)
    index = {"pos": 0, "neg": 1}
    examples = [{**{k: enc[k][i] for k in enc.keys()}, "labels": index[lab]} for i, lab in enumerate(rows["label"])]
    return examples, DataCollatorWithPadding(tok, return_tensors="pt")


@pytest.mark.parametrize("probe_score, tuned_score, kept", [(0.8, 0.6, "linear-probe"), (0.6, 0.6, "linear-probe"),
                                                           (0.6, 0.8, "contrastive")])
def test_the_tuned_body_is_kept_only_when_its_head_validates_better_than_the_probe(
        tiny_model, monkeypatch, probe_score, tuned_score, kept):
    from transformers import AutoModelForSequenceClassification

    from tunesmith.tasks.contrastive import ProbeOrTuned, embed, fit_head

    train, collate = _encoded(tiny_model, make_rows(12, seed=1))
    validation, _ = _encoded(tiny_model, make_rows(8, seed=2))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
    choice = ProbeOrTuned(train, validation, collate, batch_size=8, n_classes=2)
    scores, real = iter([probe_score, tuned_score]), choice._head
    monkeypatch.setattr(choice, "_head", lambda m: (*real(m)[:2], next(scores)))
    choice.enter(model)
    assert choice.outcome["pooling"] == "mean" and model.config.sentence_pooling == "mean"
    pretrained = {k: v.clone() for k, v in model.bert.state_dict().items()}
    with torch.no_grad():  # what the contrastive stage would do: move the body
        model.bert.encoder.layer[0].output.dense.weight.add_(0.5)
    tuned = {k: v.clone() for k, v in model.bert.state_dict().items()}
    choice.leave(model)
    assert choice.outcome["kept"] == kept and f"{tuned_score:.3f}" in choice.outcome["reason"]
    expected = pretrained if kept == "linear-probe" else tuned
    assert all(torch.equal(expected[k], v) for k, v in model.bert.state_dict().items())
    # the head is the logistic regression fitted on the kept body's embeddings, and only it trains now
    weight, bias = fit_head(embed(model, train, collate, 8).numpy(), np.array([e["labels"] for e in train]), 2)
    assert torch.allclose(model.classifier.weight, weight, atol=1e-5)
    assert torch.allclose(model.classifier.bias, bias, atol=1e-5)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


def test_the_final_head_is_refitted_on_training_validation_and_label_rows_and_ends_training(tiny_model):
    from transformers import AutoModelForSequenceClassification

    from tunesmith.tasks.contrastive import ProbeOrTuned, embed, fit_head

    train, collate = _encoded(tiny_model, make_rows(12, seed=1))
    validation, _ = _encoded(tiny_model, make_rows(8, seed=2))
    phrases, _ = _encoded(tiny_model, pd.DataFrame({"text": ["pos", "neg"], "label": ["pos", "neg"]}))
    y = lambda rows: np.array([e["labels"] for e in rows])  # noqa: E731
    heads = {}
    for refit in (False, True):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_model)
        choice = ProbeOrTuned(train, validation, collate, batch_size=8, n_classes=2, extra=phrases, refit=refit)
        choice.enter(model)
        assert choice.leave(model) is refit  # True: the model is final, no head stage
        assert choice.outcome["validation_held_out"] is not refit
        rows = train + phrases + (validation if refit else [])
        weight, bias = fit_head(embed(model, rows, collate, 8).numpy(), y(rows), 2)
        assert torch.allclose(model.classifier.weight, weight, atol=1e-5)
        assert torch.allclose(model.classifier.bias, bias, atol=1e-5)
        heads[refit] = model.classifier.weight.clone()
    assert not torch.allclose(heads[False], heads[True], atol=1e-3)  # the validation rows changed the head
    assert "validation rows" in choice.outcome["head_rows"] and "2 label-phrase rows" in choice.outcome["head_rows"]


@pytest.mark.parametrize("counts, method", [([10] * 77, "contrastive"), ([30] * 77, "contrastive"),
                                            ([400] * 5, "full"), ([1] * 20 + [2], "contrastive")])
def test_auto_chooses_by_examples_per_class(counts, method):
    choice = choose_method(counts)
    assert choice["method"] == method and f"{sum(counts)} training rows" in choice["reason"]
    # small data: the head alone, without the contrastive stage
    assert choice.get("contrastive") == ({"epochs": 0} if method == "contrastive" else None)


def _small_config(tmp_path, **train):
    model = build_tiny_bert(tmp_path / "tiny3", num_labels=3)
    make_rows(90, seed=2, classes=3).to_csv(tmp_path / "train.csv", index=False)
    cfg = tiny_config(model, tmp_path / "train.csv", tmp_path / "runs", epochs=2, **train)
    cfg["train"]["contrastive"] = {"epochs": 2, "learning_rate": 3e-3}
    cfg["audit"] = {"on_issue": "warn"}  # the templated rows have near-duplicates
    return cfg


def _baseline_rows(monkeypatch) -> list[int]:
    """Record how many training rows the baselines learn from, run by run."""
    from tunesmith.tasks.text_classification import TextClassification

    seen, real = [], TextClassification.baselines

    def counted(self, cfg, data, prepared):
        seen.append(len(data.splits["train"]))
        return real(self, cfg, data, prepared)

    monkeypatch.setattr(TextClassification, "baselines", counted)
    return seen


def test_auto_on_small_data_ships_the_head_alone_and_predict_loads_the_saved_model(tmp_path, monkeypatch):
    from tunesmith.predict import predict

    cfg = _small_config(tmp_path, method="auto")
    del cfg["train"]["learning_rate"]  # the head stage's default
    del cfg["train"]["contrastive"]["epochs"]  # left to auto: no stage
    baseline_rows = _baseline_rows(monkeypatch)
    run = fine_tune(build_config(cfg))
    assert run.results["method"] == "contrastive" and run.results["method_choice"]["method"] == "contrastive"
    assert "per class" in run.results["method_choice"]["reason"]
    outcome = run.results["training"]["warmup"]["outcome"]
    assert outcome["pooling"] == "mean" and outcome["kept"] == "linear-probe"
    assert "no contrastive stage" in outcome["reason"] and "validation_contrastive" not in outcome
    assert outcome["reason"] in run.results["method_choice"]["reason"]  # the report says which body was kept
    assert json.loads((run.path / "model" / "config.json").read_text())["sentence_pooling"] == "mean"
    assert "method chosen automatically" in (run.path / "report.html").read_text()
    assert run.config.train.method == "contrastive" and run.config.train.learning_rate == 1e-4
    assert run.config.train.contrastive.epochs == 0  # the resolved config records the choice
    assert run.results["training"]["warmup"]["phase"] == "contrastive"
    assert run.results["training"]["warmup"]["global_step"] == 0 and not (run.path / "contrastive").exists()
    saved = pd.read_csv(run.path / "test_predictions.csv")
    out = predict(run.path, saved["text"].tolist())
    assert out["label"].tolist() == saved["predicted"].tolist()
    assert np.allclose(out["probability"], saved["confidence"], atol=1e-4)
    # by default the head is refitted on training + validation rows: no head stage, and the report says
    # that validation is not held out (no temperature fitted on it)
    from tunesmith.tasks.classification import NOT_HELD_OUT

    assert run.results["training"]["warmup"]["final"] and run.results["training"]["validation_held_out"] is False
    assert run.results["training"]["global_step"] == 0 and not (run.path / "checkpoints").exists()
    assert run.results["validation"]["held_out"] is False and "calibration" not in run.results
    assert NOT_HELD_OUT in run.results["overfitting"]["summary"]
    assert NOT_HELD_OUT in (run.path / "report.html").read_text()
    assert "No learning curves: the run took no optimizer steps" in (run.path / "report.html").read_text()
    assert json.loads((run.path / "model" / "calibration.json").read_text())["temperature"] == 1.0
    split_rows = json.loads((run.path / "data_report.json").read_text())["split_rows"]
    assert baseline_rows == [split_rows["train"] + split_rows["validation"]]  # the same rows as the final head


def test_without_the_refit_the_head_stage_trains_the_head_only_and_validation_stays_held_out(tmp_path, monkeypatch):
    cfg = _small_config(tmp_path, method="contrastive")
    cfg["train"]["contrastive"]["refit_head"] = False
    baseline_rows = _baseline_rows(monkeypatch)
    run = fine_tune(build_config(cfg))
    assert baseline_rows == [json.loads((run.path / "data_report.json").read_text())["split_rows"]["train"]]
    assert not run.results["training"]["warmup"]["final"] and "validation_held_out" not in run.results["training"]
    assert "held_out" not in run.results["validation"] and "calibration" in run.results
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


def test_the_head_alone_without_label_rows_is_the_linear_probe_baseline(tmp_path):
    """The default small-data model is the probe baseline made shippable: with the same rows (training +
    validation) and no label rows, its test predictions are the baseline's."""
    cfg = _small_config(tmp_path, method="contrastive")
    cfg["train"]["contrastive"] = {"epochs": 0, "label_rows": False}
    cfg["eval"] = {"baselines": ["majority_class", "linear_probe"]}
    run = fine_tune(build_config(cfg))
    tuned, probe = run.results["test"], run.results["baselines"]["linear_probe"]["test"]
    assert tuned["accuracy"] == pytest.approx(probe["accuracy"], abs=1e-12)
    assert tuned["macro_f1"] == pytest.approx(probe["macro_f1"], abs=1e-12)
    assert run.results["comparison"]["accuracy"]["difference"] == pytest.approx(0.0, abs=1e-12)
