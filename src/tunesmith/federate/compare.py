"""The models a federated run is judged against, on the same test split and the same budget (epochs):
centralized (every silo's rows pooled) and each silo alone, and for SFT also the base model (untuned);
paired bootstrap differences with the federated model. A classifier is judged on its test logits
(accuracy, macro-F1), a language model on its held-out response loss per conversation (lower is better)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


GENERATIVE = ("sft",)  # tasks judged on response loss rather than class logits


def test_outputs(task, cfg, prepared, accelerator):
    """What the comparison scores on the test split: (logits, y) of a classifier; (loss sums, token counts)
    per conversation of a language model (evaluate.generation.response_losses)."""
    if cfg.task in GENERATIVE:
        from tunesmith.evaluate.generation import response_losses

        return response_losses(prepared.model, prepared.encoded["test"], prepared.collate, cfg.train.eval_batch_size,
                               accelerator)
    from tunesmith.evaluate.inference import predict_logits

    return predict_logits(prepared.model, prepared.encoded["test"], prepared.evaluation_collate,
                          cfg.train.eval_batch_size, accelerator, task.logits)


def compare_arms(task, cfg, data, silos: list[pd.DataFrame], federated: tuple, epochs: int, accelerator) -> dict:
    """Train the arms (base for SFT, centralized, each silo alone) and judge the federated model's test
    outputs (test_outputs) against them."""
    generative = cfg.task in GENERATIVE
    arms: dict = {}
    if generative:  # the untuned model: a fresh prepare (LoRA starts as the identity), no training
        arms["base"] = train_arm(task, cfg, data, silos[0].reset_index(drop=True), 0, accelerator)
    arms["centralized"] = train_arm(task, cfg, data, pd.concat(silos, ignore_index=True), epochs, accelerator)
    for i, rows in enumerate(silos):
        arms[f"silo-{i}"] = train_arm(task, cfg, data, rows.reset_index(drop=True), epochs, accelerator)
    if generative:
        return judge_losses(federated, arms, cfg.eval, cfg.train.seed)
    logits, y = federated
    return judge(y, logits, {k: v[0] for k, v in arms.items()}, data.labels, cfg.eval, cfg.train.seed)


def train_arm(task, cfg, data, rows: pd.DataFrame, epochs: int, accelerator) -> tuple[np.ndarray, np.ndarray]:
    """Train a fresh model on ROWS for EPOCHS with the run's task, method and loop (best validation
    checkpoint, as an ordinary run; EPOCHS = 0: the model as prepared); its test_outputs."""
    from accelerate.utils import set_seed

    from tunesmith.tasks.base import TaskData
    from tunesmith.train.loop import train_loop

    arm = TaskData(splits={"train": rows, "validation": data.splits["validation"], "test": data.splits["test"]},
                   labels=data.labels)
    set_seed(cfg.train.seed)
    p = task.prepare(cfg, arm)
    if epochs > 0:
        with tempfile.TemporaryDirectory(prefix="arm-") as tmp:
            train_loop(p.loss or task.loss, p.model, p.encoded["train"], p.lengths, p.collate,
                       lambda model: task.validate(cfg, arm, p, model, accelerator), cfg.train, epochs,
                       cfg.train.learning_rate, Path(tmp), accelerator)
    out = test_outputs(task, cfg, p, accelerator)
    accelerator.free_memory()  # drop Accelerate's references to this arm's model and optimizer
    return out


def judge_losses(federated: tuple[np.ndarray, np.ndarray], arms: dict[str, tuple[np.ndarray, np.ndarray]],
                 eval_cfg, seed: int) -> dict:
    """Held-out response loss of each arm, and arm minus federated (`loss_reduction`: positive = federated
    lower, paired bootstrap over conversations); the silos' mean and worst; a plain-words verdict."""
    from tunesmith.evaluate.generation import compare_losses, loss_summary

    def reduction(arm: tuple[np.ndarray, np.ndarray]) -> dict:
        return compare_losses(arm, federated, eval_cfg.bootstrap_resamples, eval_cfg.confidence_level, seed)

    out: dict = {"federated": {"test": loss_summary(*federated)}, "arms": {}}
    for name, scores in arms.items():
        out["arms"][name] = {"test": loss_summary(*scores), "loss_reduction": reduction(scores)}
    silos = [n for n in out["arms"] if n.startswith("silo-")]
    if silos:
        losses = {n: out["arms"][n]["test"]["loss"] for n in silos}
        worst = max(losses, key=losses.get)
        # the mean silo, paired over conversations: every arm scores the same tokens, so the mean of the
        # silos' summed losses per conversation has the mean of their token-mean losses
        mean = (np.mean([arms[n][0] for n in silos], axis=0), federated[1])
        out["local_only"] = {"mean_loss": float(np.mean(list(losses.values()))), "worst": worst,
                             "worst_loss": losses[worst], "loss_reduction_vs_mean": reduction(mean)}
    out["verdict"] = verdict_losses(out)
    return out


def verdict_losses(out: dict) -> str:
    """verdict() for response loss: does federating beat the base model, each silo alone, and how far is it
    from pooling?"""
    def words(d: dict) -> str:
        return f"loss {-d['difference']:+.3f} [{-d['high']:+.3f}, {-d['low']:+.3f}]: {d['verdict']}"

    parts = []
    arms = out["arms"]
    if "base" in arms:
        parts.append(f"against the base model federated is {words(arms['base']['loss_reduction'])}")
    if "local_only" in out:
        parts.append(f"against the average silo alone {words(out['local_only']['loss_reduction_vs_mean'])} "
                     f"(worst silo alone {out['local_only']['worst_loss']:.3f})")
    if "centralized" in arms:
        parts.append(f"against pooling all silos (centralized, same epochs) "
                     f"{words(arms['centralized']['loss_reduction'])}")
    return "; ".join(parts)


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
