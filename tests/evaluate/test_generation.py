"""Generation metrics against references (SQuAD-normalised exact match and token F1, ROUGE-L), and the
held-out prompts of the base-vs-tuned comparison."""
from __future__ import annotations

import pytest

from tunesmith.evaluate.generation import exact_match, generation_scores, held_out_prompts, token_f1


def test_exact_match_and_token_f1_normalise_case_punctuation_and_articles():
    assert exact_match("The Sky is blue!", "sky is  blue") == 1.0 and exact_match("sky is red", "sky is blue") == 0.0
    # 2 shared tokens: precision 2/2, recall 2/4 (after dropping "the")
    assert token_f1("blue sky", "the sky is very blue") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", "") == 1.0 and token_f1("", "blue") == 0.0


def test_generation_scores_average_per_answer():
    out = generation_scores(["Paris is in France.", "no idea"], ["Paris is in France", "It is blue"])
    assert out["n"] == 2 and [r["exact_match"] for r in out["per_answer"]] == [1.0, 0.0]
    assert out["exact_match"] == 0.5 and out["token_f1"] == pytest.approx(0.5)
    assert out["per_answer"][0]["rouge_l"] == 1.0 and out["rouge_l"] == pytest.approx(0.5)


CHATS = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"},
          {"role": "user", "content": f"more{i}"}, {"role": "assistant", "content": f"b{i}"}] for i in range(3)]


def test_prompts_end_before_the_last_answer_and_respect_the_limit():
    first = held_out_prompts(CHATS, 2)
    assert len(first) == 2 and first[0]["prompt"] == CHATS[0][:3] and first[0]["reference"] == "b0"
    answer_first = [[{"role": "assistant", "content": "no prompt"}]]
    assert held_out_prompts(answer_first + CHATS, 1) == [{"prompt": CHATS[0][:3], "reference": "b0"}]
    assert held_out_prompts(CHATS, 0) == []  # sft.eval_generations: 0 generates nothing
