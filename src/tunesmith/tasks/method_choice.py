"""`train.method: auto` for classification: the method that the amount of data per class calls for.

The thresholds come from bench/bench_fewshot.py (results in bench/RESULTS.md, "Small data"):
with MiniLM-L6, the contrastive stage then a head beats plain fine-tuning and the frozen-encoder
baselines at 10 and 30 examples per class; with a few hundred per class full fine-tuning wins.
"""
from __future__ import annotations

import statistics
from typing import Sequence

# Median training examples per class at and below which the contrastive method is chosen.
CONTRASTIVE_MAX_PER_CLASS = 50
# Below this, most classes cannot form a positive pair: only the head can be trained.
PAIRS_MIN_PER_CLASS = 2


def choose_method(class_counts: Sequence[int]) -> dict:
    """{method, reason, evidence} for training examples per class `class_counts`."""
    per_class = statistics.median(class_counts) if class_counts else 0
    facts = f"{sum(class_counts)} training rows, {len(class_counts)} classes, median {per_class:g} per class"
    if per_class < PAIRS_MIN_PER_CLASS:
        return {"method": "linear-probe", "per_class": per_class,
                "reason": f"{facts}: too few per class to build same-class pairs; train the head on the "
                          "frozen encoder"}
    if per_class <= CONTRASTIVE_MAX_PER_CLASS:
        return {"method": "contrastive", "per_class": per_class,
                "reason": f"{facts} (<= {CONTRASTIVE_MAX_PER_CLASS}): small data, where contrastive tuning of "
                          "the encoder on label-built pairs, then a head, beats full fine-tuning and the "
                          "frozen-encoder baselines (bench/RESULTS.md, Small data)"}
    return {"method": "full", "per_class": per_class,
            "reason": f"{facts} (> {CONTRASTIVE_MAX_PER_CLASS}): enough data for full fine-tuning, which beats "
                      "the contrastive method there (bench/RESULTS.md, Small data)"}
