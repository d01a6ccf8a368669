"""Long texts as overlapping windows of the model's length, whose logits are averaged into the text's.

A text longer than `model.max_length` tokens is cut into windows of at most that many tokens (the
tokenizer's special tokens around each), each `overlap` tokens into the previous one, at most `max_windows`
of them from the start. The classifier scores every window and a text's logits are the mean of its
windows' logits, in training (the loss is taken on the mean) and in predict, eval, export and serve alike.

numpy only (`mean_rows` takes torch tensors through their own methods): the ONNX runtime, which never imports
torch or transformers, cuts texts with these functions too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


def specials(encode: Callable[[str, bool], list[int]]) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single text ([CLS] and [SEP] for BERT), from
    `encode(text, add_special_tokens)`."""
    plain, full = encode("a", False), encode("a", True)
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    raise ValueError("the tokenizer's special tokens do not surround the text; use model.long_text: truncate")


def split(ids: Sequence[int], size: int, overlap: int, max_windows: int, prefix: Sequence[int],
          suffix: Sequence[int]) -> list[list[int]]:
    """The windows of one text's token ids (without special tokens): each at most `size` ids with the
    specials, consecutive windows sharing `overlap` ids, at most `max_windows`; at least one (the empty text)."""
    body = size - len(prefix) - len(suffix)
    step = max(1, body - overlap)
    starts = [0] + [s for s in range(step, len(ids), step) if s + overlap < len(ids)]
    return [[*prefix, *ids[s:s + body], *suffix] for s in starts[:max_windows]]


def mean_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Rows of `values` averaged per owner (0..n-1): a text's logits from its windows'."""
    sums = np.zeros((n, values.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, values)
    return (sums / np.bincount(owner, minlength=n)[:, None]).astype(values.dtype)


def mean_rows(values, owner, n: int):
    """`mean_by_owner` for torch tensors (tensor methods only: this module imports no torch), keeping the
    gradient: training takes its loss on a text's mean logits."""
    sums = values.new_zeros((n, values.shape[1])).index_add_(0, owner.to(values.device), values)
    return sums / owner.bincount(minlength=n).to(values).unsqueeze(1)


def hf_specials(tokenizer) -> tuple[list[int], list[int]]:
    """`specials` of a transformers tokenizer."""
    return specials(lambda t, add: tokenizer(t, add_special_tokens=add)["input_ids"])


@dataclass(frozen=True)
class Windows:
    """How a run reads its texts: windows of `size` tokens sharing `overlap`, at most `max_windows` of them
    (1: the text is truncated to `size`)."""
    size: int
    overlap: int = 0
    max_windows: int = 1

    @classmethod
    def of(cls, model, size: int, windowed: bool | None = None) -> "Windows":
        """From a run's model settings (config.ModelConfig); `windowed` overrides model.long_text."""
        on = model.long_text == "windows" if windowed is None else windowed
        overlap = size // 8 if model.window_overlap is None else model.window_overlap
        return cls(size, overlap if on else 0, model.max_windows if on else 1)

    @property
    def on(self) -> bool:
        return self.max_windows > 1

    def check(self, n_specials: int) -> None:
        if self.on and self.overlap >= self.size - n_specials:
            raise ValueError(f"window_overlap {self.overlap} must be below max_length {self.size} minus the "
                             f"{n_specials} special tokens")

    def covers(self, n_tokens: int, n_specials: int) -> bool:
        """Whether a text of `n_tokens` ids (with its specials) is read whole."""
        body = self.size - n_specials
        return n_tokens - n_specials <= body + (self.max_windows - 1) * max(1, body - self.overlap)

    def cut(self, texts_ids: Sequence[Sequence[int]], prefix: Sequence[int], suffix: Sequence[int]
            ) -> tuple[list[list[int]], np.ndarray]:
        """Every text's windows, flattened, and for each window the index of its text."""
        windows, owner = [], []
        for i, ids in enumerate(texts_ids):
            these = split(ids, self.size, self.overlap, self.max_windows, prefix, suffix)
            windows += these
            owner += [i] * len(these)
        return windows, np.asarray(owner, dtype=np.int64)

    def hf(self, tokenizer, texts: Sequence[str]) -> tuple[list[list[int]], np.ndarray]:
        """`cut` with a transformers tokenizer."""
        prefix, suffix = hf_specials(tokenizer)
        ids = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)["input_ids"] \
            if len(texts) else []
        return self.cut(ids, prefix, suffix)
