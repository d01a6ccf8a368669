"""A silo's side without Flower: its rows (a simulation's silo file or a site's own data file) and one
local round of tunesmith's training loop (FedProx's proximal term included)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_rows, tiny_config
from tunesmith.config import build_config
from tunesmith.federate.client import LocalTrainer, read_silo, write_silo
from tunesmith.federate.spec import FedSpec
from tunesmith.tasks import get_task


def test_a_silo_file_round_trips_the_rows_exactly(tmp_path, tiny_model):
    cfg = build_config(tiny_config(tiny_model, tmp_path / "x.csv", tmp_path))
    rows = pd.DataFrame({"text": ["00123", "good movie", "1e5"], "label": ["1", "pos", "007"], "__row__": [2, 3, 4]})
    back = read_silo(write_silo(rows, tmp_path / "s.silo.jsonl"), cfg, get_task(cfg.task))
    pd.testing.assert_frame_equal(back, rows)


def test_a_sites_own_file_is_read_whole_by_the_tasks_loader(tmp_path, tiny_model):
    make_rows(30, seed=2).rename(columns={"text": "review", "label": "sentiment"}).to_csv(tmp_path / "site.csv",
                                                                                       index=False)
    cfg = build_config({**tiny_config(tiny_model, tmp_path / "x.csv", tmp_path),
                        "data": {"train": str(tmp_path / "x.csv"), "text_column": "review",
                                 "label_column": "sentiment"}})
    rows = read_silo(tmp_path / "site.csv", cfg, get_task(cfg.task))
    assert len(rows) == 30 and set(rows["label"]) == {"pos", "neg"}  # nothing split off


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("silo")
    rows = make_rows(48, seed=4)
    rows["__row__"] = range(1, len(rows) + 1)
    cfg = build_config(tiny_config(tiny_model, root / "x.csv", root, method="lora", learning_rate=5e-2))
    spec = FedSpec(config=cfg.model_dump(mode="json"), labels=["neg", "pos"],
                   silo_files=[str(write_silo(rows, root / "s.silo.jsonl"))], folder=str(root))
    return LocalTrainer(spec, 0)


def _distance(a: dict, b: dict) -> float:
    return float(np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a)))


def test_a_local_round_trains_the_travelling_tensors_from_the_global_ones(trainer):
    from tunesmith.models.methods import trainable_state

    start = {k: v.numpy() for k, v in trainable_state(trainer.prepared.model).items()}
    global_state = {k: v + 0.01 for k, v in start.items()}
    out = trainer.train(global_state, local_epochs=1, server_round=1)
    assert sorted(out.state) == sorted(global_state) and any("lora_A" in k for k in out.state)
    assert out.num_examples == 48 and out.steps == 6 and np.isfinite(out.train_loss)
    assert _distance(out.state, global_state) > 1e-4  # it trained, from the global tensors...
    # ...and not from where its own model was before: a second round from the same global ends the same
    again = trainer.train(global_state, local_epochs=1, server_round=1)
    assert _distance(again.state, out.state) < 1e-5


def test_fedprox_keeps_a_client_closer_to_the_global_model(trainer):
    from tunesmith.models.methods import trainable_state

    global_state = {k: v.numpy() for k, v in trainable_state(trainer.prepared.model).items()}
    free = trainer.train(global_state, local_epochs=2, server_round=2)
    held = trainer.train(global_state, local_epochs=2, server_round=2, proximal_mu=100.0)
    assert _distance(held.state, global_state) < 0.5 * _distance(free.state, global_state)


def test_prior_adjusted_loss_leaves_the_labels_a_silo_lacks_alone():
    import torch

    from tunesmith.federate.client import prior_adjusted
    from tunesmith.tasks.classification import ClassLoss

    head = torch.nn.Linear(4, 3)
    x = torch.randn(16, 4)
    base = ClassLoss(lambda m, b: m(b["x"]))
    batch = {"x": x, "labels": torch.zeros(16, dtype=torch.long)}  # this silo holds label "a" only
    plain_grad = torch.autograd.grad(base(head, batch), head.bias)[0]
    adjusted = prior_adjusted(base, {"a": 16}, ["a", "b", "c"])
    adj_grad = torch.autograd.grad(adjusted(head, batch), head.bias)[0]
    assert plain_grad[1] > 0.05 and plain_grad[2] > 0.05  # plain: push the absent labels down
    assert adj_grad[1] == 0 and adj_grad[2] == 0  # adjusted: leave them be
    # with the silo's shares equal for every label, the adjustment is a constant shift: the same loss
    even = prior_adjusted(base, {"a": 5, "b": 5, "c": 5}, ["a", "b", "c"])
    assert float(even(head, batch)) == pytest.approx(float(base(head, batch)), abs=1e-6)


def test_a_trainer_with_prior_adjusted_loss_trains_with_its_silos_shares(tmp_path, tiny_model):
    from tunesmith.models.methods import trainable_state

    rows = make_rows(48, seed=4)
    rows["__row__"] = range(1, len(rows) + 1)
    rows = rows[rows["label"] == "pos"].reset_index(drop=True)  # one label only
    states = {}
    for mode in ("plain", "prior-adjusted"):
        cfg = build_config({**tiny_config(tiny_model, tmp_path / "x.csv", tmp_path, method="lora",
                                          learning_rate=5e-2),
                            "federated": {"clients": 2, "local_loss": mode}})
        spec = FedSpec(config=cfg.model_dump(mode="json"), labels=["neg", "pos"],
                       silo_files=[str(write_silo(rows, tmp_path / f"{mode}.silo.jsonl"))], folder=str(tmp_path))
        t = LocalTrainer(spec, 0)
        start = {k: v.numpy() for k, v in trainable_state(t.prepared.model).items()}
        states[mode] = t.train(start, local_epochs=2, server_round=1).state
        bias = next(k for k in start if "classifier" in k and k.endswith(".bias"))
        states[mode + "-move"] = float(np.abs(states[mode][bias] - start[bias]).sum())
    # plain training on one label drives the bias apart; adjusted training hardly moves it
    assert states["plain-move"] > 5 * states["prior-adjusted-move"]
