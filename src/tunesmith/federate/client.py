"""One silo's side of a round: load the global tensors, train on its own rows with tunesmith's task and
training loop for `local_epochs`, hand back the tensors that travel. No Flower import here."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tunesmith.config import RunConfig
from tunesmith.errors import UserError
from tunesmith.federate.spec import FedSpec


def read_silo(path: str | Path, cfg: RunConfig, task) -> pd.DataFrame:
    """A silo's training rows. A simulation writes each silo as JSONL of the task's loaded rows
    (`*.silo.jsonl`); any other file is a site's own data file, read by the task's loader like data.train."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: silo file not found")
    if path.name.endswith(".silo.jsonl"):
        rows = pd.read_json(path, orient="records", lines=True, dtype=False)
        for column in rows.columns:
            if rows[column].map(lambda v: isinstance(v, dict) and ARRAY in v).any():
                rows[column] = rows[column].map(_array)
        return rows
    own = cfg.model_copy(deep=True)
    # the file is all training rows: give it as every split so the loader splits nothing off
    own.data.train = own.data.validation = own.data.test = path
    own.data.max_train_rows = None
    return task.load_data(own).splits["train"]


def write_silo(df: pd.DataFrame, path: Path) -> Path:
    """Write a simulation silo (the rows as loaded and audited) for read_silo. Array cells (an image task's
    decoded pixels) travel exactly, as base64 bytes with their dtype and shape."""
    from tunesmith.io import atomic_write_text

    df = df.copy()
    for column in df.columns:
        if df[column].map(lambda v: isinstance(v, np.ndarray)).any():
            df[column] = df[column].map(_cell)
    atomic_write_text(path, df.to_json(orient="records", lines=True, force_ascii=False))
    return path


ARRAY = "__ndarray__"


def _cell(value):
    if not isinstance(value, np.ndarray):
        return value
    import base64

    value = np.ascontiguousarray(value)
    return {ARRAY: base64.b64encode(value.tobytes()).decode("ascii"), "dtype": value.dtype.str,
            "shape": list(value.shape)}


def _array(value):
    if not (isinstance(value, dict) and ARRAY in value):
        return value
    import base64

    flat = np.frombuffer(base64.b64decode(value[ARRAY]), dtype=np.dtype(value["dtype"]))
    return flat.reshape(value["shape"]).copy()


def _monotone_evaluate(metric: str):
    """train_loop keeps the checkpoint with the best validation score. A client holds no validation
    rows (the server scores the global model), so every evaluation 'improves': the last epoch is kept."""
    count = {"n": 0}

    def evaluate(model) -> dict:
        count["n"] += 1
        n = float(count["n"])
        return {"loss": -n, "accuracy": n, "macro_f1": n, metric: -n if metric == "loss" else n}

    return evaluate


@dataclass
class LocalResult:
    state: dict[str, np.ndarray]
    num_examples: int
    train_loss: float | None
    steps: int


