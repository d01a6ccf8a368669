"""The interface a task offers to the shared pipeline and training loop."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import torch

from tunesmith.config import RunConfig
from tunesmith.memo import Memo


@dataclass
class TaskData:
    """Rows of each split (already cleaned), label names and what loading found."""
    splits: dict[str, Any]  # split name -> DataFrame
    labels: list[str]
    data_report: dict = field(default_factory=dict)


@dataclass
class Phase:
    """A stage trained before the main one, e.g. the new head alone on a frozen backbone's cached features."""
    name: str  # also its folder in the run (metrics.jsonl, checkpoints)
    epochs: int
    learning_rate: float
    encoded: dict[str, Sequence[dict]]  # examples of this stage, every split
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    enter: Callable[[torch.nn.Module], None]  # e.g. freeze the backbone
    eval_collate: Callable | None = None  # evaluation batches, when they differ from training ones
    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None  # this stage's
    # own objective (e.g. contrastive); None: the run's loss
    evaluate: Callable[[torch.nn.Module], dict] | None = None  # this stage's validation metrics; None: the task's
    lengths: list[int] | None = None  # of each training example, for length-grouped batches; None: no grouping
    leave: Callable[[torch.nn.Module], bool | None] | None = None  # after the stage (e.g. freeze the tuned body
    # for a head-only main stage); returns True when the model is final (no main stage); None: unfreeze every weight
    outcome: dict | None = None  # what enter/leave decided (filled by them), recorded with the stage's results


@dataclass
class Prepared:
    """Everything the training loop and the evaluator need, independent of the task."""
    model: torch.nn.Module
    encoded: dict[str, Sequence[dict]]  # split name -> model-ready examples
    lengths: list[int]  # length of each training example, for length-grouped batching
    collate: Callable[[list[dict]], dict[str, torch.Tensor]]
    preprocessor: Any  # tokenizer (or image preprocessing) saved beside the model
    resolved: dict = field(default_factory=dict)  # defaults the task derived from the data
    eval_collate: Callable | None = None  # evaluation batches, when they differ (no augmentation); else collate
    warmup: Phase | None = None  # trained first, then the main stage
    param_groups: Callable[[torch.nn.Module, float], list[dict]] | None = None  # main-stage optimizer groups
    # (e.g. discriminative learning rates); None: every trainable weight at the run's learning rate
    loss: Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor] | None = None  # the training loss
    # when this run's data decides it (class weights, label smoothing); None: the task's own `loss`
    frozen_features: dict[str, torch.Tensor] | None = None  # the pre-trained body's features of every split,
    # when prepare computed them (the baselines reuse them)

    @property
    def evaluation_collate(self) -> Callable:
        return self.eval_collate or self.collate


class Task(Protocol):
    name: str

    def configure(self, cfg: RunConfig) -> RunConfig:
        """The config with this task's defaults applied and its rules checked, before any data loads
        (a value the task cannot use raises UserError naming the field; see config.field_error)."""

    def load_data(self, cfg: RunConfig) -> TaskData:
        """Read and check the configured files; split when needed."""

    def data_settings(self, cfg: RunConfig) -> dict:
        """The settings outside cfg.data that load_data reads (optional; default none): a study's
        trials share loaded data only while these and cfg.data and the seed are equal."""

    def audit(self, cfg: RunConfig, data: TaskData) -> tuple[TaskData, dict]:
        """Check the splits for leakage, duplicates, label errors...; apply the configured fixes."""

    def prepare(self, cfg: RunConfig, data: TaskData, memo: Memo | None = None) -> Prepared:
        """Build the pre-trained model with its head, and encode every split (`memo` lets the trials
        of a study share the encoded splits and a frozen body's features)."""

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Training loss of one batch (a run trains on Prepared.loss instead, when prepare gives one)."""

    def logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Model outputs used for prediction and metrics."""

    def profile(self, data: TaskData) -> dict:
        """A summary of the training split for data_report.json."""

    def validate(self, cfg: RunConfig, data: TaskData, prepared: Prepared, model: torch.nn.Module,
                 accelerator) -> dict:
        """Validation metrics during training (with `loss` and `train.metric_for_best`)."""

    def finish(self, cfg: RunConfig, data: TaskData, prepared: Prepared, accelerator, training: dict,
               run_dir: Path) -> dict:
        """After training: score, compare, save the model and write results.json and the report.
        Runs on every process; returns the results (empty on other than the main process)."""

    def save(self, model: torch.nn.Module, prepared: Prepared, folder: Path) -> None:
        """Write the final model in its ecosystem's format."""
