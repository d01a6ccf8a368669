from __future__ import annotations

import random

from tunesmith.train.sampling import LengthGroupedBatchSampler


def padded_tokens(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches)


def test_every_index_once_and_deterministic_per_epoch():
    lengths = [random.Random(i).randint(3, 200) for i in range(1000)]
    s = LengthGroupedBatchSampler(lengths, 16, seed=1)
    s.set_epoch(0)
    e0 = list(s)
    assert sorted(i for b in e0 for i in b) == list(range(1000)) and len(e0) == len(s) == 63
    assert list(s) == e0
    s.set_epoch(1)
    assert list(s) != e0


def test_length_grouping_cuts_padding():
    lengths = [random.Random(i).randint(3, 200) for i in range(2000)]
    grouped = list(LengthGroupedBatchSampler(lengths, 32, seed=0, group_by_length=True))
    plain = list(LengthGroupedBatchSampler(lengths, 32, seed=0, group_by_length=False))
    assert padded_tokens(grouped, lengths) < 0.7 * padded_tokens(plain, lengths)
