"""`train.method: auto` for classification: the method that the amount of data per class calls for.

By data size (median training examples per class): up to 50, the few-shot head alone: logistic
regression on the pre-trained encoder's mean-pooled embeddings, fitted on the training rows and one
label-phrase row per class, then refitted with the validation rows (method contrastive with
`train.contrastive.epochs: 0`, so no contrastive stage runs); above 50, full fine-tuning.

Why no contrastive stage by default (bench/RESULTS.md, "Small data", MiniLM-L6, seed 42, default runs
of 2026-11-26): the stage ran in every small-data default run and was most of its training work, yet
the validation check kept the pre-trained encoder in three of four runs (Banking77 10 and 30, BBC News
30), and in the fourth (BBC News 10) the tuned encoder's test accuracy, 0.894, was not distinguishable
from the probe's 0.892. The 0.852 on Banking77 10-shot came from the head's rows (label phrases, the
refit), not from the stage. Where the stage kept its encoder on a validation tie (issue 24: 15 intents
x 40), the run shipped the costlier model for no measured gain. Set train.method contrastive to run the
stage (its default is one epoch); it is then kept only when it validates better than the probe.

Evidence for the switch at 50 per class: at 10 and 30 examples per class, full fine-tuning with its
defaults reaches 0.47 on Banking77, far below the head; on the whole training set (about 115 per class)
it reaches 0.93 (issue 13). The switch lies between those measurements; it is not measured more finely.
LoRA is never chosen: on these small encoders it was not measured to beat full fine-tuning at any size.
"""
from __future__ import annotations

import statistics
from typing import Sequence

# Median training examples per class at and below which the few-shot head is chosen.
HEAD_MAX_PER_CLASS = 50


def choose_method(class_counts: Sequence[int]) -> dict:
    """{method, per_class, reason[, contrastive]} for training examples per class `class_counts`; `contrastive`
    holds the train.contrastive settings the choice implies (applied where the config leaves them unset)."""
    per_class = statistics.median(class_counts) if class_counts else 0
    facts = f"{sum(class_counts)} training rows, {len(class_counts)} classes, median {per_class:g} per class"
    if per_class <= HEAD_MAX_PER_CLASS:
        return {"method": "contrastive", "contrastive": {"epochs": 0}, "per_class": per_class,
                "reason": f"{facts} (<= {HEAD_MAX_PER_CLASS}): small data; a logistic-regression head on the "
                          "pre-trained encoder's sentence embeddings, with no contrastive stage (it did not earn "
                          "its time in any default run measured: tasks/method_choice.py)"}
    return {"method": "full", "per_class": per_class,
            "reason": f"{facts} (> {HEAD_MAX_PER_CLASS}): enough data for full fine-tuning "
                      "(bench/RESULTS.md, Small data)"}
