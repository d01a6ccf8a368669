"""`train.method: auto` for classification: the method that the amount of data per class calls for,
then (for contrastive) the validation score.

By data size (median training examples per class): below 2 no same-class pair exists, so only a head
on the frozen encoder (linear-probe); 2 to 50, contrastive; above 50, full fine-tuning. The contrastive
method then decides by validation score, which is cheap there (one logistic regression on each
encoder's embeddings): it keeps the contrastive-tuned encoder only if its head validates at least as
well as the same head on the pre-trained encoder (the linear probe), and the reason records both
scores (tasks/contrastive.py, ProbeOrTuned).

Evidence (bench/bench_fewshot.py, bench/RESULTS.md "Small data", MiniLM-L6, Banking77): at 10 and
30 examples per class, full fine-tuning with its defaults reaches 0.47, far below contrastive and the
probe; on the whole training set (about 115 per class) it reaches 0.90 (issue 13). The switch at 50
per class lies between those measurements; it is not measured more finely. LoRA is never chosen: on
these small encoders it was not measured to beat full fine-tuning at any size.
"""
from __future__ import annotations

import statistics
from typing import Sequence

# Median training examples per class at and below which the contrastive method is chosen.
CONTRASTIVE_MAX_PER_CLASS = 50
# Below this, most classes cannot form a positive pair: only the head can be trained.
PAIRS_MIN_PER_CLASS = 2


def choose_method(class_counts: Sequence[int]) -> dict:
    """{method, per_class, reason} for training examples per class `class_counts`."""
    per_class = statistics.median(class_counts) if class_counts else 0
    facts = f"{sum(class_counts)} training rows, {len(class_counts)} classes, median {per_class:g} per class"
    if per_class < PAIRS_MIN_PER_CLASS:
        return {"method": "linear-probe", "per_class": per_class,
                "reason": f"{facts}: too few per class to build same-class pairs; train the head on the "
                          "frozen encoder"}
    if per_class <= CONTRASTIVE_MAX_PER_CLASS:
        return {"method": "contrastive", "per_class": per_class,
                "reason": f"{facts} (<= {CONTRASTIVE_MAX_PER_CLASS}): small data, where contrastive tuning of "
                          "the encoder on label-built pairs, then a head, beats full fine-tuning "
                          "(bench/RESULTS.md, Small data); the tuned encoder is kept only if it validates "
                          "at least as well as the pre-trained one (linear probe)"}
    return {"method": "full", "per_class": per_class,
            "reason": f"{facts} (> {CONTRASTIVE_MAX_PER_CLASS}): enough data for full fine-tuning "
                      "(bench/RESULTS.md, Small data)"}
