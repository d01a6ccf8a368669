"""The server's side without Flower: the global model's first tensors, its validation score each round,
and the record of rounds (rounds.jsonl) and of the best global tensors (global.safetensors)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROUNDS = "rounds.jsonl"
GLOBAL = "global.safetensors"
REFIT = "refit.json"


@dataclass
class ServerHooks:
    """What a ServerApp needs from tunesmith, in whichever process it runs.

    initial: the global trainable tensors before round 1 (name -> array);
    evaluate(state) -> validation metrics of the global model holding STATE (with `loss` and `metric`);
    metric: the validation metric that picks the best round (`loss` is minimised);
    folder: where rounds.jsonl and global.safetensors (the best round's tensors) go;
    head: the state keys of the classifier's weight and bias (None: no head to refit, e.g. sft);
    features(state) -> (validation features at the head's input, labels) and score(labels, logits) -> metrics:
    how the head refit scores candidate heads without running the body again for each."""
    initial: dict[str, np.ndarray]
    evaluate: Callable[[dict[str, np.ndarray]], dict]
    metric: str
    folder: Path
    head: tuple[str, str] | None = None
    features: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]] | None = None
    score: Callable[[np.ndarray, np.ndarray], dict] | None = None
    best: float | None = None
    started: float = field(default_factory=time.perf_counter)

    def _better(self, score: float) -> bool:
        return self.best is None or (score < self.best if self.metric == "loss" else score > self.best)

    def _keep(self, state: dict[str, np.ndarray], score: float) -> None:
        from safetensors.torch import save_file

        self.best = score
        tmp = self.folder / f".{GLOBAL}.tmp"
        save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, str(tmp))
        tmp.replace(self.folder / GLOBAL)

    def record_round(self, server_round: int, state: dict[str, np.ndarray], traffic: dict) -> dict:
        """Score the global model after SERVER_ROUND; keep its tensors when they are the best so far."""
        metrics = {k: v for k, v in self.evaluate(state).items() if isinstance(v, (int, float))}
        score = metrics[self.metric]
        better = self._better(score)
        if better:
            self._keep(state, score)
        record = {"round": server_round, "validation": metrics, "best": better, **traffic,
                  "seconds": round(time.perf_counter() - self.started, 2)}
        with (self.folder / ROUNDS).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        return record


    def refit(self, state: dict[str, np.ndarray], heads: dict[str, tuple[np.ndarray, np.ndarray]],
              traffic: dict) -> dict:
        """Score STATE with each of HEADS (name -> (weight, bias)) in place of its head; keep the best one as
        the global model only if it validates better than the best round (the averaged head). Writes refit.json."""
        from tunesmith.io import atomic_write_json

        if self.head is None or self.features is None or self.score is None:
            raise ValueError("this model has no classifier head to refit")
        tic = time.perf_counter()
        x, y = self.features(state)  # the body is the same for every candidate: run it once
        averaged, candidates, best = self.best, [], None
        for name, (weight, bias) in heads.items():
            weight, bias = weight.astype(np.float32), bias.astype(np.float32)
            metrics = {k: v for k, v in self.score(y, x @ weight.T.astype(np.float64) + bias).items()
                       if isinstance(v, (int, float))}
            candidates.append({"head": name, "validation": metrics})
            if self._better(metrics[self.metric]):
                best = name
                self._keep({**state, self.head[0]: weight.reshape(state[self.head[0]].shape),
                            self.head[1]: bias.reshape(state[self.head[1]].shape)}, metrics[self.metric])
        record = {"method": "lda", "metric": self.metric, "averaged_head_validation": averaged,
                  "candidates": candidates, "kept": best, "traffic": traffic,
                  "seconds": round(time.perf_counter() - tic, 2)}
        atomic_write_json(self.folder / REFIT, record)
        return record


def read_refit(folder: Path) -> dict | None:
    """The record written by ServerHooks.refit, if the run refitted its head."""
    path = Path(folder) / REFIT
    return json.loads(path.read_text()) if path.is_file() else None


def read_rounds(folder: Path) -> list[dict]:
    """The records written by ServerHooks.record_round, in order."""
    path = Path(folder) / ROUNDS
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def load_global(folder: Path) -> dict[str, torch.Tensor]:
    """The best round's global tensors."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / GLOBAL))


def model_hooks(task, cfg, data, prepared, accelerator, folder: Path) -> ServerHooks:
    """ServerHooks around a prepared model: the global tensors load into it and the task scores it on
    the validation split (the same `validate` an ordinary run uses)."""
    from tunesmith.models.methods import load_trainable_state, trainable_state

    model = prepared.model

    def evaluate(state: dict[str, np.ndarray]) -> dict:
        load_trainable_state(model, {k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        return task.validate(cfg, data, prepared, model, accelerator)

    initial = {k: v.numpy() for k, v in trainable_state(model).items()}
    hooks = ServerHooks(initial=initial, evaluate=evaluate, metric=cfg.train.metric_for_best, folder=Path(folder))
    if data.labels:  # a classifier: its last linear layer and what it reads, for the head refit
        from tunesmith.models.head import head_inputs, head_linear

        name, _ = head_linear(model, len(data.labels))
        hooks.head = (f"{name}.weight", f"{name}.bias")

        def features(state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            load_trainable_state(model, {k: torch.from_numpy(np.array(v)) for k, v in state.items()})
            return head_inputs(model, len(data.labels), prepared.encoded["validation"], prepared.evaluation_collate,
                               task.logits, cfg.train.eval_batch_size)

        hooks.features = features
        hooks.score = lambda y, logits: task.metrics(y, logits, data.labels)
    return hooks


def hooks_from_spec(spec_path: str | Path) -> ServerHooks:
    """ServerHooks built from the spec alone, for a ServerApp in a process of its own (a deployment): the
    model as every client builds it (same seed, same config), scored on the spec's validation_file."""
    from accelerate.utils import set_seed

    from tunesmith.errors import UserError
    from tunesmith.federate.client import read_silo
    from tunesmith.federate.spec import load_spec
    from tunesmith.run import make_accelerator
    from tunesmith.tasks import get_task
    from tunesmith.tasks.base import TaskData

    spec = load_spec(spec_path)
    if not spec.validation_file:
        raise UserError(f"{spec_path}: the spec names no validation_file for the server to score the global model")
    cfg = spec.run_config
    task = get_task(cfg.task)
    rows = read_silo(spec.validation_file, cfg, task)
    data = TaskData(splits={"train": rows.iloc[:1], "validation": rows, "test": rows.iloc[:1]},
                    labels=list(spec.labels))
    set_seed(cfg.train.seed)  # the clients' seed: the same frozen weights and initial head
    prepared = task.prepare(cfg, data)
    return model_hooks(task, cfg, data, prepared, make_accelerator(cfg), Path(spec.folder))
