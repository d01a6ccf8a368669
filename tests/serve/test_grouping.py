"""Length grouping before the forward pass: the split is the cheapest one, and the rows come back in
input order, equal to one padded pass over the whole batch."""
from __future__ import annotations

import itertools
import random

import numpy as np

from tunesmith.serve.grouping import grouped_logits, length_groups, token_lengths


def cost(lengths, groups, overhead):
    return sum(overhead + len(g) * max(lengths[i] for i in g) for g in groups)


def brute_force_cost(lengths, overhead):
    """Cheapest split of the sorted lengths into contiguous runs, by trying every cut."""
    s = sorted(lengths)
    best = float("inf")
    for cuts in itertools.product([False, True], repeat=len(s) - 1):
        total, start = 0, 0
        for i, cut in enumerate(list(cuts) + [True]):
            if cut:
                total += overhead + (i + 1 - start) * s[i]
                start = i + 1
        best = min(best, total)
    return best


def test_groups_partition_the_batch_at_the_cheapest_split():
    rng = random.Random(0)
    for _ in range(60):
        lengths = [rng.choice([3, 5, 8, 13, 20, 40, 64]) for _ in range(rng.randint(1, 8))]
        overhead = rng.choice([0, 8, 32, 200])
        groups = length_groups(lengths, overhead)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        assert cost(lengths, groups, overhead) == brute_force_cost(lengths, overhead)


def test_one_long_text_runs_apart_and_equal_lengths_stay_together():
    assert length_groups([12] * 10 + [64], overhead=32) == [list(range(10)), [10]]
    assert length_groups([12] * 10, overhead=32) == [list(range(10))]
    assert length_groups([], overhead=32) == []


class Recorder:
    """A predictor's logits, recording the size of each call."""

    def __init__(self, predictor) -> None:
        self.predictor, self.sizes = predictor, []
        self.tokenizer, self.max_length = predictor.tokenizer, predictor.max_length

    def logits(self, inputs):
        self.sizes.append(len(inputs))
        return self.predictor.logits(inputs)


def test_grouped_rows_come_back_in_input_order_equal_to_one_padded_pass(text_run):
    from tunesmith.predict import load_predictor

    predictor = load_predictor(text_run)
    long = " ".join(["great superb food and a lovely friendly place"] * 5)
    texts = ["good", long, "awful broken", "nice happy day", long + " awful", "bad"] * 3
    recorder = Recorder(predictor)
    grouped = grouped_logits(recorder, texts)
    assert len(recorder.sizes) >= 2 and sum(recorder.sizes) == len(texts)  # it did split
    np.testing.assert_allclose(grouped, predictor.logits(texts), atol=1e-5)


def test_token_lengths_count_what_the_model_sees(text_run):
    from tunesmith.predict import load_predictor

    predictor = load_predictor(text_run)
    lengths = token_lengths(predictor.tokenizer, ["good", "good bad good bad", "good " * 500], 64)
    assert lengths[0] == 3 and lengths[1] == 6  # [CLS] ... [SEP]
    assert lengths[2] == 64  # truncated as in the forward pass
    assert token_lengths(None, ["abcdefgh", ""], None) == [4, 2]  # no tokenizer: characters / 4
