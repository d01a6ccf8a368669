"""Federated image classification and chat SFT in simulation (Flower's simulation runtime, Ray), on a tiny
timm CNN and a tiny Llama built in the tests: rounds complete, the run folder is an ordinary completed one
that `predict` (images) accepts, silo files carry decoded pixels exactly, and an SFT federation is judged
on held-out response loss against the base model, centralized training and each silo alone."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_chats, tiny_config
from tests.image.test_image import face_folder, faces, image_config, tiny_cnn  # noqa: F401 (fixtures)
from tests.sft.test_sft import sft_config, write_jsonl
from tunesmith.config import build_config
from tunesmith.errors import UserError

pytest.importorskip("flwr")


def test_image_silo_files_carry_pixels_exactly(tmp_path):
    from tunesmith.federate.client import read_silo, write_silo

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"image": [rng.integers(0, 256, (5, 4, c), dtype=np.uint8) for c in (1, 3)],
                         "label": ["a", "b"], "text": ["x/1.png", "y/2.png"]})
    back = read_silo(write_silo(rows, tmp_path / "s.silo.jsonl"), None, None)
    for a, b in zip(rows["image"], back["image"]):
        assert b.dtype == np.uint8 and b.shape == a.shape and np.array_equal(a, b)
    assert back["text"].tolist() == rows["text"].tolist()


def test_image_classification_federates_and_predict_accepts_the_run(face_folder, tiny_cnn, tmp_path):  # noqa: F811
    from tunesmith.cli import main
    from tunesmith.federate import federate

    cfg = image_config(face_folder, tiny_cnn, tmp_path / "runs", train={"learning_rate": 3e-2},
                       eval={"baselines": ["majority_class"]}, audit={"enabled": False})
    cfg["run_name"] = "run"
    cfg["federated"] = {"clients": 2, "rounds": 2, "local_epochs": 2, "compare": False}
    run = federate(build_config(cfg))
    fed = run.results["federated"]
    assert fed["transfer"] == "head"  # an image task's default: a CNN has no LoRA
    assert [r["round"] for r in fed["round_curve"]] == [0, 1, 2]
    assert all(r["clients_ok"] == 2 for r in fed["round_curve"][1:])
    assert json.loads((run.path / "status.json").read_text())["status"] == "completed"
    test = pd.read_csv(run.path / "test_predictions.csv")
    folder = tmp_path / "new"
    folder.mkdir()
    for ref in test["image"][:6]:
        (folder / ref.replace("/", "_")).write_bytes((face_folder / ref).read_bytes())
    assert main(["predict", str(run.path), "--input", str(folder), "--output", str(tmp_path / "p.csv")]) == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert len(out) == 6 and set(out["predicted"]) <= set(run.results["labels"])
    from tunesmith.export import export_run  # the later stages take the folder too: export (with its gate)

    exported = export_run(run.path, "onnx", output=tmp_path / "onnx")
    assert exported.refusal is None and exported.record["fp32"]["agreement"] == 1.0


def test_an_image_federation_refuses_lora_in_one_line(face_folder, tiny_cnn, tmp_path):  # noqa: F811
    from tunesmith.federate.entry import resolve_config

    cfg = image_config(face_folder, tiny_cnn, tmp_path / "runs")
    cfg["federated"] = {"transfer": "adapter"}
    with pytest.raises(UserError, match=r"federated.transfer.*image-classification federates head or full"):
        resolve_config(build_config(cfg))


def test_chat_sft_federates_a_lora_adapter_and_beats_the_base_model(tiny_lm, tmp_path):
    from safetensors.torch import load_file

    from tunesmith.federate import federate

    train = write_jsonl(tmp_path / "chat.jsonl", make_chats(96))
    cfg = sft_config(tiny_lm, train, tmp_path / "runs", method="auto", learning_rate=1e-1,
                     lora={"rank": 8, "alpha": 64, "dropout": 0.0})
    cfg["train"].pop("epochs")
    cfg["sft"]["eval_generations"] = 2
    cfg["federated"] = {"clients": 2, "rounds": 2, "local_epochs": 3}
    run = federate(build_config(cfg))
    res, fed = run.results, run.results["federated"]
    assert res["method"] == "lora" and fed["transfer"] == "adapter"
    adapter = load_file(str(run.path / "federation" / "global.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)  # only the adapter travels
    rounds = fed["round_curve"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    # the server scores held-out response loss, lower is better: the best round has the lowest loss
    best = [r for r in rounds if r["best"]][-1]
    assert best["validation"]["loss"] == min(r["validation"]["loss"] for r in rounds)
    assert res["validation"]["loss"] == pytest.approx(best["validation"]["loss"], rel=1e-4)
    comp = fed["comparison"]
    assert set(comp["arms"]) == {"base", "centralized", "silo-0", "silo-1"}
    assert comp["federated"]["test"]["loss"] == pytest.approx(res["test"]["loss"], rel=1e-4)
    assert comp["arms"]["base"]["test"]["loss"] == pytest.approx(res["test"]["base"]["loss"], rel=1e-4)
    vs_base = comp["arms"]["base"]["loss_reduction"]
    assert vs_base["low"] > 0 and vs_base["verdict"] == "better, and not by chance"
    assert comp["local_only"]["worst"] in ("silo-0", "silo-1") and "base model" in comp["verdict"]
    for name in ("config.yaml", "results.json", "report.html", "model", "adapter"):
        assert (run.path / name).exists(), name
    assert json.loads((run.path / "status.json").read_text())["status"] == "completed"
    from fastapi.testclient import TestClient  # ... and the chat server answers from the federated model

    from tests.serve.conftest import wait_until
    from tunesmith.serve import create_app

    with TestClient(create_app(run.path, max_new_tokens=8)) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
        reply = client.post("/v1/chat/completions", json={"model": run.path.name, "temperature": 0,
                                                          "messages": [{"role": "user", "content": "hello"}]})
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] >= 1


def test_an_sft_federation_refuses_a_label_partition_in_one_line(tiny_lm, tmp_path):
    from tunesmith.federate.entry import resolve_config

    cfg = sft_config(tiny_lm, tmp_path / "chat.jsonl", tmp_path / "runs")
    cfg["train"]["method"] = "auto"
    cfg["federated"] = {"partition": "dirichlet:0.5"}
    with pytest.raises(UserError, match=r"federated.partition.*no labels"):
        resolve_config(build_config(cfg))


def test_a_tabular_federation_is_refused_in_one_line(tmp_path):
    from tunesmith.federate.entry import resolve_config

    cfg = {"task": "tabular-classification", "data": {"train": str(tmp_path / "t.csv"), "label_column": "y"},
           "output_dir": str(tmp_path), "federated": {"clients": 2}}
    with pytest.raises(UserError, match=r"task = 'tabular-classification'.*federate supports text-classification, "
                                        r"image-classification, sft so far") as err:
        resolve_config(build_config(cfg))
    assert "\n" not in str(err.value)


def test_the_head_refit_is_on_for_classification_and_refused_where_there_is_no_head_or_dp_is_on(
        tiny_lm, tiny_model, tmp_path):
    from tunesmith.federate.entry import resolve_config

    text = tiny_config(tiny_model, tmp_path / "rows.csv", tmp_path / "runs", method="auto")
    text["federated"] = {"clients": 2}
    assert resolve_config(build_config(text)).federated.refit_head is True
    text["federated"]["dp"] = {"side": "server", "clip": 1.0, "noise_multiplier": 0.5}
    assert resolve_config(build_config(text)).federated.refit_head is False  # the statistics are not noised
    text["federated"]["refit_head"] = True
    with pytest.raises(UserError, match=r"federated.refit_head.*without DP noise"):
        resolve_config(build_config(text))
    chat = sft_config(tiny_lm, tmp_path / "chat.jsonl", tmp_path / "runs")
    chat["train"]["method"] = "auto"
    assert resolve_config(build_config(chat)).federated.refit_head is False
    chat["federated"] = {"refit_head": True}
    with pytest.raises(UserError, match=r"federated.refit_head.*no classifier head"):
        resolve_config(build_config(chat))
