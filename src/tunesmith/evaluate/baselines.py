"""Simple baselines scored on the same test split as the fine-tuned model."""
from __future__ import annotations

import numpy as np

from tunesmith.evaluate.metrics import classification_metrics


def majority_class(train_y: np.ndarray, test_y: np.ndarray, labels: list[str]) -> dict:
    """Always predict the most frequent training class, with the training class prior as probabilities."""
    prior = np.bincount(np.asarray(train_y, dtype=int), minlength=len(labels)).astype(np.float64)
    prior /= prior.sum()
    logits = np.tile(np.log(np.clip(prior, 1e-12, None)), (len(test_y), 1))
    return classification_metrics(test_y, logits, labels)
