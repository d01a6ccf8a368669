"""Scores of a tabular model and its baselines on one split, and the paired comparisons between them.

Classification: the classification metrics with intervals (accuracy, macro-F1, log loss) plus, for a binary
target, the binary scores (PR-AUC headline, ROC-AUC, recall at fixed FPR, precision in the top alerts, Brier,
calibration, expected cost at the decision threshold). Regression: RMSE, MAE and R² with intervals.
"""
from __future__ import annotations

import numpy as np

from tunesmith.config import EvalConfig
from tunesmith.evaluate.stats import bootstrap_ci, paired_bootstrap


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=float), 1e-12, None))


def classification_scores(y: np.ndarray, probs: np.ndarray, labels: list[str], positive: int | None,
                          threshold: float, costs: dict | None, cfg: EvalConfig, seed: int) -> dict:
    """Every score of one split (y: label indices; probs: one column per label)."""
    from tunesmith.evaluate.binary import binary_scores
    from tunesmith.evaluate.evaluation import scored

    out = scored(y, log_probs(probs), labels, cfg, seed)
    if positive is not None:
        binary = binary_scores((y == positive).astype(int), probs[:, positive], threshold, costs,
                               cfg.bootstrap_resamples, cfg.confidence_level, seed)
        out["ci"].update(binary.pop("ci"))
        binary.pop("n")
        out.update(binary)
    return out


def headline_metric(labels: list[str], positive: int | None) -> str:
    """What the comparison is about: PR-AUC for a binary target, accuracy for several classes, RMSE otherwise."""
    if not labels:
        return "rmse"
    return "pr_auc" if positive is not None else "accuracy"


def compare_models(y: np.ndarray, model: np.ndarray, others: dict[str, np.ndarray], labels: list[str],
                   positive: int | None, cfg: EvalConfig, seed: int) -> dict:
    """Paired bootstrap of the model against each other model on the same rows, in the headline metric
    (binary: PR-AUC and ROC-AUC on the positive-class score; multiclass: accuracy; regression: RMSE, lower is
    better so the difference is other minus model)."""
    from tunesmith.evaluate.binary import compare_scores
    from tunesmith.evaluate.stats import accuracy

    res, level = cfg.bootstrap_resamples, cfg.confidence_level
    if not labels:
        return {name: {"rmse_reduction": paired_bootstrap(y, other, model, rmse, res, level, seed)}
                for name, other in others.items()}
    if positive is not None:
        yb = (y == positive).astype(int)
        return compare_scores(yb, model[:, positive], {k: v[:, positive] for k, v in others.items()}, res, level, seed)
    return {name: {"accuracy": paired_bootstrap(y, model.argmax(1), other.argmax(1), accuracy, res, level, seed)}
            for name, other in others.items()}


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - np.asarray(pred, dtype=float)) ** 2)))


def _mae(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=float) - np.asarray(pred, dtype=float))))


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    total = float(np.sum((y - y.mean()) ** 2))
    return 1 - float(np.sum((y - pred) ** 2)) / total if total > 0 else float("nan")


def regression_scores(y: np.ndarray, pred: np.ndarray, cfg: EvalConfig, seed: int) -> dict:
    """RMSE, MAE and R² with bootstrap intervals."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    fns = {"rmse": rmse, "mae": _mae, "r2": _r2}
    out = {"n": int(len(y)), **{k: fn(y, pred) for k, fn in fns.items()}}
    out["ci"] = {k: bootstrap_ci(y, pred, fn, cfg.bootstrap_resamples, cfg.confidence_level, seed)
                 for k, fn in fns.items()}
    return out


def best_baseline(scores: dict[str, dict], metric: str) -> str | None:
    """The baseline with the best test score in the headline metric (lowest for RMSE)."""
    usable = {k: v[metric] for k, v in scores.items() if np.isfinite(v.get(metric, float("nan")))}
    if not usable:
        return None
    return (min if metric == "rmse" else max)(usable, key=lambda k: (usable[k], k))
