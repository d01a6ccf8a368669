"""What a run's training did, in words: one description for the CLI summary, the report and the model card.

`results.json`'s `training` record differs by method: a full or LoRA run has a main stage with steps and
a throughput; a warm-up stage (an image head on a frozen backbone, the contrastive body stage) adds its own
steps; a stage that finished the model (the contrastive head refit) leaves no main stage at all, so the main
stage's step count is 0 and it has no throughput; a stage with no epochs (train.contrastive.epochs 0) only fits
its head. Each line says which of these happened, and never formats a
number that the method does not produce.
"""
from __future__ import annotations


def _seconds(value) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else "an unrecorded time"


def training_lines(training: dict) -> list[str]:
    """Lines describing the stages of a `results.json` training record, in the order they ran."""
    lines = []
    choice = training.get("method_choice")
    if choice:
        per_class = choice.get("per_class")
        lines.append(f"method auto chose {choice['method']}" + (
            f" (median {per_class:g} training rows per class)" if isinstance(per_class, (int, float)) else ""))
    warmup = training.get("warmup")
    if warmup and warmup.get("epochs") == 0:  # a stage that trains nothing (e.g. train.contrastive.epochs 0)
        probe = (warmup.get("outcome") or {}).get("validation_probe")
        lines.append(f"no {warmup['phase']} stage: a head fitted on the pre-trained encoder in "
                     f"{_seconds(warmup['train_seconds'])}"
                     + (f" (validation {probe:.3f})" if isinstance(probe, float) else ""))
    elif warmup:
        lines.append(f"{warmup['phase']} stage: {warmup['global_step']} steps in {_seconds(warmup['train_seconds'])}")
        outcome = warmup.get("outcome") or {}
        if outcome.get("kept"):
            probe, tuned = outcome.get("validation_probe"), outcome.get("validation_contrastive")
            scores = f" (validation: pre-trained {probe:.3f}, tuned {tuned:.3f})" if isinstance(probe, float) and \
                isinstance(tuned, float) else ""
            lines.append(f"kept the {outcome['kept']} encoder{scores}")
    if warmup and warmup.get("final"):
        lines.append(f"no main stage: the {warmup['phase']} stage finished the model"
                     + (" (its head was refitted on the training and validation rows, so validation is not held "
                        "out)" if training.get("validation_held_out") is False else ""))
        return lines
    rate = training.get("train_samples_per_second")
    lines.append(f"trained {training['global_step']} steps in {_seconds(training.get('train_seconds'))}"
                 + (f" ({rate:.1f} samples/s)" if isinstance(rate, (int, float)) else ""))
    return lines
