"""The models a federated run is judged against, on the same test split and the same budget (epochs):
centralized (every silo's rows pooled) and each silo alone; paired bootstrap differences with the
federated model."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def train_arm(task, cfg, data, rows: pd.DataFrame, epochs: int, accelerator) -> np.ndarray:
    """Train a fresh model on ROWS for EPOCHS with the run's task, method and loop (best validation
    checkpoint, as an ordinary run); its test logits."""
    from accelerate.utils import set_seed

    from tunesmith.evaluate.inference import predict_logits
    from tunesmith.tasks.base import TaskData
    from tunesmith.train.loop import train_loop

    arm = TaskData(splits={"train": rows, "validation": data.splits["validation"], "test": data.splits["test"]},
                   labels=data.labels)
    set_seed(cfg.train.seed)
    p = task.prepare(cfg, arm)
    with tempfile.TemporaryDirectory(prefix="arm-") as tmp:
        train_loop(p.loss or task.loss, p.model, p.encoded["train"], p.lengths, p.collate,
                   lambda model: task.validate(cfg, arm, p, model, accelerator), cfg.train, epochs,
                   cfg.train.learning_rate, Path(tmp), accelerator)
    logits, _ = predict_logits(p.model, p.encoded["test"], p.evaluation_collate, cfg.train.eval_batch_size,
                               accelerator, task.logits)
    accelerator.free_memory()  # drop Accelerate's references to this arm's model and optimizer
    return logits


def judge(y: np.ndarray, federated: np.ndarray, arms: dict[str, np.ndarray], labels: list[str], eval_cfg,
          seed: int) -> dict:
    """Each arm scored with intervals, and federated minus arm (paired bootstrap) for accuracy and macro-F1;
    the silos' mean and worst; a plain-words verdict."""
    from tunesmith.evaluate.evaluation import scored
    from tunesmith.evaluate.stats import metric_fns, paired_bootstrap

    fns = metric_fns(len(labels))
    fed_pred = federated.argmax(1)
    out: dict = {"arms": {}}
    for name, logits in arms.items():
        pred = logits.argmax(1)
        minus = {k: paired_bootstrap(y, fed_pred, pred, fn, eval_cfg.bootstrap_resamples, eval_cfg.confidence_level,
                                     seed) for k, fn in fns.items()}
        out["arms"][name] = {"test": _brief(scored(y, logits, labels, eval_cfg, seed)), "federated_minus": minus}
    silos = [n for n in out["arms"] if n.startswith("silo-")]
    if silos:
        accs = {n: out["arms"][n]["test"]["accuracy"] for n in silos}
        worst = min(accs, key=accs.get)
        out["local_only"] = {"mean_accuracy": float(np.mean(list(accs.values()))), "worst": worst,
                             "worst_accuracy": accs[worst],
                             "mean_macro_f1": float(np.mean([out["arms"][n]["test"]["macro_f1"] for n in silos]))}
        # federated against the mean silo, paired over rows: the mean of the silos' per-row correctness
        correct = np.mean([arms[n].argmax(1) == y for n in silos], axis=0)
        out["local_only"]["federated_minus_mean"] = _paired_mean(y, fed_pred == y, correct, eval_cfg, seed)
    out["verdict"] = verdict(out)
    return out


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "loss", "n", "ci") if k in metrics}


def _paired_mean(y, fed_correct: np.ndarray, mean_correct: np.ndarray, eval_cfg, seed: int) -> dict:
    from tunesmith.evaluate.stats import paired_bootstrap

    # paired_bootstrap on per-row scores: fn(y, pred) = mean(pred), so the difference is of accuracies
    return paired_bootstrap(y, fed_correct.astype(float), mean_correct, lambda _y, p: float(np.mean(p)),
                            eval_cfg.bootstrap_resamples, eval_cfg.confidence_level, seed)


def verdict(out: dict) -> str:
    """Is federating worth it versus training alone, and how far is it from pooling?"""
    parts = []
    local = out.get("local_only")
    if local:
        d = local["federated_minus_mean"]
        worth = ("worth it: federated beats the average silo training alone" if d["low"] > 0 else
                 "not shown to be worth it: federated does not beat the average silo alone beyond chance"
                 if d["high"] >= 0 else "not worth it: the average silo alone does better")
        parts.append(f"{worth} (accuracy {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]; worst silo "
                     f"alone {local['worst_accuracy']:.3f})")
    central = out["arms"].get("centralized")
    if central:
        d = central["federated_minus"]["accuracy"]
        parts.append(f"against pooling all silos (centralized, same epochs) federated is {d['difference']:+.3f} "
                     f"[{d['low']:+.3f}, {d['high']:+.3f}] in accuracy: {d['verdict']}")
    return "; ".join(parts)
