"""The linear probe's feature cache: saving the model must leave the cached model usable (a federated run
scores the comparison after task.finish saved the model)."""
from __future__ import annotations

import numpy as np

from tests.conftest import make_rows, tiny_config


def test_saving_a_cached_linear_probe_keeps_predictions_working(tiny_model, tmp_path):
    from tunesmith.config import build_config
    from tunesmith.evaluate.inference import predict_logits
    from tunesmith.run import make_accelerator
    from tunesmith.tasks import configure, get_task
    from tunesmith.tasks.base import TaskData

    rows = make_rows(24, seed=2)
    cfg = configure(build_config(tiny_config(tiny_model, tmp_path / "x.csv", tmp_path / "runs",
                                             method="linear-probe")))
    task = get_task(cfg.task)
    data = TaskData(splits={"train": rows[:16], "validation": rows[16:20], "test": rows[20:]},
                    labels=sorted(set(rows["label"])))
    prepared = task.prepare(cfg, data)
    assert prepared.resolved["feature_cache"] is True
    acc = make_accelerator(cfg)

    def test_logits():
        return predict_logits(prepared.model, prepared.encoded["test"], prepared.evaluation_collate, 8, acc,
                              task.logits)[0]

    before = test_logits()
    task.save(prepared.model, prepared, tmp_path / "model")
    assert (tmp_path / "model" / "config.json").is_file()
    np.testing.assert_allclose(test_logits(), before, atol=1e-5)
