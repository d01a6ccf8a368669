"""Generation metrics against references: SQuAD-normalised exact match and token F1, ROUGE-L."""
from __future__ import annotations

import pytest

from tunesmith.evaluate.generation import exact_match, generation_scores, token_f1


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
