"""Model outputs for every example of a split, in example order, batched and sharded over processes
when distributed: what evaluation (and the tasks' validation scores) read from a model."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader


def _collate_with_index(collate: Callable) -> Callable:
    def wrapped(items: list[tuple[int, dict]]) -> dict[str, torch.Tensor]:
        batch = collate([ex for _, ex in items])
        batch["example_index"] = torch.tensor([i for i, _ in items])
        return batch

    return wrapped


@torch.no_grad()
def per_example(model: torch.nn.Module, examples: Sequence[dict], collate: Callable, batch_size: int,
                accelerator, fn: Callable) -> tuple[np.ndarray, ...]:
    """`fn(model, batch)` returns a tuple of tensors with one row per example; this gives them for
    every example, in example order, sharded over processes when distributed. Token examples run in
    length order (Banking77 evaluation: about a third of the padded tokens of batches in row order)."""
    data = list(enumerate(examples))
    if data and "input_ids" in data[0][1]:  # tokens: batches of similar length carry little padding
        data.sort(key=lambda item: len(item[1]["input_ids"]))
    loader = accelerator.prepare(DataLoader(data, batch_size=batch_size, shuffle=False,
                                            collate_fn=_collate_with_index(collate), generator=torch.Generator()))
    was_training = model.training
    model.eval()
    outs: list[list[np.ndarray]] = []
    index = []
    for batch in loader:
        idx = batch.pop("example_index")
        *values, idx = accelerator.gather_for_metrics((*fn(model, batch), idx))
        outs.append([v.cpu().numpy() for v in values])
        index.append(idx.cpu().numpy())
    model.train(was_training)
    order = np.argsort(np.concatenate(index), kind="stable")
    return tuple(np.concatenate(col)[order] for col in zip(*outs))


def predict_logits(model: torch.nn.Module, examples: Sequence[dict], collate: Callable, batch_size: int,
                   accelerator, logits_fn: Callable) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of every example, in example order."""
    return per_example(model, examples, collate, batch_size, accelerator,
                       lambda m, batch: (logits_fn(m, batch).float(), batch["labels"]))
