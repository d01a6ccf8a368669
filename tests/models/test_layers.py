"""Layer-wise learning-rate decay groups (models/layers.py)."""
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from tests.conftest import tiny_config
from tunesmith.models.layers import layer_decay_groups, layer_depth


def _bert(layers: int = 3) -> torch.nn.Module:
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=3)
    return BertForSequenceClassification(cfg)


def test_depths_from_embeddings_to_head():
    assert layer_depth("bert.embeddings.word_embeddings.weight", 3) == 0
    assert layer_depth("bert.encoder.layer.0.attention.self.query.weight", 3) == 1
    assert layer_depth("bert.encoder.layer.2.output.dense.weight", 3) == 3
    assert layer_depth("bert.pooler.dense.weight", 3) == 4
    assert layer_depth("classifier.weight", 3) == 4


def test_each_weight_once_at_its_layers_rate():
    model = _bert(3)
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    groups = layer_decay_groups(model, 1e-3, 0.5, 0.01)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(rate) == sorted(id(p) for p in trainable)  # every trainable weight in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(trainable)
    named = dict(model.named_parameters())
    assert rate[id(named["classifier.weight"])] == pytest.approx(1e-3)
    assert rate[id(named["bert.encoder.layer.2.output.dense.weight"])] == pytest.approx(5e-4)
    assert rate[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(1.25e-4)
    assert rate[id(named["bert.embeddings.position_embeddings.weight"])] == pytest.approx(6.25e-5)
    assert decay[id(named["bert.encoder.layer.0.output.dense.bias"])] == 0.0
    assert decay[id(named["bert.encoder.layer.0.output.dense.weight"])] == 0.01


def test_text_task_passes_the_groups_only_when_decay_is_set(tiny_model, tiny_csv, tmp_path):
    from tunesmith.config import build_config
    from tunesmith.tasks import get_task


    task = get_task("text-classification")
    for decay, expect_groups in ((1.0, False), (0.8, True)):
        cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, layer_decay=decay))
        prepared = task.prepare(cfg, task.load_data(cfg))
        assert (prepared.param_groups is not None) == expect_groups
        if expect_groups:
            rates = {g["lr"] for g in prepared.param_groups(prepared.model, 1e-3)}
            assert max(rates) == pytest.approx(1e-3) and min(rates) == pytest.approx(1e-3 * 0.8 ** 3)
