"""Text classification's model preparation: which weights full fine-tuning trains."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_config
from tunesmith.config import build_config
from tunesmith.tasks import get_task


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_embeddings_freezes_only_the_word_embeddings(tiny_model, tiny_csv, tmp_path, freeze):
    cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, freeze_embeddings=freeze, freeze_layers=0))
    task = get_task(cfg.task)
    model = task.prepare(cfg, task.load_data(cfg)).model
    frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
    assert frozen == (["bert.embeddings.word_embeddings.weight"] if freeze else [])
    assert build_config({"data": {"train": str(tiny_csv)}}).train.freeze_embeddings is True


def test_full_fine_tuning_defaults_fill_only_what_the_config_leaves_unset(tiny_csv):
    task = get_task("text-classification")
    unset = build_config({"data": {"train": str(tiny_csv)}, "train": {"method": "full"}})
    got = task.method_defaults(unset, 9000).train
    assert (got.batch_size, got.learning_rate, got.epochs, got.layer_decay) == (32, 4e-4, 4, 0.8)
    assert task.method_defaults(unset, 500).train.epochs == 5 and task.method_defaults(unset, 50000).train.epochs == 2
    chosen = build_config({"data": {"train": str(tiny_csv)},
                           "train": {"method": "full", "batch_size": 16, "learning_rate": 5e-5, "epochs": 1,
                                     "layer_decay": 1.0}})
    got = task.method_defaults(chosen, 9000).train
    assert (got.batch_size, got.learning_rate, got.epochs, got.layer_decay) == (16, 5e-5, 1, 1.0)
    probe = build_config({"data": {"train": str(tiny_csv)}, "train": {"method": "linear-probe"}})
    got = task.method_defaults(probe, 9000).train
    assert (got.batch_size, got.learning_rate, got.epochs) == (16, None, None)


def test_freeze_layers_stops_autograd_above_the_frozen_bottom(tiny_model, tiny_csv, tmp_path):
    """train.freeze_layers 1 on the 2-layer model: embeddings and layer 0 get no gradient and keep their exact
    values through an optimizer step (the loop's groups), layer 1 and the head change."""
    cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, freeze_embeddings=True, freeze_layers=1,
                                   layer_decay=0.8, cache_frozen_layers=False))
    task = get_task(cfg.task)
    prepared = task.prepare(cfg, task.load_data(cfg))
    model = prepared.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = prepared.collate(prepared.encoded["train"][:8])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = model.bert(**inputs, output_hidden_states=True).hidden_states  # embeddings, layer 0, layer 1
    assert [h.requires_grad for h in hidden] == [False, False, True]  # nothing recorded below layer 1

    optimizer = torch.optim.AdamW(prepared.param_groups(model, 1e-2))
    prepared.loss(model, batch).backward()
    optimizer.step()
    below = [n for n in before if n.startswith(("bert.embeddings.", "bert.encoder.layer.0."))]
    assert len(below) == 3 + 2 + 16  # word, position, token type + their norm; layer 0's 16 tensors
    for name, p in model.named_parameters():
        if name in below:
            assert p.grad is None and torch.equal(p, before[name]), name
        elif name.startswith(("bert.encoder.layer.1.", "classifier.")):
            assert p.grad is not None and not torch.equal(p, before[name]), name
    grouped = {id(p) for g in prepared.param_groups(model, 1e-2) for p in g["params"]}
    assert not grouped & {id(p) for n, p in model.named_parameters() if n in below}


def test_freeze_layers_is_checked_against_the_model_and_the_config(tiny_model, tiny_csv, tmp_path):
    from tunesmith.errors import UserError

    cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, freeze_embeddings=True, freeze_layers=2))
    task = get_task(cfg.task)
    with pytest.raises(UserError) as err:
        task.prepare(cfg, task.load_data(cfg))
    assert str(err.value) == ("config: train.freeze_layers = 2: this model has 2 encoder layers; expected 0 to 1 "
                              "(to freeze the whole encoder use train.method linear-probe)")
    with pytest.raises(UserError, match=r"^config: train\.freeze_layers = 1: freezes the embeddings .*false;"):
        build_config(tiny_config(tiny_model, tiny_csv, tmp_path, freeze_embeddings=False, freeze_layers=1))
    with pytest.raises(UserError, match=r"^config: train\.cache_frozen_layers = True: caches the layers .* 0;"):
        build_config(tiny_config(tiny_model, tiny_csv, tmp_path, cache_frozen_layers=True))
    assert build_config({"data": {"train": str(tiny_csv)}}).train.freeze_layers is None  # resolved by prepare


@pytest.mark.parametrize("freeze_embeddings, frozen, cached", [(True, 1, True), (False, 0, None)])
def test_left_unset_the_bottom_half_up_to_three_layers_is_frozen_and_cached(tiny_model, tiny_csv, tmp_path,
                                                                          freeze_embeddings, frozen, cached):
    """The 2-layer model freezes min(3, 2 // 2) = 1 layer and caches it; with trainable embeddings, none."""
    cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, freeze_embeddings=freeze_embeddings))
    task = get_task(cfg.task)
    prepared = task.prepare(cfg, task.load_data(cfg))
    assert prepared.resolved["freeze_layers"] == frozen
    assert prepared.resolved.get("frozen_cache") is cached
    trainable = {n for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert any(n.startswith("bert.encoder.layer.0.") for n in trainable) is (frozen == 0)
