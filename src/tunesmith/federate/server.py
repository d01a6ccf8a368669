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


@dataclass
class ServerHooks:
    """What a ServerApp needs from tunesmith, in whichever process it runs.

    initial: the global trainable tensors before round 1 (name -> array);
    evaluate(state) -> validation metrics of the global model holding STATE (with `loss` and `metric`);
    metric: the validation metric that picks the best round (`loss` is minimised);
    folder: where rounds.jsonl and global.safetensors (the best round's tensors) go."""
    initial: dict[str, np.ndarray]
    evaluate: Callable[[dict[str, np.ndarray]], dict]
    metric: str
    folder: Path
    best: float | None = None
    started: float = field(default_factory=time.perf_counter)

    def record_round(self, server_round: int, state: dict[str, np.ndarray], traffic: dict) -> dict:
        """Score the global model after SERVER_ROUND; keep its tensors when they are the best so far."""
        metrics = {k: v for k, v in self.evaluate(state).items() if isinstance(v, (int, float))}
        score = metrics[self.metric]
        better = self.best is None or (score < self.best if self.metric == "loss" else score > self.best)
        if better:
            from safetensors.torch import save_file

            self.best = score
            tmp = self.folder / f".{GLOBAL}.tmp"
            save_file({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, str(tmp))
            tmp.replace(self.folder / GLOBAL)
        record = {"round": server_round, "validation": metrics, "best": better, **traffic,
                  "seconds": round(time.perf_counter() - self.started, 2)}
        with (self.folder / ROUNDS).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        return record


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
    return ServerHooks(initial=initial, evaluate=evaluate, metric=cfg.train.metric_for_best, folder=Path(folder))


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
