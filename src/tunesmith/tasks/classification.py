"""What every classification task shares after training: validation scores for the loop, and the
finish — scores with intervals, calibration, baselines, error analysis, predictions, model card
and report. A classification task inherits `Classifier` and supplies the data, model and baselines."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tunesmith.config import RunConfig
from tunesmith.evaluate.calibration import CALIBRATION
from tunesmith.io import atomic_write_json
from tunesmith.tasks.base import Prepared, TaskData

# What the report says when the final model learned from the validation rows (e.g. a head refitted on them).
NOT_HELD_OUT = ("validation rows also trained the final head (refitted after the model choice), so validation "
                "scores are not held out; the test split is")


@dataclass(frozen=True)
class ClassLoss:
    """Cross-entropy of a task's class logits, weighted and smoothed as this run's data and config say."""
    logits: Callable[[torch.nn.Module, dict], torch.Tensor]  # the task's logits(model, batch)
    class_weight: torch.Tensor | None = None
    label_smoothing: float = 0.0
    # added to the logits in training only (logit adjustment, Menon et al. 2021): log label shares, so the
    # model learns scores free of this data's label skew (a federated silo's, see federate/client.py)
    logit_offset: torch.Tensor | None = None

    def __call__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(model, batch).float()
        if self.logit_offset is not None:
            logits = logits + self.logit_offset.to(logits.device)
        weight = self.class_weight.to(logits.device) if self.class_weight is not None else None
        target = batch.get("targets", batch["labels"])  # mixup/cutmix give class probabilities
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=self.label_smoothing)


class Classifier:
    """Mixin: `validate` and `finish` for tasks whose outputs are class logits."""

    input_name = "text"  # what a row's `text` column holds, as named in predictions files

    def configure(self, cfg: RunConfig) -> RunConfig:
        """No rules beyond the config's own (a task with some overrides this)."""
        return cfg

    def class_loss(self, cfg: RunConfig, data: TaskData) -> ClassLoss:
        """The training loss: class weights (train.class_weights=balanced or audit.balance=reweight) and
        label smoothing, from the training split; prepare puts it in Prepared.loss."""
        weight = None
        train = data.splits["train"]
        if cfg.train.class_weights == "balanced" or cfg.audit.balance == "reweight":
            counts = train["label"].value_counts()
            freq = np.array([counts.get(l, 0) for l in data.labels], dtype=np.float64)
            weight = torch.tensor(len(train) / (len(data.labels) * freq), dtype=torch.float32)
        return ClassLoss(self.logits, weight, cfg.train.label_smoothing)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Plain cross-entropy (a run trains with its Prepared.loss, which weights and smooths it)."""
        return ClassLoss(self.logits)(model, batch)

    def metrics(self, y_true: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict:
        from tunesmith.evaluate.metrics import classification_metrics

        return classification_metrics(y_true, logits, labels)

    def profile(self, data: TaskData) -> dict:
        train = data.splits["train"]
        return {"label_counts": {str(k): int(v) for k, v in train["label"].value_counts().items()},
                "median_words": float(train["text"].astype(str).str.split().str.len().median())}

    def validate(self, cfg: RunConfig, data: TaskData, prepared: Prepared, model, accelerator) -> dict:
        from tunesmith.evaluate.inference import predict_logits

        logits, y = predict_logits(model, prepared.encoded["validation"], prepared.evaluation_collate,
                                   cfg.train.eval_batch_size, accelerator, self.logits)
        return self.metrics(y, logits, data.labels)

    def finish(self, cfg: RunConfig, data: TaskData, prepared: Prepared, accelerator, training: dict,
               run_dir: Path) -> dict:
        from tunesmith.evaluate.model_card import write_model_card
        from tunesmith.evaluate.report import write_report
        from tunesmith.evaluate.inference import predict_logits

        model = prepared.model
        logits, ys = {}, {}
        train_view = prepared.encoded["train"][:: max(1, len(prepared.encoded["train"]) // 2000)]  # <= ~2000 rows
        splits_to_score = [("train", train_view), ("validation", prepared.encoded["validation"])]
        if cfg.eval.test:
            splits_to_score.append(("test", prepared.encoded["test"]))
        for split, examples in splits_to_score:
            logits[split], ys[split] = predict_logits(model, examples, prepared.evaluation_collate,
                                                      cfg.train.eval_batch_size, accelerator, self.logits)
        if not accelerator.is_main_process:  # baselines and statistics are computed once, by the main process
            return {}
        results = self._evaluate(cfg, data, prepared, logits, ys, training, run_dir)
        self.save(accelerator.unwrap_model(model), prepared, run_dir / "model")
        temperature = results.get("calibration", {}).get("temperature", 1.0)
        atomic_write_json(run_dir / "model" / CALIBRATION, {"temperature": temperature})
        for split in ("validation", "test") if cfg.eval.test else ("validation",):
            _write_predictions(run_dir / f"{split}_predictions.csv", data.splits[split], logits[split] / temperature,
                               data.labels, self.input_name)
        if cfg.eval.test:
            self.illustrate(data, logits["test"], ys["test"], run_dir)
        atomic_write_json(run_dir / "results.json", results)
        if cfg.eval.test:
            write_model_card(run_dir)
            write_report(run_dir)
        return results

    def illustrate(self, data: TaskData, logits, y, run_dir: Path) -> None:
        """Extra pictures for the report (images: a grid of misclassified test images)."""

    def _evaluate(self, cfg, data, prepared, logits: dict, ys: dict, training: dict, run_dir: Path) -> dict:
        from tunesmith.evaluate.evaluation import calibrate, compare, error_analysis, overfitting_watch, scored

        labels, seed = data.labels, cfg.train.seed
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
        validation = scored(ys["validation"], logits["validation"], labels, cfg.eval, seed)
        train_metrics = self.metrics(ys["train"], logits["train"], labels)
        held_out = training.get("validation_held_out", True)
        watch = overfitting_watch(records, train_metrics, validation, training["stopped_early"], training["best_step"])
        if not held_out:
            validation["held_out"] = False
            watch["summary"] = (f"{NOT_HELD_OUT}; {watch['summary']}")
        results = {
            "task": cfg.task, "model": cfg.model.name, "method": cfg.train.method, "labels": labels,
            **({"method_choice": training["method_choice"]} if "method_choice" in training else {}),
            "validation": validation, "training": training, "overfitting": watch,
        }
        if cfg.eval.calibrate and held_out:
            results["calibration"] = calibrate(logits["validation"], ys["validation"], logits.get("test"),
                                               ys.get("test"))
        elif cfg.eval.calibrate:
            results["calibration_skipped"] = ("no held-out rows to fit a temperature on: validation rows "
                                              "trained the head")
        if not cfg.eval.test:
            return results
        if not held_out:  # the baselines learn from the same rows as the final model
            import pandas as pd

            data = TaskData({**data.splits, "train": pd.concat([data.splits["train"], data.splits["validation"]])},
                            data.labels, data.data_report)
        base = self.baselines(cfg, data, prepared)
        results.update({
            "test": scored(ys["test"], logits["test"], labels, cfg.eval, seed),
            "baselines": {name: {"test": scored(ys["test"], b, labels, cfg.eval, seed)} for name, b in base.items()},
            "comparison": compare(ys["test"], logits["test"], base, len(labels), cfg.eval, seed),
            "error_analysis": error_analysis(data.splits["test"]["text"].astype(str).tolist(), ys["test"],
                                             logits["test"], labels),
        })
        return results


def _write_predictions(path: Path, df, logits, labels: list[str], input_name: str = "text") -> None:
    import pandas as pd

    from tunesmith.evaluate.metrics import softmax

    probs = softmax(logits)
    out = pd.DataFrame({input_name: df["text"].values, "label": df["label"].values,
                        "predicted": [labels[i] for i in probs.argmax(1)], "confidence": probs.max(1).round(6)})
    tmp = path.with_name(f".{path.name}.tmp")
    out.to_csv(tmp, index=False)
    os.replace(tmp, path)
