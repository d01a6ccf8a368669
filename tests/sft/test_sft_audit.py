"""The SFT task's audit on instruction data whose prompts share one instruction line: no near-leaks
from the template alone, a real near-copy of a training conversation still blocks."""
from __future__ import annotations

from tests.data.test_templates import chat_frames, templated_splits
from tunesmith.config import build_config
from tunesmith.tasks import get_task
from tunesmith.tasks.base import TaskData


def sft_audit(tmp_path, plant: bool) -> dict:
    cfg = build_config({"task": "sft", "model": {"name": str(tmp_path)}, "data": {"train": str(tmp_path / "c.jsonl")},
                        "audit": {"on_issue": "warn"}})
    splits = templated_splits(plant)
    splits["validation"] = splits["train"][250:]
    splits["train"] = splits["train"][:250]
    frames = chat_frames(splits)
    _, report = get_task("sft").audit(cfg, TaskData(splits=frames, labels=[]))
    return {f["check"]: f for f in report["findings"]}


def test_sft_audit_ignores_the_shared_instruction(tmp_path):
    found = sft_audit(tmp_path, plant=False)
    assert found["leakage_near"]["count"] == 0 and found["near_duplicates"]["count"] == 0


def test_sft_audit_flags_a_real_near_leak_with_both_texts(tmp_path):
    leak = sft_audit(tmp_path, plant=True)["leakage_near"]
    assert leak["severity"] == "blocking" and [(r["split"], r["row"]) for r in leak["rows"]] == [("test", 42)]
    assert leak["rows"][0]["text"].startswith("the soup was lovely and the waiter kind, but")
    assert leak["rows"][0]["text_of_match"].startswith("the soup was lovely and the waiter kind but")