class LocalTrainer:
    """A silo's model and encoded rows, built once per process and reused every round."""

    def __init__(self, spec: FedSpec, silo: int, silo_file: str | Path | None = None) -> None:
        from tunesmith.run import make_accelerator
        from tunesmith.tasks import get_task
        from tunesmith.tasks.base import TaskData

        from accelerate.utils import set_seed

        from tunesmith.models import quiet_hf

        quiet_hf()  # this may be a fresh process (a Ray actor, a SuperNode's ClientApp)
        cfg = spec.run_config
        self.cfg, self.silo, self.task = cfg, silo, get_task(cfg.task)
        path = silo_file or spec.silo_files[silo]
        rows = read_silo(path, cfg, self.task)
        # a language model's rows (sft) have no labels to check
        unknown = sorted(set(rows["label"].astype(str)) - set(spec.labels)) if spec.labels else []
        if unknown:
            raise UserError(f"{path}: labels {unknown[:5]} are not among the federation's labels "
                            f"({', '.join(spec.labels[:10])})")
        # validation and test: one row each, only so that prepare has the splits it encodes
        data = TaskData(splits={"train": rows, "validation": rows.iloc[:1], "test": rows.iloc[:1]},
                        labels=list(spec.labels))
        set_seed(cfg.train.seed)  # same seed as the server: identical frozen weights and initial head
        self.prepared = self.task.prepare(cfg, data)
        self.accelerator = make_accelerator(cfg)
        self.n = len(rows)
        self.labels = list(spec.labels)
        self.label_counts = rows["label"].astype(str).value_counts().to_dict() if spec.labels else {}

    def train(self, global_state: dict[str, np.ndarray], local_epochs: int, server_round: int,
              proximal_mu: float = 0.0) -> LocalResult:
        """Start from GLOBAL_STATE, train LOCAL_EPOCHS on this silo, return the new trainable state."""
        import json

        from accelerate.utils import set_seed

        from tunesmith.models.methods import load_trainable_state, trainable_state
        from tunesmith.train.loop import train_loop

        p, cfg = self.prepared, self.cfg
        model = p.model
        load_trainable_state(model, {k: torch.from_numpy(np.array(v)) for k, v in global_state.items()})
        seed = cfg.train.seed + 1000 * server_round + self.silo  # new batch order and dropout each round
        set_seed(seed)
        train_cfg = cfg.train.model_copy(update={"seed": seed, "early_stopping_patience": None})
        base_loss = p.loss or self.task.loss
        if cfg.federated.local_loss == "prior-adjusted" and self.label_counts:
            base_loss = prior_adjusted(base_loss, self.label_counts, self.labels)
        loss = base_loss if proximal_mu <= 0 else _proximal(base_loss, model, proximal_mu)
        with tempfile.TemporaryDirectory(prefix=f"silo{self.silo}-") as tmp:
            result = train_loop(loss, model, p.encoded["train"], p.lengths, p.collate,
                                _monotone_evaluate(cfg.train.metric_for_best), train_cfg, local_epochs,
                                cfg.train.learning_rate, Path(tmp), self.accelerator)
            records = [json.loads(ln) for ln in (Path(tmp) / "metrics.jsonl").read_text().splitlines() if ln]
        self.accelerator.free_memory()  # Accelerate keeps every prepared model and optimizer otherwise
        losses = [r["loss"] for r in records if r["type"] == "train"]
        state = {k: v.numpy() for k, v in trainable_state(self.accelerator.unwrap_model(model)).items()}
        return LocalResult(state, self.n, losses[-1] if losses else None, result.global_step)

    def statistics(self, global_state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This silo's label counts, feature means and within-label scatter under GLOBAL_STATE's body, read at
        the head's input (refit.py pools them into a closed-form head)."""
        from tunesmith.federate.refit import silo_statistics
        from tunesmith.models.head import head_inputs
        from tunesmith.models.methods import load_trainable_state

        model = self.accelerator.unwrap_model(self.prepared.model)
        load_trainable_state(model, {k: torch.from_numpy(np.array(v)) for k, v in global_state.items()})
        p = self.prepared
        x, y = head_inputs(model, len(self.labels), p.encoded["train"], p.evaluation_collate,
                             self.task.logits, self.cfg.train.eval_batch_size)
        # float32 on the wire: half the bytes, and each silo's scatter is about its own means (no cancellation)
        return {k: v.astype(np.float32) for k, v in silo_statistics(x, y, len(self.labels)).items()}


def prior_adjusted(loss, counts: dict[str, int], labels: list[str]):
    """The task's class loss with the silo's log label shares added to the logits while training. Labels the silo
    lacks get -1e4, out of the softmax: their gradient is exactly zero, so not even Adam, which rescales small
    gradients to full steps, moves their scores."""
    import dataclasses

    from tunesmith.tasks.classification import ClassLoss

    if not isinstance(loss, ClassLoss):
        raise UserError("federated.local_loss = 'prior-adjusted': this task has no class loss; use plain")
    n = np.array([counts.get(label, 0) for label in labels], dtype=np.float64)
    offset = torch.tensor(np.where(n > 0, np.log(np.maximum(n, 1) / n.sum()), -1e4), dtype=torch.float32)
    return dataclasses.replace(loss, logit_offset=offset)


def _proximal(base, model: torch.nn.Module, mu: float):
    """FedProx: the task's loss plus mu/2 * |w - w_global|^2 over the weights that train (and travel)."""
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def loss(m: torch.nn.Module, batch: dict) -> torch.Tensor:
        value = base(m, batch)
        params = dict(m.named_parameters())
        prox = sum(((params[n] - a) ** 2).sum() for n, a in anchor.items())
        return value + 0.5 * mu * prox

    return loss
