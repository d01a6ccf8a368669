"""Binary scores for rare positives (fraud, default, churn): precision-recall AUC (average precision) with a
bootstrap interval, ROC-AUC, recall at fixed false-positive rates, precision in the top-k alerts, Brier score
and calibration, and the decision threshold a cost matrix picks on validation.

`y` holds 1 for the positive class, `score` the predicted probability of it.
"""
from __future__ import annotations

import numpy as np

from tunesmith.evaluate.stats import bootstrap_ci, paired_bootstrap

FPRS = (0.001, 0.01)  # false-positive rates at which recall is reported
TOP_SHARES = (0.01, 0.05)  # alerts: the top 1% and 5% of rows by score


def dense_ranks(score: np.ndarray) -> np.ndarray:
    """Scores as integer ranks 0..m-1 (ties share one). PR-AUC and ROC-AUC depend only on the order, so the
    bootstrap resamples ranks and counts them (np.bincount) instead of sorting a thousand times."""
    return np.unique(np.asarray(score, dtype=float), return_inverse=True)[1].ravel()


def _counts(y: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = int(ranks.max()) + 1 if len(ranks) else 0
    y = np.asarray(y)
    return np.bincount(ranks[y == 1], minlength=m), np.bincount(ranks[y != 1], minlength=m)


def ranked_average_precision(y: np.ndarray, ranks: np.ndarray) -> float:
    """average_precision on dense ranks."""
    pos, neg = _counts(y, ranks)
    n_pos = pos.sum()
    if n_pos == 0:
        return float("nan")
    tp, flagged = np.cumsum(pos[::-1]), np.cumsum((pos + neg)[::-1])  # thresholds from the top score down
    keep = pos[::-1] > 0
    return float(np.sum(tp[keep] / flagged[keep] * pos[::-1][keep]) / n_pos)


def ranked_roc_auc(y: np.ndarray, ranks: np.ndarray) -> float:
    """roc_auc on dense ranks."""
    pos, neg = _counts(y, ranks)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    below = np.cumsum(neg) - neg  # negatives strictly below each rank
    return float(np.sum(pos * (below + 0.5 * neg)) / (n_pos * n_neg))


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve as scikit-learn's average_precision_score computes it (tied
    scores form one threshold); NaN without positives."""
    return ranked_average_precision(y, dense_ranks(score))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half); NaN with one class."""
    return ranked_roc_auc(y, dense_ranks(score))


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr: float) -> dict:
    """Recall when at most `fpr` of the negatives score above the threshold (flagged)."""
    y, score = np.asarray(y), np.asarray(score, dtype=float)
    neg = np.sort(score[y == 0])[::-1]
    allowed = int(np.floor(fpr * len(neg)))
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    flagged = score > threshold
    return {"fpr_target": fpr, "recall": float(flagged[y == 1].mean()) if (y == 1).any() else float("nan"),
            "fpr": float(flagged[y == 0].mean()) if len(neg) else float("nan"), "threshold": float(threshold),
            "negatives": int(len(neg)), "false_positives_allowed": allowed}


