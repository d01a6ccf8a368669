"""Held-out prompts for the base-vs-tuned comparison."""
from __future__ import annotations

from tunesmith.evaluate.generation import held_out_prompts

CHATS = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"},
          {"role": "user", "content": f"more{i}"}, {"role": "assistant", "content": f"b{i}"}] for i in range(3)]


def test_prompts_end_before_the_last_answer_and_respect_the_limit():
    first = held_out_prompts(CHATS, 2)
    assert len(first) == 2 and first[0]["prompt"] == CHATS[0][:3] and first[0]["reference"] == "b0"
    answer_first = [[{"role": "assistant", "content": "no prompt"}]]
    assert held_out_prompts(answer_first + CHATS, 1) == [{"prompt": CHATS[0][:3], "reference": "b0"}]
    assert held_out_prompts(CHATS, 0) == []  # sft.eval_generations: 0 generates nothing
