"""Templates in the data: the text most rows share (an instruction line, a fixed system prompt, a
"Review:" label, a closing "Answer:"), found and set aside so near-duplicate checks compare what varies.

In instruction data every prompt may start with the same long instruction and end in a one-word
answer; two unrelated rows then share most of their character 5-grams. What is shared by most rows
says nothing about whether two particular rows are copies of each other.
"""
from __future__ import annotations

import math
import os
from typing import Sequence

import pandas as pd

# "Shared by most rows": at least this share of the texts (and at least two) carry it.
SHARE = 0.5


def _at_boundary(text: str, cut: int) -> bool:
    """A cut between two letters or digits would split a word: the template ends elsewhere."""
    return cut <= 0 or cut >= len(text) or not (text[cut - 1].isalnum() and text[cut].isalnum())


def shared_prefix(texts: Sequence[str], share: float = SHARE) -> str:
    """The longest prefix, ending between words, that at least `share` of the texts start with."""
    need = max(2, math.ceil(share * len(texts)))
    if len(texts) < need:
        return ""
    ordered = sorted(texts)
    best = ""
    # texts that share a prefix are neighbours once sorted: the prefix of `need` neighbours is the
    # common prefix of the first and last of them
    for first, last in zip(ordered, ordered[need - 1:]):
        if len(first) > len(best) and last.startswith(first[:len(best) + 1]):
            best = os.path.commonprefix([first, last])
    while best and not all(_at_boundary(t, len(best)) for t in texts if t.startswith(best)):
        best = best[:-1]
    return best


def shared_suffix(texts: Sequence[str], share: float = SHARE) -> str:
    """The longest suffix, starting between words, that at least `share` of the texts end with."""
    return shared_prefix([t[::-1] for t in texts], share)[::-1]


def strip_shared(texts: Sequence[str], share: float = SHARE) -> tuple[list[str], dict[str, str]]:
    """Each text without the prefix and the suffix most texts share (removed only where present,
    surrounding whitespace too), and what was removed: {"prefix": ..., "suffix": ...}."""
    prefix = shared_prefix(texts, share)
    rest = [t[len(prefix):] if prefix and t.startswith(prefix) else t for t in texts]
    suffix = shared_suffix(rest, share)
    rest = [r[:len(r) - len(suffix)] if suffix and r.endswith(suffix) else r for r in rest]
    return [r.strip() for r in rest], {"prefix": prefix, "suffix": suffix}


def varying_text(texts: dict[str, pd.Series], share: float = SHARE) -> tuple[dict[str, pd.Series], dict]:
    """Per split, each text without the prefix and suffix most texts share (all splits pooled, so a
    test row and a training row lose the same template); and the template found."""
    pooled = [str(t) for s in texts.values() for t in s]
    stripped, template = strip_shared(pooled, share)
    out, start = {}, 0
    for split, s in texts.items():
        out[split] = pd.Series(stripped[start:start + len(s)], index=s.index)
        start += len(s)
    return out, {k: v for k, v in template.items() if v}


def varying_conversation_text(frames: dict[str, pd.DataFrame],
                              share: float = SHARE) -> tuple[dict[str, pd.Series], dict]:
    """Per split, each conversation (column `messages`) as the text of its turns without the template
    that most turns of the same role share, one turn a line. Role tags are left out: every
    conversation carries them too. Also returns the templates found, by role."""
    turns = [(split, i, m["role"], str(m["content"])) for split, df in frames.items()
             for i, msgs in enumerate(df["messages"]) for m in msgs]
    by_role: dict[str, list[int]] = {}
    for k, (_, _, role, _) in enumerate(turns):
        by_role.setdefault(role, []).append(k)
    varying = [""] * len(turns)
    templates = {}
    for role, index in by_role.items():
        stripped, template = strip_shared([turns[k][3] for k in index], share)
        for k, text in zip(index, stripped):
            varying[k] = text
        if template["prefix"] or template["suffix"]:
            templates[role] = {k: v for k, v in template.items() if v}
    parts: dict[str, list[list[str]]] = {split: [[] for _ in range(len(df))] for split, df in frames.items()}
    for (split, i, _, _), text in zip(turns, varying):
        if text:
            parts[split][i].append(text)
    return ({split: pd.Series(["\n".join(p) for p in parts[split]], index=frames[split].index, dtype=object)
             for split in frames}, templates)
