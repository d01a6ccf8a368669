"""The one training loop, shared by every task and method, on Hugging Face Accelerate.

The same code runs in one process, or under `accelerate launch` / `torchrun` on several CPU
processes (gloo), GPUs or nodes. Tasks plug in through two functions, `loss(model, batch)` (given to
`train_loop`) and `logits(model, batch)`; methods (full, LoRA, probe) only change which parameters train.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from tunesmith.config import TrainConfig
from tunesmith.evaluate.metrics import headline
from tunesmith.models.methods import load_trainable_state, trainable_state
from tunesmith.train import checkpoint as ckpt
from tunesmith.train.sampling import LengthGroupedBatchSampler


@dataclass
class LoopResult:
    global_step: int
    epochs_completed: int
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    train_seconds: float
    train_samples: int

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds > 0 else float("nan")


class MetricsLog:
    """Append-only metrics.jsonl; only the main process writes."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = Path(path), enabled

    def truncate_after(self, step: int) -> None:
        """On resume, forget what was logged after the checkpoint (it will be logged again)."""
        if not (self.enabled and self.path.exists()):
            return
        from tunesmith.io import atomic_write_text

        keep = []
        for ln in self.path.read_text().splitlines():
            try:
                record = json.loads(ln)
            except json.JSONDecodeError:  # the line a killed process was appending
                continue
            if record["step"] <= step:
                keep.append(ln)
        atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float,
               param_groups: Callable | None = None) -> torch.optim.Optimizer:
    # Biases and norm weights (1-D tensors) get no weight decay, as in BERT and nanoGPT.
    params = [p for p in model.parameters() if p.requires_grad]
    if param_groups is not None:  # the task's groups, each with its own "lr" and "weight_decay"
        groups = param_groups(model, lr)
    else:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    # the fused kernel (one op for all tensors) is what transformers' Trainer picks too; faster on CPU and GPU
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, fused=fused or None)


def _progress(enabled: bool):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
                    TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), disable=not enabled)


