"""The memo a study's trials share: each entry is keyed by every setting its step reads, so a
trial that changes one of them computes its own, and one that changes nothing it reads reuses it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import make_chats
from tunesmith import run as run_module
from tunesmith.config import build_config
from tunesmith.memo import Memo, audit_key, data_key
from tunesmith.tasks import get_task


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir()
        for i in range(12):
            Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("chats") / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in make_chats(30)))
    return path


def base_config(task: str, data, out) -> dict:
    cfg = {"task": task, "data": {"train": str(data)}, "audit": {"on_issue": "warn", "label_errors": False},
           "output_dir": str(out)}
    if task == "image-classification":
        cfg["model"] = {"name": "test_efficientnet"}
    return cfg


def with_override(cfg: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(cfg))
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


# (task, key, new value): settings the data step reads (a miss), and settings it does not (a hit)
READ = [("image-classification", "image.max_side", 32), ("image-classification", "image.skip_unreadable", True),
        ("image-classification", "image.image_column", "path"),
        ("image-classification", "image.label_names", ["a", "b"]),
        ("sft", "sft.system_prompt", "Answer briefly."), ("sft", "sft.format", "messages"),
        ("sft", "sft.prompt_column", "question"), ("sft", "sft.messages_column", "turns"),
        ("text-classification", "data.text_column", "body"), ("text-classification", "data.max_train_rows", 50),
        ("text-classification", "train.seed", 1), ("sft", "data.validation_size", 0.2)]
NOT_READ = [("image-classification", "image.layer_decay", 0.5), ("image-classification", "image.size", 64),
            ("image-classification", "train.learning_rate", 0.01), ("sft", "sft.packing", True),
            ("sft", "sft.train_on_prompt", True), ("sft", "train.learning_rate", 0.01),
            ("text-classification", "train.learning_rate", 0.01), ("text-classification", "model.dropout", 0.2)]


@pytest.mark.parametrize("task, dotted, value", READ)
def test_a_setting_the_data_step_reads_changes_its_key(task, dotted, value, tmp_path):
    cfg = base_config(task, tmp_path / "train.csv", tmp_path)
    a, b = build_config(cfg), build_config(with_override(cfg, dotted, value))
    t = get_task(task)
    assert data_key(a, t) != data_key(b, t) and audit_key(a, t) != audit_key(b, t)


@pytest.mark.parametrize("task, dotted, value", NOT_READ)
def test_a_setting_the_data_step_does_not_read_keeps_its_key(task, dotted, value, tmp_path):
    cfg = base_config(task, tmp_path / "train.csv", tmp_path)
    a, b = build_config(cfg), build_config(with_override(cfg, dotted, value))
    t = get_task(task)
    assert data_key(a, t) == data_key(b, t) and audit_key(a, t) == audit_key(b, t)


def test_the_audit_key_follows_the_audit_settings(tmp_path):
    cfg = base_config("text-classification", tmp_path / "train.csv", tmp_path)
    a, b = build_config(cfg), build_config(with_override(cfg, "audit.near_duplicate_threshold", 0.9))
    t = get_task("text-classification")
    assert data_key(a, t) == data_key(b, t) and audit_key(a, t) != audit_key(b, t)


def loaded_by_fine_tune(monkeypatch, memo: Memo, cfg: dict):
    """Run fine_tune up to the audited splits (its own memo calls) and return them."""
    seen = {}

    def stop_after_audit(cfg, task, data, run_dir, accelerator, resuming, callbacks, memo):
        seen["data"] = run_module._audit(cfg, task, data, run_dir, True, resuming, memo)[0]

    monkeypatch.setattr(run_module, "_execute", stop_after_audit)
    run_module.fine_tune(build_config(cfg), memo=memo)
    return seen["data"]


def test_fine_tune_reloads_images_when_max_side_changes(image_folder, tmp_path, monkeypatch):
    memo = Memo()
    cfg = base_config("image-classification", image_folder, tmp_path)
    first = loaded_by_fine_tune(monkeypatch, memo, {**cfg, "run_name": "a"})
    smaller = loaded_by_fine_tune(monkeypatch, memo, with_override({**cfg, "run_name": "b"}, "image.max_side", 32))
    assert max(first.splits["train"]["image"].iloc[0].shape[:2]) == 64
    assert max(smaller.splits["train"]["image"].iloc[0].shape[:2]) == 32 and memo.hits == {}
    again = loaded_by_fine_tune(monkeypatch, memo, with_override({**cfg, "run_name": "c"},
                                                                 "train.learning_rate", 0.01))
    assert again is first and memo.hits == {"data": 1, "audit": 1}


def test_fine_tune_reloads_chats_when_the_system_prompt_changes(chat_file, tmp_path, monkeypatch):
    memo = Memo()
    cfg = base_config("sft", chat_file, tmp_path)
    first = loaded_by_fine_tune(monkeypatch, memo, {**cfg, "run_name": "a"})
    prompted = loaded_by_fine_tune(monkeypatch, memo, with_override({**cfg, "run_name": "b"}, "sft.system_prompt",
                                                                    "Answer briefly."))
    assert first.splits["train"]["messages"].iloc[0][0]["role"] == "user"
    assert prompted.splits["train"]["messages"].iloc[0][0] == {"role": "system", "content": "Answer briefly."}
    assert memo.hits == {}
    again = loaded_by_fine_tune(monkeypatch, memo, with_override({**cfg, "run_name": "c"}, "sft.packing", True))
    assert again is first and memo.hits == {"data": 1, "audit": 1}
