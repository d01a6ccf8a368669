"""Differential privacy (federated.dp): the RDP accountant, the client-side clipping mod, and the gate that
fails a run whose DP model does not beat the base model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tunesmith.federate.privacy import epsilon, rdp_sampled_gaussian

DELTA = 1e-5


def test_epsilon_falls_with_noise_and_grows_with_rounds():
    eps = [epsilon(1.0, z, 10, DELTA)[0] for z in (0.7, 1.0, 2.0, 8.0)]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    assert epsilon(1.0, 1.0, 20, DELTA)[0] > epsilon(1.0, 1.0, 10, DELTA)[0]
    assert epsilon(1.0, 0.0, 10, DELTA)[0] == math.inf


def test_sampling_fewer_clients_per_round_costs_less():
    assert epsilon(0.25, 1.0, 10, DELTA)[0] < epsilon(1.0, 1.0, 10, DELTA)[0]


def test_full_participation_is_the_gaussian_mechanism():
    # q = 1: RDP of order alpha is alpha / (2 sigma^2) (Mironov 2017, Prop. 7)
    orders = (2, 8, 32)
    assert np.allclose(rdp_sampled_gaussian(1.0, 1.5, orders), [a / (2 * 1.5 ** 2) for a in orders])


def test_one_release_within_the_classical_gaussian_bound():
    # Dwork & Roth, Thm A.1: sigma = sqrt(2 ln(1.25/delta)) / eps0 gives (eps0, delta)-DP for eps0 < 1.
    # The RDP conversion must be at least as tight, and not implausibly tighter.
    eps0 = 0.5
    sigma = math.sqrt(2 * math.log(1.25 / DELTA)) / eps0
    eps, _ = epsilon(1.0, sigma, 1, DELTA)
    assert 0.25 < eps <= eps0


def test_client_mod_clips_the_update_only_when_the_server_asks(monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    for key in ("_run_id", "_node_id", "_task_id"):  # what a ClientApp process knows about itself
        monkeypatch.setattr(TaskIdentity, key, 1)
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    from tunesmith.federate.privacy import client_mod

    def message(config: dict) -> Message:
        content = RecordDict({"arrays": ArrayRecord([np.zeros(4)]), "config": ConfigRecord(config)})
        return Message(content=content, dst_node_id=1, message_type=MessageType.TRAIN)

    def train(msg: Message, context) -> Message:  # an update of norm 6
        content = RecordDict({"arrays": ArrayRecord([np.full(4, 3.0)]), "metrics": MetricRecord({"num-examples": 1})})
        return Message(content=content, reply_to=msg)

    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    clipped = client_mod(message({KEY_CLIPPING_NORM: 1.5}), context, train)
    update = clipped.content["arrays"].to_numpy_ndarrays()[0]
    assert np.linalg.norm(update) == pytest.approx(1.5)
    plain = client_mod(message({"local-epochs": 1}), context, train)
    assert plain.content["arrays"].to_numpy_ndarrays()[0].tolist() == [3.0] * 4


def test_gate_passes_only_when_the_dp_model_beats_the_base_model_beyond_chance():
    from types import SimpleNamespace

    from tunesmith.config import FederatedConfig
    from tunesmith.federate.privacy import PrivacyGateError, gate, judge

    fed = FederatedConfig(clients=4, rounds=5, dp={"clip": 1.0, "noise_multiplier": 1.0})
    eval_cfg = SimpleNamespace(bootstrap_resamples=300, confidence_level=0.95)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    right = np.eye(2)[y] * 3.0                       # logits that pick the true label
    coin = np.eye(2)[rng.integers(0, 2, 200)] * 3.0  # logits that pick at random
    better = judge(y, right, coin, fed, eval_cfg, 0)
    assert better["passed"] is True and better["epsilon"] == epsilon(1.0, 1.0, 5, DELTA)[0]
    gate(better)  # no exception
    same = judge(y, coin, coin, fed, eval_cfg, 0)
    assert same["passed"] is False
    with pytest.raises(PrivacyGateError, match=r"does not beat the base model .*accuracy \+0.000"):
        gate(same)


def _dp_config(tmp_path, tiny_model, dp: dict, rows: int = 160, **federated) -> dict:
    from tests.conftest import make_rows, tiny_config

    make_rows(rows, seed=3).to_csv(tmp_path / "rows.csv", index=False)
    cfg = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", method="auto", learning_rate=2e-2)
    cfg["train"].pop("epochs")
    cfg["audit"] = {"enabled": False}
    cfg["eval"] = {"baselines": ["majority_class"], "bootstrap_resamples": 200}
    cfg["federated"] = {"clients": 2, "rounds": 3, "local_epochs": 2, "transfer": "head", "compare": False,
                        "dp": dp, **federated}
    return cfg


def test_useless_dp_trips_the_gate(tmp_path, tiny_model, capsys):
    """Noise 1000 times the clipping norm: the model cannot beat the base model; the run says so in one
    line, exits 1 and its folder is marked failed. Run as real processes (--deployment local): Flower's DP
    wrapper in the SuperLink's ServerApp, and no Ray memory monitor killing clients on a loaded machine."""
    import yaml

    from tunesmith.cli import main

    cfg = _dp_config(tmp_path, tiny_model, {"side": "server", "clip": 1.0, "noise_multiplier": 1000.0},
                     rounds=1, local_epochs=1)
    (tmp_path / "dp.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["federate", str(tmp_path / "dp.yaml"), "--deployment", "local"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: federated run failed: PrivacyGateError: differential privacy gate: the DP "
                              "model does not beat the base model on the test split")
    run_dir = tmp_path / "runs" / "run"
    assert json.loads((run_dir / "status.json").read_text())["status"] == "failed"
    privacy = json.loads((run_dir / "results.json").read_text())["federated"]["privacy"]
    assert privacy["passed"] is False and privacy["dp_minus_base_accuracy"]["low"] <= 0
    assert 0 < privacy["epsilon"] < 0.1  # so much noise buys a tiny epsilon
    assert privacy["rounds"] == 1 and privacy["clients_per_round"] == 2


@pytest.mark.slow
def test_mild_client_side_dp_passes_and_reports_its_budget(tmp_path, tiny_model):
    from tunesmith.config import build_config
    from tunesmith.federate import federate

    # LoRA, 4 rounds of 4 local epochs: the tiny model learns; noise std 1e-4 * 10 / 2 per weight barely hurts
    run = federate(build_config(_dp_config(tmp_path, tiny_model, {"side": "client", "clip": 10.0,
                                                                  "noise_multiplier": 1e-4},
                                           rows=240, rounds=4, local_epochs=4, transfer="adapter")))
    privacy = run.results["federated"]["privacy"]
    assert run.status == "completed" and privacy["passed"] is True
    assert privacy["dp_minus_base_accuracy"]["low"] > 0
    assert privacy["epsilon"] > 1e6  # almost no noise: almost no privacy, and the report says so
