"""Split a batch of texts into runs of similar length before the forward pass.

A batch is padded to its longest text, so one long text makes every short one pay for its length:
on Banking77 (15 tokens on average, 76 at most) a batch of 32 in arrival order holds 2.9 times its
real tokens, which cancelled what batching saves (bench/RESULTS.md, serving CPU accounting).
Each forward pass also has a fixed cost (the weights stream from memory once per pass, whatever
its size), so splitting too finely loses too. `length_groups` picks the split that minimises
`overhead + size x longest` summed over groups, exactly, by dynamic programming over the sorted
lengths (n <= max_batch, so O(n^2) is nothing next to a forward pass).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

# Fixed cost of one forward pass in tokens' worth of work, per backend. PyTorch (eager): MiniLM-L6 on one
# CPU core costs ~14 ms for a one-text pass and ~0.3 ms per token in a full one; 16, 32 and 64 gave the
# same CPU per text within noise on Banking77 batches of 8 and 32. ONNX Runtime has far less per pass
# (~5 ms for a one-text pass, mostly arithmetic): on the same batches 8 and 16 took ~9% less CPU per
# text than 32 (4.5 against 4.9 ms, contended 2-core machine), 4 no less than 8.
PASS_OVERHEAD_TOKENS = {"torch": 32, "onnx": 8}


def length_groups(lengths: Sequence[int], overhead: float = PASS_OVERHEAD_TOKENS["torch"]) -> list[list[int]]:
    """Indices of `lengths` split into groups of similar length (each group sorted by length, groups
    in increasing length), minimising the sum over groups of `overhead + len(group) * max length`."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest split of the j shortest
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sorted_lengths[j - 1]
        for i in range(j):
            cost = best[i] + overhead + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups = []
    j = n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int | None) -> list[int]:
    """Tokens per text (truncated as the model will see it): a transformers tokenizer, a `tokenizers`
    Tokenizer (the ONNX backend's), or, without one, characters / 4 as a stand-in."""
    texts = [str(t) for t in texts]
    if hasattr(tokenizer, "encode_batch"):
        lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    elif callable(tokenizer):
        lengths = [len(ids) for ids in tokenizer(texts, truncation=max_length is not None,
                                                 max_length=max_length)["input_ids"]]
    else:
        lengths = [len(t) // 4 + 2 for t in texts]
    return [min(n, max_length) for n in lengths] if max_length else lengths


def grouped_logits(predictor: Any, texts: Sequence[str], overhead: float = PASS_OVERHEAD_TOKENS["torch"]
                   ) -> np.ndarray:
    """`predictor.logits(texts)` computed one length group at a time (see length_groups for `overhead`), rows
    back in input order."""
    if len(texts) <= 1:
        return predictor.logits(texts)
    lengths = token_lengths(getattr(predictor, "tokenizer", None), texts, getattr(predictor, "max_length", None))
    out: np.ndarray | None = None
    for group in length_groups(lengths, overhead):
        rows = predictor.logits([texts[i] for i in group])
        if out is None:
            out = np.empty((len(texts), rows.shape[1]), dtype=rows.dtype)
        out[group] = rows
    return out
