"""Mean pooling swapped into a BERT classifier: what the head reads, padding-independence, save and load."""
from __future__ import annotations

import torch

from tunesmith.models.pooling import restore_pooling, use_mean_pooling


def _load(folder):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(folder).eval()


def _batch(folder, texts):
    from transformers import AutoTokenizer

    return dict(AutoTokenizer.from_pretrained(folder)(texts, padding=True, return_tensors="pt"))


def test_the_head_reads_the_normalised_mean_of_the_real_tokens(tiny_model):
    model = _load(tiny_model)
    assert use_mean_pooling(model)
    texts = ["good", "bad plot here and a very long boring night"]  # the first is padded
    batch = _batch(tiny_model, texts)
    with torch.no_grad():
        hidden = model.bert(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        assert torch.allclose(model.classifier(mean), model(**batch).logits, atol=1e-6)
        # padding changes nothing: the short text alone gives the logits it gets in the padded batch
        alone = model(**_batch(tiny_model, texts[:1])).logits
    assert torch.allclose(alone[0], model(**batch).logits[0], atol=1e-5)


def test_a_saved_mean_pooled_model_loads_back_with_its_pooling(tiny_model, tmp_path):
    model = _load(tiny_model)
    batch = _batch(tiny_model, ["good film", "bad plot here"])
    with torch.no_grad():
        cls_logits = model(**batch).logits
        use_mean_pooling(model)
        logits = model(**batch).logits
    assert not torch.allclose(cls_logits, logits, atol=1e-4)
    model.save_pretrained(tmp_path / "saved")
    plain = _load(tmp_path / "saved")  # same weight names: transformers alone reads the [CLS] pooler
    with torch.no_grad():
        assert torch.allclose(plain(**batch).logits, cls_logits, atol=1e-5)
        assert torch.allclose(restore_pooling(plain)(**batch).logits, logits, atol=1e-6)
    untouched = restore_pooling(_load(tiny_model))  # a model never switched keeps its pooler
    with torch.no_grad():
        assert torch.allclose(untouched(**batch).logits, cls_logits, atol=1e-6)


def test_the_onnx_export_of_a_mean_pooled_model_computes_the_mean_pooled_logits(tiny_model, tmp_path):
    import numpy as np
    from transformers import AutoTokenizer

    from tunesmith.export.graph import export_text, text_probe
    from tunesmith.export.runtime import session

    model = _load(tiny_model)
    use_mean_pooling(model)
    model.save_pretrained(tmp_path / "saved")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "saved")
    export_text(tmp_path / "saved", tmp_path / "model.onnx", 32)
    probe = text_probe(AutoTokenizer.from_pretrained(tiny_model), 32)  # two texts, the first padded
    got = session(tmp_path / "model.onnx", threads=1).run(["logits"], probe)[0]
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in probe.items()}).logits.numpy()
    assert np.abs(got - expected).max() < 1e-4