def precision_at_k(y: np.ndarray, score: np.ndarray, k: int) -> float:
    """Share of positives among the k highest-scored rows (the alerts a team can review)."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="mergesort")[:k]
    return float(np.asarray(y)[order].mean()) if k else float("nan")


def brier(y: np.ndarray, score: np.ndarray) -> float:
    return float(np.mean((np.asarray(score, dtype=float) - np.asarray(y)) ** 2))


def calibration_bins(y: np.ndarray, score: np.ndarray, n_bins: int = 10) -> dict:
    """Equal-count bins of the score: mean predicted probability vs observed positive rate, and their
    count-weighted mean absolute gap (expected calibration error)."""
    y, score = np.asarray(y), np.asarray(score, dtype=float)
    order = np.argsort(score, kind="mergesort")
    bins = []
    for chunk in np.array_split(order, min(n_bins, len(order))):
        if len(chunk):
            bins.append({"predicted": float(score[chunk].mean()), "observed": float(y[chunk].mean()),
                         "count": int(len(chunk))})
    ece = sum(b["count"] * abs(b["predicted"] - b["observed"]) for b in bins) / max(1, len(y))
    return {"ece": float(ece), "bins": bins}


def costs_of(y: np.ndarray, flagged: np.ndarray, costs: dict) -> float:
    """Mean cost per row: fn for each missed positive, fp for each false alarm."""
    y, flagged = np.asarray(y), np.asarray(flagged).astype(bool)
    return float((costs["fn"] * np.sum((y == 1) & ~flagged) + costs["fp"] * np.sum((y == 0) & flagged)) / len(y))


def cost_threshold(y: np.ndarray, score: np.ndarray, costs: dict) -> dict:
    """The threshold (flag when score >= threshold) with the lowest total cost on these rows (validation).
    Candidates are the midpoints between consecutive distinct scores, plus flagging all and none; ties in
    cost go to the threshold nearest 0.5."""
    y, score = np.asarray(y), np.asarray(score, dtype=float)
    distinct = np.unique(score)
    candidates = np.r_[-np.inf, (distinct[:-1] + distinct[1:]) / 2, np.inf] if len(distinct) > 1 \
        else np.array([-np.inf, np.inf])
    order = np.argsort(score, kind="mergesort")
    s, t = score[order], y[order]
    # rows below each candidate are not flagged: count positives (missed) and negatives (correct) below it
    below = np.searchsorted(s, candidates, side="left")
    pos_below = np.r_[0, np.cumsum(t)][below]
    neg_above = (len(t) - t.sum()) - (below - pos_below)
    total = costs["fn"] * pos_below + costs["fp"] * neg_above
    best = np.flatnonzero(total == total.min())
    finite = np.clip(candidates[best], 0.0, 1.0)
    pick = best[np.argmin(np.abs(finite - 0.5))]
    threshold = float(np.clip(candidates[pick], 0.0, np.nextafter(1.0, 2.0)))
    return {"threshold": threshold, "costs": dict(costs), "validation_cost_per_row": float(total[pick] / len(y)),
            "validation_cost_at_0.5": costs_of(y, score >= 0.5, costs), "chosen_on": "validation"}


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """Confusion counts, precision, recall and false-positive rate when flagging score >= threshold."""
    y, flagged = np.asarray(y), np.asarray(score, dtype=float) >= threshold
    tp, fp = int(np.sum(flagged & (y == 1))), int(np.sum(flagged & (y == 0)))
    fn, tn = int(np.sum(~flagged & (y == 1))), int(np.sum(~flagged & (y == 0)))
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "fpr": fp / (fp + tn) if fp + tn else float("nan")}


def _interval(y, score, fn, resamples: int, level: float, seed: int) -> dict:
    ci = bootstrap_ci(y, score, fn, resamples, level, seed)
    if not np.isfinite([ci["low"], ci["high"]]).all():  # some resamples held no positive: no honest interval
        ci.update(low=None, high=None, note="too few positives in the split for a bootstrap interval")
    return ci


def binary_scores(y: np.ndarray, score: np.ndarray, threshold: float, costs: dict | None, resamples: int = 1000,
                  level: float = 0.95, seed: int = 0) -> dict:
    """Every binary score of one split, with bootstrap intervals for PR-AUC, ROC-AUC and the expected cost."""
    y, score = np.asarray(y).astype(int), np.asarray(score, dtype=float)
    n = len(y)
    out = {"n": n, "positives": int(y.sum()), "prevalence": float(y.mean()) if n else float("nan"),
           "pr_auc": average_precision(y, score), "roc_auc": roc_auc(y, score), "brier": brier(y, score),
           "recall_at_fpr": {str(f): recall_at_fpr(y, score, f) for f in FPRS},
           "precision_at_top": {str(s): {"k": max(1, int(round(s * n))),
                                         "precision": precision_at_k(y, score, max(1, int(round(s * n))))}
                                for s in TOP_SHARES},
           "calibration": calibration_bins(y, score), "decision": at_threshold(y, score, threshold)}
    ranks = dense_ranks(score)
    out["ci"] = {"pr_auc": _interval(y, ranks, ranked_average_precision, resamples, level, seed),
                 "roc_auc": _interval(y, ranks, ranked_roc_auc, resamples, level, seed)}
    if costs:
        flagged = (score >= threshold).astype(int)
        out["expected_cost"] = costs_of(y, flagged, costs)
        out["ci"]["expected_cost"] = bootstrap_ci(y, flagged, lambda a, b: costs_of(a, b, costs), resamples,
                                                  level, seed)
    return out


def compare_scores(y: np.ndarray, score: np.ndarray, others: dict[str, np.ndarray], resamples: int = 1000,
                   level: float = 0.95, seed: int = 0) -> dict:
    """Paired bootstrap of PR-AUC and ROC-AUC: this model minus each other model, on the same rows."""
    mine = dense_ranks(score)
    return {name: {"pr_auc": paired_bootstrap(y, mine, dense_ranks(other), ranked_average_precision, resamples,
                                              level, seed),
                   "roc_auc": paired_bootstrap(y, mine, dense_ranks(other), ranked_roc_auc, resamples, level, seed)}
            for name, other in others.items()}
