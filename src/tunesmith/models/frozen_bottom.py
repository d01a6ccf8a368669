"""Caching a frozen encoder bottom (train.freeze_layers with train.cache_frozen_layers): run the embeddings
and the bottom N layers once, then train the layers above on their stored outputs.

With the bottom frozen and run without dropout (eval mode), its output for a text never changes, so
every epoch recomputing it is wasted work. `cache_bottom` computes each row's hidden states [length,
hidden] once (fp32, as the layer norm ends each layer); `attach` swaps the model's embeddings for
`CachedBottom`, which looks rows up by the id that arrives as `input_ids[:, 0]`, and the bottom layers for
pass-throughs. Parameter names above the bottom do not change, so checkpoints, layer-wise rates and
resume work as without the cache; the cache is rebuilt identically when a run resumes. `attach` proves
the substitution on real rows (the cached logits must equal the full model's) and declines otherwise,
e.g. for an encoder whose layout is not `embeddings` plus `encoder.layer`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

# above this many bytes of stored hidden states the cache is declined (fp32: 4 bytes x tokens x hidden)
MAX_CACHE_BYTES = 4 * 2**30


@dataclass
class BottomCache:
    hidden: torch.Tensor  # [tokens of every row, hidden]: the bottom's output, rows one after another
    starts: torch.Tensor  # [rows]: each row's first token in `hidden`
    lengths: torch.Tensor  # [rows]
    offsets: dict[str, int]  # split name -> id of its first row
    n_layers: int
    precision: str  # the autocast it was computed under: fp32 or bf16


class CachedBottom(nn.Module):
    """Stands in for the embeddings: the cached bottom output of the rows whose ids are `input_ids[:, 0]`,
    zero-padded to the batch's length (padding is masked from attention, as the real pad tokens are)."""

    def __init__(self, cache: BottomCache, embeddings: nn.Module) -> None:
        super().__init__()
        self.register_buffer("hidden", cache.hidden, persistent=False)
        self.register_buffer("starts", cache.starts, persistent=False)
        self.register_buffer("lengths", cache.lengths, persistent=False)
        self.__dict__["embeddings"] = embeddings  # the real module, kept out of parameters() and state_dict()

    def forward(self, input_ids: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        ids = input_ids[:, 0]
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        valid = pos[None, :] < self.lengths[ids][:, None]
        index = torch.where(valid, self.starts[ids][:, None] + pos[None, :], 0)
        return self.hidden[index] * valid[..., None]


class Skipped(nn.Module):
    """A bottom layer whose output the cache already holds: passes the hidden states through."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.__dict__["layer"] = layer

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return hidden_states


def _parts(model: nn.Module, n_layers: int) -> tuple[nn.Module, nn.Module, nn.ModuleList] | None:
    """The body, its embeddings and its layer list, where the model has the BERT layout."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    embeddings = getattr(body, "embeddings", None)
    layers = getattr(getattr(body, "encoder", None), "layer", None)
    if embeddings is None or not isinstance(layers, nn.ModuleList) or len(layers) <= n_layers:
        return None
    return body, embeddings, layers


@torch.no_grad()
def cache_bottom(model: nn.Module, n_layers: int, encoded: dict[str, Sequence[dict]], collate: Callable,
                 precision: str = "fp32", batch_size: int = 64) -> BottomCache | None:
    """Run the embeddings and the bottom N layers over every split once, in eval mode (under bf16
    autocast for a bf16 run, as training would); None when the model lacks the layout or the
    states would pass MAX_CACHE_BYTES."""
    parts = _parts(model, n_layers)
    if parts is None:
        return None
    body, embeddings, layers = parts
    rows = sum(len(ex["input_ids"]) for examples in encoded.values() for ex in examples)
    if rows * body.config.hidden_size * 4 > MAX_CACHE_BYTES:
        return None
    was_training = model.training
    model.eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    chunks, lengths, offsets, start = [], [], {}, 0
    body.encoder.layer = nn.ModuleList(list(layers)[:n_layers])  # the body's own forward, cut after N layers
    try:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
            for split, examples in encoded.items():
                offsets[split], start = start, start + len(examples)
                # in length order, so that batches carry little padding; stored in row order
                order = sorted(range(len(examples)), key=lambda j: len(examples[j]["input_ids"]))
                states: list[torch.Tensor | None] = [None] * len(examples)
                for i in range(0, len(order), batch_size):
                    part = order[i:i + batch_size]
                    batch = {k: v.to(device) for k, v in _inputs(collate, [examples[j] for j in part]).items()}
                    for row, j in zip(body(**batch).last_hidden_state, part):
                        states[j] = row[:len(examples[j]["input_ids"])].float().cpu()
                chunks += states
                lengths += [len(ex["input_ids"]) for ex in examples]
    finally:
        body.encoder.layer = layers
        model.to("cpu")
        model.train(was_training)
    lengths_t = torch.tensor(lengths)
    starts = torch.cumsum(lengths_t, 0) - lengths_t
    return BottomCache(torch.cat(chunks), starts, lengths_t, offsets, n_layers, precision)


def _inputs(collate: Callable, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
    return collate([{k: v for k, v in ex.items() if k != "labels"} for ex in rows])


def id_examples(encoded: dict[str, Sequence[dict]], cache: BottomCache) -> dict[str, list[dict]]:
    """The examples the cached model takes: the row's id in the first token's place, its real length and
    attention mask kept, so length-grouped batches and padding stay as they were."""
    return {split: [{"input_ids": [cache.offsets[split] + i] + [0] * (len(ex["input_ids"]) - 1),
                     "attention_mask": ex["attention_mask"], "labels": ex["labels"]} for i, ex in enumerate(rows)]
            for split, rows in encoded.items()}


@torch.no_grad()
def attach(model: nn.Module, cache: BottomCache, encoded: dict[str, Sequence[dict]], cached: dict[str, list[dict]],
           collate: Callable, check_rows: int = 8) -> bool:
    """Swap in the cache if, on `check_rows` real rows, the model gives the same logits with it as without
    (both in eval mode); `cached` are the same rows as `id_examples` gives them."""
    body, embeddings, layers = _parts(model, cache.n_layers)
    was_training = model.training
    model.eval()
    # compared: the body's first-token state (unit scale after the layer norm, blind to padding) and the
    # logits; bf16 states differ in the last bits with the batch's padding, a wrong layout differs entirely
    tol = 5e-2 if cache.precision == "bf16" else 1e-3

    def outputs(rows: Sequence[dict]) -> torch.Tensor:
        out = model(**_inputs(collate, rows), output_hidden_states=True)
        return torch.cat([out.hidden_states[-1][:, 0], out.logits], dim=1).float()

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cache.precision == "bf16"):
        expected = outputs(encoded["train"][:check_rows])
        body.embeddings = CachedBottom(cache, embeddings)
        for i in range(cache.n_layers):
            layers[i] = Skipped(layers[i])
        got = outputs(cached["train"][:check_rows])
    model.train(was_training)
    if got.shape == expected.shape and torch.allclose(got, expected, atol=tol, rtol=tol):
        return True
    _restore(body, layers)
    return False


def _restore(body: nn.Module, layers: nn.ModuleList) -> None:
    body.embeddings = body.embeddings.embeddings
    for i, layer in enumerate(layers):
        if isinstance(layer, Skipped):
            layers[i] = layer.layer


@contextmanager
def detached(model: nn.Module) -> Iterator[nn.Module]:
    """The model with its real bottom (to save it), the cache put back afterwards."""
    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    cached = getattr(body, "embeddings", None)
    if not isinstance(cached, CachedBottom):
        yield model
        return
    layers = body.encoder.layer
    skipped = {i: layer for i, layer in enumerate(layers) if isinstance(layer, Skipped)}
    _restore(body, layers)
    try:
        yield model
    finally:
        body.embeddings = cached
        for i, layer in skipped.items():
            layers[i] = layer
