"""One federated simulation (Flower's simulation runtime, Ray) of 3 silos on a tiny BERT, shared by the tests:
rounds complete, the aggregate differs from every client, metrics and bytes are recorded, the run folder
is an ordinary one that `predict` accepts, and the report compares federated, centralized and local-only."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_rows, tiny_config

pytest.importorskip("flwr")
ROUNDS, LOCAL_EPOCHS = 3, 3


@pytest.fixture(scope="module")
def fed_run(tmp_path_factory, tiny_model):
    from tunesmith.config import build_config
    from tunesmith.federate import federate

    root = tmp_path_factory.mktemp("fed")
    make_rows(200, seed=3).to_csv(root / "rows.csv", index=False)
    # LoRA on a tiny random body needs a high rate and a few local epochs to learn within 3 rounds
    cfg = tiny_config(tiny_model, root / "rows.csv", root / "runs", method="auto", learning_rate=5e-2)
    cfg["train"].pop("epochs")
    cfg["audit"] = {"enabled": False}
    cfg["eval"] = {"baselines": ["majority_class"], "bootstrap_resamples": 200}
    cfg["federated"] = {"clients": 3, "rounds": ROUNDS, "local_epochs": LOCAL_EPOCHS, "partition": "dirichlet:1.0",
                        "transfer": "adapter"}
    return federate(build_config(cfg))


def kept_validation(fed: dict) -> dict:
    """Validation metrics of the global model the run kept: the best round's, or its refitted head's."""
    refit = fed["head_refit"]
    if refit["kept"]:
        return next(c for c in refit["candidates"] if c["head"] == refit["kept"])["validation"]
    return [r for r in fed["round_curve"] if r["best"]][-1]["validation"]


def test_every_round_completes_with_every_client_and_the_aggregate_is_none_of_theirs(fed_run):
    rounds = fed_run.results["federated"]["round_curve"]
    assert [r["round"] for r in rounds] == list(range(ROUNDS + 1))  # round 0: the model before training
    for r in rounds[1:]:
        assert r["clients_ok"] == 3 and r["clients_failed"] == 0
        assert len(r["client_distance"]) == 3 and min(r["client_distance"]) > 1e-6
        assert np.isfinite(r["train_loss"])
        assert set(r["validation"]) >= {"accuracy", "macro_f1", "loss"}
    # training moved the global model: the validation loss after the rounds is not the untrained one
    assert rounds[-1]["validation"]["loss"] != pytest.approx(rounds[0]["validation"]["loss"], abs=1e-6)


def test_only_the_adapter_travels_and_bytes_are_counted_each_way(fed_run):
    from safetensors.torch import load_file

    fed = fed_run.results["federated"]
    traffic = fed["traffic"]
    adapter = load_file(str(fed_run.path / "federation" / "global.safetensors"))
    tensor_bytes = sum(t.numel() * t.element_size() for t in adapter.values())
    assert any("lora_A" in k for k in adapter) and all("lora" in k or "classifier" in k for k in adapter)
    overhead = 1024 * len(adapter)  # object headers and array metadata: under 1 KB per tensor
    for r in fed["round_curve"][2:]:  # round 1's downlink may dedupe LoRA's all-zero B matrices
        assert tensor_bytes < r["bytes_sent_per_client"] < tensor_bytes + overhead
        assert r["bytes_sent"] == pytest.approx(3 * r["bytes_sent_per_client"], rel=0.01)
        assert tensor_bytes < r["bytes_received_per_client"] < tensor_bytes + overhead
    assert traffic["bytes_total"] == traffic["bytes_sent_total"] + traffic["bytes_received_total"]
    assert traffic["share_of_full_weights"] < 0.5


def test_the_run_folder_is_ordinary_and_predict_reproduces_its_test_predictions(fed_run, tmp_path):
    from tunesmith.cli import main

    run_dir = fed_run.path
    for name in ("config.yaml", "splits.json", "results.json", "report.html", "status.json", "metrics.jsonl",
                 "test_predictions.csv", "model", "adapter"):
        assert (run_dir / name).exists(), name
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    # the saved model is the best round's global model (with the refitted head when that validated better):
    # the run scores it on validation as the server did
    best = [r for r in fed_run.results["federated"]["round_curve"] if r["best"]][-1]
    assert best["round"] > 0
    kept = kept_validation(fed_run.results["federated"])
    assert fed_run.results["validation"]["accuracy"] == pytest.approx(kept["accuracy"])
    assert fed_run.results["validation"]["loss"] == pytest.approx(kept["loss"], rel=1e-5)
    test = pd.read_csv(run_dir / "test_predictions.csv")
    test[["text"]].to_csv(tmp_path / "in.csv", index=False)
    assert main(["predict", str(run_dir), "--input", str(tmp_path / "in.csv"), "--output",
                 str(tmp_path / "out.csv")]) == 0
    assert pd.read_csv(tmp_path / "out.csv")["predicted"].tolist() == test["predicted"].tolist()


def test_the_report_answers_worth_it_and_distance_from_pooling(fed_run):
    fed = fed_run.results["federated"]
    comp = fed["comparison"]
    assert set(comp["arms"]) == {"centralized", "silo-0", "silo-1", "silo-2"}
    assert comp["epochs"] == ROUNDS * LOCAL_EPOCHS
    for arm in comp["arms"].values():
        assert arm["test"]["n"] == fed_run.results["test"]["n"]
        assert {"difference", "low", "high", "p_value"} <= set(arm["federated_minus"]["accuracy"])
    mean = np.mean([comp["arms"][f"silo-{i}"]["test"]["accuracy"] for i in range(3)])
    assert comp["local_only"]["mean_accuracy"] == pytest.approx(mean)
    assert "silo" in comp["verdict"] and "pooling" in comp["verdict"]
    assert sum(fed["silo_rows"]) == fed_run.results["validation"]["n"] * 0 + sum(
        sum(c.values()) for c in fed["silo_label_counts"])
    page = (fed_run.path / "report.html").read_text()
    assert "worth it versus training alone" in page and "per round" in page and "silo-2" in page


def test_a_server_built_from_the_spec_alone_scores_the_global_model_as_the_run_did(fed_run):
    """What a deployment's ServerApp process uses (server.hooks_from_spec): same model, same validation rows."""
    from safetensors.torch import load_file

    from tunesmith.federate.server import hooks_from_spec

    folder = fed_run.path / "federation"
    hooks = hooks_from_spec(folder / "spec.json")
    kept = kept_validation(fed_run.results["federated"])
    state = {k: v.numpy() for k, v in load_file(str(folder / "global.safetensors")).items()}
    again = hooks.evaluate(state)
    assert again["accuracy"] == pytest.approx(kept["accuracy"])
    assert again["loss"] == pytest.approx(kept["loss"], rel=1e-5)
    assert sorted(hooks.initial) == sorted(state)


