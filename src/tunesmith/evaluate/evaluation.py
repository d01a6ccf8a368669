"""After training: score the model and every baseline on the held-out test split, with intervals,
a paired test against the best baseline, calibration, error analysis and an overfitting watch."""
from __future__ import annotations

import numpy as np

from tunesmith.config import EvalConfig
from tunesmith.evaluate.calibration import calibration_report, fit_temperature
from tunesmith.evaluate.metrics import classification_metrics, softmax
from tunesmith.evaluate.stats import bootstrap_ci, metric_fns, paired_bootstrap


def scored(y: np.ndarray, logits: np.ndarray, labels: list[str], cfg: EvalConfig, seed: int = 0) -> dict:
    """Metrics of one prediction set plus a bootstrap interval for accuracy and macro-F1."""
    out = classification_metrics(y, logits, labels)
    pred = np.asarray(logits).argmax(1)
    out["ci"] = {name: bootstrap_ci(y, pred, fn, cfg.bootstrap_resamples, cfg.confidence_level, seed)
                 for name, fn in metric_fns(len(labels)).items()}
    return out


def compare(y: np.ndarray, model_logits: np.ndarray, baseline_logits: dict[str, np.ndarray], n_classes: int,
            cfg: EvalConfig, seed: int = 0) -> dict:
    """Paired bootstrap of the fine-tuned model against the baseline with the best test accuracy."""
    if not baseline_logits:
        return {}
    preds = {k: v.argmax(1) for k, v in baseline_logits.items()}
    best = max(preds, key=lambda k: (np.mean(preds[k] == y), k))
    mine = model_logits.argmax(1)
    return {"best_baseline": best, **{name: paired_bootstrap(y, mine, preds[best], fn, cfg.bootstrap_resamples,
                                                             cfg.confidence_level, seed)
                                      for name, fn in metric_fns(n_classes).items()}}


def error_analysis(texts: list[str], y: np.ndarray, logits: np.ndarray, labels: list[str], top: int = 10) -> dict:
    probs = softmax(logits)
    pred = probs.argmax(1)
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(y, pred):
        if t != p:
            pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
    confused = sorted(pairs.items(), key=lambda kv: -kv[1])[:top]
    loss = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))
    worst = np.argsort(-loss)[:top]
    return {"confused_pairs": [{"true": labels[t], "predicted": labels[p], "count": n} for (t, p), n in confused],
            "highest_loss": [{"text": texts[i][:300], "true": labels[y[i]], "predicted": labels[pred[i]],
                              "confidence": round(float(probs[i].max()), 4), "loss": round(float(loss[i]), 4)}
                             for i in worst]}


def overfitting_watch(records: list[dict], train_metrics: dict, validation: dict, stopped_early: bool,
                      best_step: int | None) -> dict:
    """When validation stopped improving, whether early stopping fired, and the train-validation gap."""
    evals = [r for r in records if r["type"] == "eval"]
    last = evals[-1]["step"] if evals else None
    gap = train_metrics["accuracy"] - validation["accuracy"]
    if best_step is not None and last is not None and best_step < last:
        text = (f"validation stopped improving at step {best_step} (last evaluation at step {last}); "
                f"{'early stopping fired and ' if stopped_early else ''}the best checkpoint was restored")
    else:
        text = "validation was still improving at the last evaluation"
    text += (f"; train accuracy {train_metrics['accuracy']:.3f} vs validation {validation['accuracy']:.3f} "
             f"(gap {gap:+.3f})")
    return {"best_step": best_step, "last_eval_step": last, "stopped_early": stopped_early,
            "train_accuracy": train_metrics["accuracy"], "validation_accuracy": validation["accuracy"],
            "accuracy_gap": gap, "train_loss": train_metrics["loss"], "validation_loss": validation["loss"],
            "summary": text}


def calibrate(val_logits: np.ndarray, val_y: np.ndarray, test_logits: np.ndarray | None = None,
              test_y: np.ndarray | None = None) -> dict:
    """Temperature fitted on validation only; its effect reported on validation and (if scored) test."""
    t = fit_temperature(val_logits, val_y)
    out = {"temperature": t, "validation": calibration_report(val_logits, val_y, t)}
    if test_logits is not None:
        out["test"] = calibration_report(test_logits, test_y, t)
    return out
