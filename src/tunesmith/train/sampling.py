"""Seeded, length-grouped batching: the batch order of every epoch is a function of (seed, epoch)."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffle, cut into mega-batches of `mega * batch_size`, sort each by length, then shuffle
    the batches. Similar lengths share a batch, so dynamic padding adds few pad tokens, while
    the order stays random. Deterministic per epoch, which is what makes exact resume possible."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_by_length: bool = True,
                 mega: int = 50) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.mega = mega
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        if self.group_by_length:
            size = self.batch_size * self.mega
            order = [i for start in range(0, len(order), size)
                     for i in sorted(order[start:start + size], key=lambda j: -self.lengths[j])]
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.group_by_length:
            perm = torch.randperm(len(batches), generator=g).tolist()
            batches = [batches[i] for i in perm]
        yield from batches
