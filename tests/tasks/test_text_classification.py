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
