"""Scoring a saved model on new labelled data (`tunesmith eval`, run by tunesmith.predict.eval_run):
metrics with intervals, calibration, and warnings when the data drifted from training."""
from __future__ import annotations

import numpy as np

from tunesmith.config import EvalConfig
from tunesmith.evaluate.calibration import calibration_report
from tunesmith.evaluate.evaluation import scored

# Thresholds beyond which the new data clearly differs from training.
LABEL_SHIFT_TVD = 0.2  # total variation distance between label distributions
LENGTH_RATIO = (2 / 3, 1.5)  # ratio of median word counts


def drift(train_profile: dict | None, labels: list[str], y: np.ndarray, words: np.ndarray) -> dict:
    """Label-distribution and text-length shift between training and the new data."""
    if not train_profile:
        return {"checked": False, "warnings": ["this run predates drift profiles; drift not checked"]}
    counts = np.array([train_profile["label_counts"].get(l, 0) for l in labels], dtype=float)
    p_train = counts / counts.sum()
    p_new = np.bincount(y, minlength=len(labels)) / max(1, len(y))
    tvd = float(0.5 * np.abs(p_train - p_new).sum())
    ratio = float(np.median(words) / max(1e-9, train_profile["median_words"]))
    warnings = []
    if tvd > LABEL_SHIFT_TVD:
        moved = np.argsort(-np.abs(p_new - p_train))[:3]
        warnings.append(f"label distribution differs from training (total variation {tvd:.2f} > {LABEL_SHIFT_TVD}): "
                        + ", ".join(f"{labels[i]} {p_train[i]:.1%} -> {p_new[i]:.1%}" for i in moved))
    if not LENGTH_RATIO[0] <= ratio <= LENGTH_RATIO[1]:
        warnings.append(f"texts are {'longer' if ratio > 1 else 'shorter'} than in training: median "
                        f"{np.median(words):.0f} words vs {train_profile['median_words']:.0f}")
    return {"checked": True, "label_tvd": tvd, "median_words_ratio": ratio, "warnings": warnings}


def labelled_data_report(y: np.ndarray, logits: np.ndarray, labels: list[str], temperature: float,
                         words: np.ndarray, train_profile: dict | None, cfg: EvalConfig, seed: int = 0) -> dict:
    """Metrics with intervals (on the calibrated logits), calibration and drift of a saved model's raw
    logits on labelled new data; y holds label indices, words each text's word count."""
    return {"metrics": scored(y, logits / temperature, labels, cfg, seed),
            "calibration": calibration_report(logits, y, temperature),
            "drift": drift(train_profile, labels, y, words)}
