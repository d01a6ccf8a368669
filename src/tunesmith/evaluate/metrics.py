"""Classification metrics from logits: accuracy, macro-F1, log loss, per-class scores, confusion."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Share of rows whose prediction equals the label (nan for no rows)."""
    return float(np.mean(y == pred)) if len(y) else float("nan")


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1: the mean F1 over the classes present in y or pred, as scikit-learn's `f1_score(y, pred,
    average="macro")` with `labels` unset.

    The one definition, for point estimates and for every bootstrap resample alike. A class with no
    rows and no predictions in the data scored has no defined F1: counting it as 0 (as `labels=all`
    with `zero_division=0` does) would mark a model down for a class the data never asks about, and
    would differ from resample to resample, so the estimate could fall outside its own interval.
    """
    y, pred = np.asarray(y, dtype=int), np.asarray(pred, dtype=int)
    cm = np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(1) + cm.sum(0)  # support + predicted
    present = denom > 0
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=present)
    return float(f1[present].mean()) if present.any() else float("nan")


def classification_metrics(y_true: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict:
    """Scores of one split. y_true holds label indices; logits has one column per label."""
    y_true = np.asarray(y_true, dtype=int)
    probs = softmax(np.asarray(logits, dtype=np.float64))
    y_pred = probs.argmax(axis=1)
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    nll = float(-np.mean(np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None))))
    return {
        "n": int(len(y_true)),
        "accuracy": accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred, len(labels)),
        "loss": nll,
        "per_class": {labels[i]: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(s[i])} for i in idx},
        "confusion": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
    }


def headline(metrics: dict) -> dict:
    """The scalar part of a metrics dict (for logs and tables)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
