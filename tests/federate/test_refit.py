"""The head refit's arithmetic (federate/refit.py) and where it reads features (models/head.py)."""
from __future__ import annotations

import numpy as np
import torch

from tunesmith.federate.refit import lda_head, pool, silo_statistics


def _gaussian_classes(rng, n: int, labels: int = 4, dim: int = 6):
    centres = rng.normal(0, 2.0, (labels, dim))
    mix = rng.normal(0, 1.0, (dim, dim))
    y = rng.integers(0, labels, n)
    x = centres[y] + rng.normal(0, 1.0, (n, dim)) @ mix
    return x, y


def test_pooled_silo_statistics_equal_the_statistics_of_all_rows_together():
    """Skewed silos, one lacking labels entirely: pooling their counts, means and scatters is exact."""
    rng = np.random.default_rng(0)
    x, y = _gaussian_classes(rng, 300)
    zero, rest = np.flatnonzero(y == 0), np.flatnonzero(y > 0)
    silos = [zero[:40], rest, zero[40:]]  # two silos hold label 0 only, one lacks it
    assert sorted(np.concatenate(silos)) == list(range(300))
    pooled = pool([silo_statistics(x[i], y[i], 4) for i in silos])
    whole = silo_statistics(x, y, 4)
    np.testing.assert_allclose(pooled["counts"], whole["counts"])
    np.testing.assert_allclose(pooled["means"], whole["means"], atol=1e-12)
    np.testing.assert_allclose(pooled["covariance"], whole["scatter"] / (300 - 4), atol=1e-10)


def test_the_lda_head_predicts_as_scikit_learns_lda_and_never_an_absent_label():
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(1)
    x, y = _gaussian_classes(rng, 400)
    weight, bias = lda_head(pool([silo_statistics(x, y, 4)]), shrinkage=0.0)
    reference = LinearDiscriminantAnalysis(solver="lsqr").fit(x, y)
    test, _ = _gaussian_classes(np.random.default_rng(1), 400)
    assert ((test @ weight.T + bias).argmax(1) == reference.predict(test)).mean() == 1.0
    keep = y != 2  # no silo holds label 2: its bias takes it out of every prediction
    weight, bias = lda_head(pool([silo_statistics(x[keep], y[keep], 4)]), shrinkage=0.2)
    assert bias[2] == -1e4 and 2 not in (x @ weight.T + bias).argmax(1)


def test_the_head_is_the_trainable_classifier_copy_and_its_input_is_the_pooled_output(tiny_model):
    from transformers import AutoModelForSequenceClassification

    from tunesmith.config import LoraSettings
    from tunesmith.models.head import head_inputs, head_linear
    from tunesmith.models.methods import apply_method

    from transformers import AutoTokenizer

    model_dir = tiny_model
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=8, ignore_mismatched_sizes=True)
    model = apply_method(base, "lora", LoraSettings(rank=8, target_modules=["query", "value"]), "SEQ_CLS")
    name, layer = head_linear(model, 8)
    assert name.endswith("classifier.modules_to_save.default") and layer.out_features == 8
    enc = tokenizer(["a b c", "d e", "f"], padding=True, return_tensors="pt")
    examples = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": i}
                for i in range(3)]

    def collate(rows):
        return {k: torch.stack([torch.as_tensor(r[k]) for r in rows]) for k in rows[0]}

    model.train()
    x, y = head_inputs(model, 8, examples, collate, lambda m, b: m(input_ids=b["input_ids"],
                       attention_mask=b["attention_mask"]), batch_size=2)
    assert model.training  # restored
    with torch.no_grad():
        model.eval()
        pooled = model.base_model.model.bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    np.testing.assert_allclose(x, pooled.pooler_output.double().numpy(), atol=1e-6)
    assert y.tolist() == [0, 1, 2]
