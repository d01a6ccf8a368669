"""Calibration: expected calibration error, reliability bins, and temperature scaling."""
from __future__ import annotations

import numpy as np

from tunesmith.evaluate.metrics import softmax

CALIBRATION = "calibration.json"  # in model/: the temperature `predict` divides the logits by


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Equal-width confidence bins: mean confidence, accuracy and count of each non-empty bin."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            bins.append({"low": float(lo), "high": float(hi), "confidence": float(conf[m].mean()),
                         "accuracy": float((pred[m] == y[m]).mean()), "count": int(m.sum())})
    return bins


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    n = len(y)
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in reliability_bins(probs, y, n_bins)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 that minimises the negative log-likelihood of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=int)

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None))))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def calibration_report(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict:
    """ECE and reliability bins before and after dividing the logits by the temperature."""
    raw, scaled = softmax(logits), softmax(np.asarray(logits) / temperature)
    return {"temperature": temperature,
            "ece": expected_calibration_error(raw, y), "ece_scaled": expected_calibration_error(scaled, y),
            "bins": reliability_bins(raw, y), "bins_scaled": reliability_bins(scaled, y)}
