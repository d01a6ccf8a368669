"""Text classification's model preparation: which weights full fine-tuning trains."""
from __future__ import annotations

import pytest

from tests.conftest import tiny_config
from tunesmith.config import build_config
from tunesmith.tasks import get_task


@pytest.mark.parametrize("freeze", [True, False])
def test_full_fine_tuning_freezes_only_the_word_embeddings_by_default(tiny_model, tiny_csv, tmp_path, freeze):
    cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, freeze_embeddings=freeze))
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