def train_loop(loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], model: torch.nn.Module,
               train_examples: Sequence[dict], lengths: list[int], collate: Callable,
               evaluate: Callable[[torch.nn.Module], dict], cfg: TrainConfig, epochs: int, learning_rate: float,
               run_dir: Path, accelerator, resume: bool = False,
               callbacks: Sequence[Callable[[dict], None]] = (), param_groups: Callable | None = None) -> LoopResult:
    """Train `model` in place on `loss_fn(model, batch)`; leave it holding the best validation weights.

    `evaluate(model)` returns validation metrics (with `loss` and `cfg.metric_for_best`).
    Checkpoints go to RUN_DIR/checkpoints/{last,best}; metrics to RUN_DIR/metrics.jsonl.
    `param_groups(model, learning_rate)` gives the optimizer's groups (default: one rate, no decay on 1-D).
    """
    from transformers import get_scheduler

    run_dir = Path(run_dir)
    main = accelerator.is_main_process
    sampler = LengthGroupedBatchSampler(lengths, cfg.batch_size, cfg.seed, cfg.group_by_length,
                                        max_tokens=cfg.batch_tokens)
    loader = DataLoader(train_examples, batch_sampler=sampler, collate_fn=collate,
                        generator=torch.Generator().manual_seed(cfg.seed))
    optimizer = _optimizer(model, cfg, learning_rate, param_groups)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    total_steps = steps_per_epoch * epochs
    # Stepped once per optimizer step by this loop (not prepared: Accelerate would step it per process).
    scheduler = get_scheduler("constant_with_warmup" if cfg.scheduler == "constant" else cfg.scheduler, optimizer,
                              num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps)
    state = {"global_step": 0, "epoch": 0, "batches_in_epoch": 0, "best_metric": None, "best_step": None,
             "bad_evals": 0, "stopped_early": False, "total_steps": total_steps, "train_samples": 0,
             "train_seconds": 0.0}
    last_dir, best_dir = run_dir / "checkpoints" / "last", run_dir / "checkpoints" / "best"
    log = MetricsLog(run_dir / "metrics.jsonl", main)
    unwrapped = accelerator.unwrap_model(model)
    if resume and (found := ckpt.find_checkpoint(last_dir)) is not None:
        load_trainable_state(unwrapped, ckpt.load_weights(found))
        ckpt.restore_training(found, optimizer, scheduler, accelerator.process_index)
        state.update(ckpt.load_state(found))
        log.truncate_after(state["global_step"])
    accelerator.wait_for_everyone()

    def save_last() -> None:
        rngs = _gather_rng(accelerator)
        if main:
            ckpt.save_checkpoint(last_dir, trainable_state(unwrapped), state, optimizer, scheduler, rngs)
        accelerator.wait_for_everyone()

    def run_eval() -> None:
        metrics = evaluate(model)
        score = metrics[cfg.metric_for_best]
        state["evals"] = state.get("evals", 0) + 1
        state["last_eval"] = headline(metrics)
        log.write({"type": "eval", "split": "validation", "step": state["global_step"],
                   "epoch": round(state["global_step"] / steps_per_epoch, 4),
                   **state["last_eval"]})
        best = state["best_metric"]
        improved = best is None or (score < best if cfg.metric_for_best == "loss" else score > best)
        if improved:
            state.update(best_metric=score, best_step=state["global_step"], bad_evals=0)
            if main:
                ckpt.save_checkpoint(best_dir, trainable_state(unwrapped), dict(state))
            accelerator.wait_for_everyone()
        else:
            state["bad_evals"] += 1
            if cfg.early_stopping_patience and state["bad_evals"] >= cfg.early_stopping_patience:
                state["stopped_early"] = True

    model.train()
    # the loss stays on the device between logs: reading it every step would sync host and GPU each time
    window = {"sum": torch.zeros((), device=accelerator.device), "n": 0}
    clock = {"start": time.perf_counter(), "base": state["train_seconds"], "overhead": 0.0}

    def timed(fn: Callable[[], None]) -> None:  # eval and checkpoints do not count as training time
        tic = time.perf_counter()
        fn()
        clock["overhead"] += time.perf_counter() - tic

    with _progress(main) as bar:
        task_id = bar.add_task("train", total=total_steps, completed=state["global_step"], loss="-")
        while state["epoch"] < epochs and not state["stopped_early"]:
            # Accelerate re-sets the sampler's epoch from its own iteration counter on every pass;
            # keep both on the run's epoch so a resumed run sees the same batch order.
            loader.set_epoch(state["epoch"])
            sampler.set_epoch(state["epoch"])
            skip = state["batches_in_epoch"]
            for batch in accelerator.skip_first_batches(loader, skip) if skip else loader:
                with accelerator.accumulate(model):
                    loss = loss_fn(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                state["batches_in_epoch"] += 1
                state["train_samples"] += len(batch["labels"]) * accelerator.num_processes
                window["sum"] += loss.detach().float()
                window["n"] += 1
                if not accelerator.sync_gradients:
                    continue
                scheduler.step()
                state["global_step"] += 1
                step = state["global_step"]
                end_of_epoch = state["batches_in_epoch"] == len(loader)
                if end_of_epoch:
                    state.update(epoch=state["epoch"] + 1, batches_in_epoch=0)
                state["train_seconds"] = clock["base"] + time.perf_counter() - clock["start"] - clock["overhead"]
                if step % cfg.logging_steps == 0 or step == total_steps:
                    mean = accelerator.reduce(window["sum"] / window["n"], reduction="mean").item()
                    window.update(sum=torch.zeros((), device=accelerator.device), n=0)
                    log.write({"type": "train", "step": step, "epoch": round(step / steps_per_epoch, 4),
                               "loss": mean, "lr": max(scheduler.get_last_lr())})
                    bar.update(task_id, loss=f"{mean:.4f}")
                bar.update(task_id, completed=step)
                if (cfg.eval_every_steps and step % cfg.eval_every_steps == 0) or (
                        end_of_epoch and not cfg.eval_every_steps):
                    timed(run_eval)
                    timed(save_last)
                elif step % cfg.checkpoint_every_steps == 0:
                    timed(save_last)
                for callback in callbacks:
                    callback(dict(state))
                if state["stopped_early"]:
                    break
    if (found := ckpt.find_checkpoint(best_dir)) is not None:
        load_trainable_state(unwrapped, ckpt.load_weights(found))
    return LoopResult(global_step=state["global_step"], epochs_completed=state["epoch"],
                      best_step=state["best_step"], best_metric=state["best_metric"],
                      stopped_early=state["stopped_early"], train_seconds=state["train_seconds"],
                      train_samples=state["train_samples"])


def _gather_rng(accelerator) -> list[dict]:
    from accelerate.utils import gather_object

    states = gather_object([ckpt.rng_state()])
    return list(states)