def test_the_head_is_refit_from_pooled_class_statistics_once_and_kept_only_if_it_validates_better(fed_run):
    """Every silo sent its statistics once (bytes counted), each LDA head was scored on validation, and the
    kept one is the global model (the tests above score global.safetensors against its validation)."""
    from tunesmith.federate.refit import SHRINKAGES

    fed = fed_run.results["federated"]
    refit, traffic = fed["head_refit"], fed["traffic"]
    assert [c["head"] for c in refit["candidates"]] == [f"lda shrinkage {a}" for a in SHRINKAGES]
    assert refit["traffic"]["silos"] == 3
    labels, hidden = len(fed_run.results["labels"]), 32  # tiny BERT: 32 features into the head
    statistics = 4 * (labels + labels * hidden + hidden * hidden)  # float32 counts, means, scatter
    assert statistics < traffic["refit_bytes_per_client"] < statistics + 4096
    rounds = sum(r.get("bytes_sent", 0) + r.get("bytes_received", 0) for r in fed["round_curve"])
    assert traffic["bytes_total"] == rounds + refit["traffic"]["bytes_sent"] + refit["traffic"]["bytes_received"]
    best_round = max(r["validation"]["macro_f1"] for r in fed["round_curve"])
    scores = [c["validation"]["macro_f1"] for c in refit["candidates"]]
    assert refit["averaged_head_validation"] == pytest.approx(best_round)
    assert (refit["kept"] is not None) == (max(scores) > best_round)
    assert refit["kept"] is not None  # the tiny skewed run gains from it (0.85 -> 0.90 validation accuracy)
    assert fed_run.results["training"]["best_validation_macro_f1"] == pytest.approx(max(scores))


def test_eval_export_and_serve_take_the_federated_run_folder(fed_run, tmp_path):
    """The federated run folder is an ordinary one for the later stages: eval on labelled rows reproduces the
    run's own test accuracy, the ONNX export passes its parity gate, and the server answers as predict does."""
    from tunesmith.export import export_run
    from tunesmith.predict import eval_run
    from tunesmith.serve import create_app

    test = pd.read_csv(fed_run.path / "test_predictions.csv")
    test[["text", "label"]].to_csv(tmp_path / "labelled.csv", index=False)
    report = eval_run(fed_run.path, tmp_path / "labelled.csv", None, None)
    assert report["metrics"]["accuracy"] == pytest.approx(fed_run.results["test"]["accuracy"])
    exported = export_run(fed_run.path, "onnx", output=tmp_path / "onnx")
    assert exported.refusal is None and exported.record["fp32"]["passes"]
    assert exported.record["fp32"]["agreement"] == 1.0
    from tests.serve.test_app import started

    client = started(create_app(fed_run.path))
    try:
        reply = client.post("/predict", json={"inputs": test["text"].head(5).tolist()})
        assert reply.status_code == 200
        assert [row[0]["label"] for row in reply.json()] == test["predicted"].head(5).tolist()
    finally:
        client.__exit__(None, None, None)
