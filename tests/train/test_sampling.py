from __future__ import annotations

import random

import pytest

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


def test_token_budget_batches_cover_every_row_within_the_budget_with_a_fixed_epoch_length():
    lengths = [random.Random(i).randint(3, 120) for i in range(1000)] + [300]  # one row over the budget
    s = LengthGroupedBatchSampler(lengths, 16, seed=1, max_tokens=512)
    epochs = []
    for epoch in range(3):
        s.set_epoch(epoch)
        batches = list(s)
        assert sorted(i for b in batches for i in b) == list(range(1001))
        assert all(len(b) * max(lengths[i] for i in b) <= 512 for b in batches if len(b) > 1)
        assert len(batches) == len(s)  # the loop's schedule and resume count on it
        epochs.append(batches)
    assert epochs[0] != epochs[1] and list(s) == epochs[2]
    sizes = [len(b) for b in epochs[0]]
    assert max(sizes) > 4 * min(sizes)  # short texts share a batch with many more rows than long ones
    # fewer padded tokens than fixed 16-row length-grouped batches, in fewer or as many steps
    assert padded_tokens(epochs[0], lengths) < padded_tokens(list(LengthGroupedBatchSampler(lengths, 16, 1)), lengths)


def test_token_budget_batches_give_each_example_the_loss_of_plain_batches(tiny_model, tiny_csv, tmp_path):
    """Per-example losses of the task's model and collate on token-budget batches equal those on plain
    fixed-size batches (padding and the batch a row lands in change nothing but speed)."""
    import torch

    from tests.conftest import tiny_config
    from tunesmith.config import build_config
    from tunesmith.tasks import get_task

    cfg = build_config(tiny_config(tiny_model, tiny_csv, tmp_path, precision="bf16"))
    task = get_task(cfg.task)
    data = task.load_data(cfg)
    prepared = task.prepare(cfg, data)
    model, examples = prepared.model.eval(), prepared.encoded["train"]

    def losses(sampler) -> dict[int, float]:
        out = {}
        with torch.no_grad():
            for idx in sampler:
                batch = prepared.collate([examples[i] for i in idx])
                logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
                per_row = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
                out.update(zip(idx, per_row.tolist()))
        return out

    budget = LengthGroupedBatchSampler(prepared.lengths, 8, seed=3, max_tokens=96)
    plain = LengthGroupedBatchSampler(prepared.lengths, 8, seed=3, group_by_length=False)
    assert len(budget) != len(plain) and len({len(b) for b in budget}) > 1  # the batches really differ
    got, want = losses(budget), losses(plain)
    assert sorted(got) == sorted(want) == list(range(len(examples)))
    assert [got[i] for i in range(len(examples))] == pytest.approx([want[i] for i in range(len(examples))],
                                                                   rel=1e-4, abs=1e-5)
