"""Frozen-backbone feature caching: a linear probe runs the pre-trained body once, not every epoch.

With the body frozen, its outputs never change, so `cache_features` computes them once (in eval
mode, as a frozen backbone should run) and `CachedBody` stands in for the body: the model's own
forward then applies its own head (dropout, pooling, classifier) to rows looked up by id. Every
sequence-classification head in transformers reads the pooler output or the first token, so the
cache keeps those two. `attach` proves the substitution on real rows (cached logits must equal
the full model's) and declines when they differ.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn


@dataclass
class Features:
    first_token: torch.Tensor  # [rows, 1, hidden]: last hidden state of the first token
    pooled: torch.Tensor | None  # [rows, hidden]: the body's pooler output, where it has one
    offsets: dict[str, int]  # split name -> index of its first row


class CachedBody(nn.Module):
    """Returns the cached body outputs of the rows whose ids arrive as `input_ids[:, 0]`."""

    def __init__(self, features: Features, body: nn.Module) -> None:
        super().__init__()
        self.register_buffer("first_token", features.first_token, persistent=False)
        self.register_buffer("pooled", features.pooled, persistent=False)
        self.__dict__["body"] = body  # the real body, kept out of parameters() and state_dict()
        self.config = getattr(body, "config", None)

    def forward(self, input_ids: torch.Tensor, *args, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        ids = input_ids[:, 0]
        return BaseModelOutputWithPooling(last_hidden_state=self.first_token[ids],
                                          pooler_output=None if self.pooled is None else self.pooled[ids])


@torch.no_grad()
def cache_features(model: nn.Module, encoded: dict[str, Sequence[dict]], collate: Callable,
                   batch_size: int = 64) -> Features:
    """Run the frozen body over every split once."""
    body = model.base_model
    was_training = body.training
    body.eval()
    firsts, pooled, offsets, start = [], [], {}, 0
    for split, examples in encoded.items():
        offsets[split] = start
        start += len(examples)
        for i in range(0, len(examples), batch_size):
            batch = collate([{k: v for k, v in ex.items() if k != "labels"} for ex in examples[i:i + batch_size]])
            out = body(**batch)
            firsts.append(out.last_hidden_state[:, :1].float())
            if getattr(out, "pooler_output", None) is not None:
                pooled.append(out.pooler_output.float())
    body.train(was_training)
    return Features(torch.cat(firsts), torch.cat(pooled) if pooled else None, offsets)


def id_examples(encoded: dict[str, Sequence[dict]], features: Features) -> dict[str, list[dict]]:
    """The examples the cached model takes: each row's id in place of its tokens."""
    return {split: [{"input_ids": [features.offsets[split] + i], "labels": ex["labels"]} for i, ex in enumerate(rows)]
            for split, rows in encoded.items()}


def collate_ids(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor([ex["input_ids"] for ex in examples]),
            "labels": torch.tensor([ex["labels"] for ex in examples])}


@torch.no_grad()
def attach(model: nn.Module, features: Features, encoded: dict[str, Sequence[dict]], collate: Callable,
           check_rows: int = 8) -> bool:
    """Swap the body for the cache if, on `check_rows` real rows, both give the same logits."""
    train = encoded["train"][:check_rows]
    inputs = collate([{k: v for k, v in ex.items() if k != "labels"} for ex in train])
    was_training = model.training
    model.eval()
    expected = model(**inputs).logits
    prefix = model.base_model_prefix
    body = getattr(model, prefix)
    setattr(model, prefix, CachedBody(features, body))
    got = model(input_ids=torch.arange(len(train)).unsqueeze(1) + features.offsets["train"]).logits
    model.train(was_training)
    if got.shape == expected.shape and torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
        return True
    setattr(model, prefix, body)
    return False


@contextmanager
def detached(model: nn.Module) -> Iterator[nn.Module]:
    """The model with its real body (to save it), the cache put back afterwards: the encoded splits are
    row ids, so predicting after a save still needs the cached body."""
    prefix = getattr(model, "base_model_prefix", "")
    cached = getattr(model, prefix, None) if prefix else None
    if not isinstance(cached, CachedBody):
        yield model
        return
    setattr(model, prefix, cached.body)
    try:
        yield model
    finally:
        setattr(model, prefix, cached)
