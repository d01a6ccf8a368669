"""The task registry (tunesmith.tasks): built-in names known without imports, duplicates refused,
and each task's own config rules (configure)."""
from __future__ import annotations

import pytest

from tunesmith.config import build_config
from tunesmith.errors import UserError
from tunesmith.tasks import _BUILTIN, configure, get_task, register_task, task_names


def test_every_builtin_name_loads_the_task_it_names():
    assert set(_BUILTIN) <= set(task_names())
    for name in _BUILTIN:
        assert get_task(name).name == name


def test_a_taken_name_is_refused():
    get_task("sft")
    with pytest.raises(ValueError, match="'sft' is already registered"):
        register_task("sft")(type("Other", (), {}))
    # a built-in name is taken before its module is imported
    with pytest.raises(ValueError, match="already registered"):
        register_task("text-classification")(type("Impostor", (), {}))


def test_tasks_without_rules_keep_the_config_as_is():
    cfg = build_config({"task": "text-classification", "data": {"train": "x.csv"}, "train": {"method": "lora"}})
    assert configure(cfg) == cfg and configure(cfg).train.metric_for_best == "macro_f1"


def test_sft_defaults_to_loss_and_an_explicit_loss_is_kept():
    cfg = configure(build_config({"task": "sft", "data": {"train": "x.jsonl"}}))
    assert (cfg.train.metric_for_best, cfg.tune.metric) == ("loss", "loss")
    # a RunConfig handed to fine_tune is re-validated from the fields that were set: defaults still apply
    from tunesmith.config import RunConfig

    again = RunConfig.model_validate(build_config({"task": "sft", "data": {"train": "x.jsonl"}}).model_dump(
        mode="json", exclude_unset=True))
    assert configure(again).train.metric_for_best == "loss"
    with pytest.raises(UserError, match=r"^config: train.metric_for_best = 'accuracy': task sft is scored by "
                                        r"validation loss; use loss$"):
        configure(build_config({"task": "sft", "data": {"train": "x.jsonl"}, "train": {"metric_for_best": "accuracy"}}))
