"""Seeded, length-grouped batching: the batch order of every epoch is a function of (seed, epoch).

Batches hold `batch_size` rows, or with `max_tokens` as many rows as fit in that many padded tokens."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into mega-batches of `mega * batch_size`, sort each by length, then shuffle
    the batches. Similar lengths share a batch, so dynamic padding adds few pad tokens, while
    the order stays random. Deterministic per epoch, which is what makes exact resume possible."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True,
                 mega: int = 50, max_tokens: int | None = None) -> None:
        self.lengths = list(lengths)
        self.max_tokens = max_tokens
        # token budget: the batch boundaries over the length-sorted rows are the same every epoch
        # (only which row of a given length lands where changes), so the epoch length is fixed
        self._sizes = _budget_sizes(sorted(self.lengths), max_tokens) if max_tokens else None
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.mega = mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self._sizes) if self._sizes else math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        if self._sizes:  # shortest first, ties in random order; cut at the fixed sizes; shuffle the batches
            order.sort(key=lambda j: self.lengths[j])
            starts = [sum(self._sizes[:k]) for k in range(len(self._sizes))]
            batches = [order[a:a + n] for a, n in zip(starts, self._sizes)]
            yield from (batches[i] for i in torch.randperm(len(batches), generator=g).tolist())
            return
        if self.group_by_length:
            size = self.batch_size * self.mega
            order = [i for start in range(0, len(order), size)
                     for i in sorted(order[start:start + size], key=lambda j: -self.lengths[j])]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[i] for i in perm]
        yield from batches


def _budget_sizes(sorted_lengths: list[int], max_tokens: int) -> list[int]:
    """Rows per batch when ascending lengths are cut greedily so that rows x longest <= max_tokens
    (a row longer than the budget gets a batch of its own)."""
    sizes, n = [], 0
    for length in sorted_lengths:
        if n and (n + 1) * length > max_tokens:
            sizes.append(n)
            n = 0
        n += 1
    return sizes + [n] if n else sizes
