"""Uncertainty: seeded bootstrap intervals for a metric, and a paired bootstrap test between two models."""
from __future__ import annotations

from typing import Callable

import numpy as np

from tunesmith.evaluate.metrics import accuracy, macro_f1


def metric_fns(n_classes: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    """The metrics that get intervals and paired tests; the same functions give the point estimates."""
    return {"accuracy": accuracy, "macro_f1": lambda y, p: macro_f1(y, p, n_classes)}


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(y: np.ndarray, pred: np.ndarray, fn: Callable, resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> dict:
    """Point estimate and percentile bootstrap interval of fn(y, pred)."""
    y, pred = np.asarray(y), np.asarray(pred)
    idx = _indices(len(y), resamples, seed)
    scores = np.array([fn(y[i], pred[i]) for i in idx])
    lo, hi = np.percentile(scores, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"value": fn(y, pred), "low": float(lo), "high": float(hi), "level": level, "resamples": resamples}


def paired_bootstrap(y: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, fn: Callable, resamples: int = 1000,
                     level: float = 0.95, seed: int = 0) -> dict:
    """Difference fn(a) - fn(b) on the same rows, its interval, a two-sided p-value and a verdict."""
    y, a, b = np.asarray(y), np.asarray(pred_a), np.asarray(pred_b)
    idx = _indices(len(y), resamples, seed)
    diffs = np.array([fn(y[i], a[i]) - fn(y[i], b[i]) for i in idx])
    observed = fn(y, a) - fn(y, b)
    lo, hi = np.percentile(diffs, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    p = float(min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))
    if lo > 0:
        verdict = "better, and not by chance"
    elif hi < 0:
        verdict = "worse, and not by chance"
    else:
        verdict = "not distinguishable"
    return {"difference": float(observed), "low": float(lo), "high": float(hi), "p_value": p, "verdict": verdict,
            "level": level, "resamples": resamples}
