"""The server runs an ONNX export (`--backend onnx`) with the same batching, and answers as the PyTorch model does."""
from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import wait_until
from tunesmith.serve import create_app

# lengths from 1 to ~40 tokens, so a batch is split into several length groups
TEXTS = ["the food was great and superb", "awful and broken service", "it was a nice day", "meh sad staff", "ok",
         "the staff were friendly, the room was clean, the breakfast was superb and I would come back again "
         "next summer with my family and friends", "broken", "nice happy day and great food and nice people"]


@pytest.fixture(scope="module")
def exported(text_run):
    from tunesmith.export import export_run

    export_run(text_run, "onnx", overwrite=True)
    return text_run


def served(run, backend: str) -> tuple[list, list, dict, list[int]]:
    """/predict on all TEXTS in one request and on each alone; the metadata; the texts per forward pass."""
    app = create_app(run, backend=backend)
    model, sizes = app.state.server.model, []
    logits = model.logits
    model.logits = lambda inputs, *a, **k: sizes.append(len(inputs)) or logits(inputs, *a, **k)
    with TestClient(app) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
        sizes.clear()  # the warm-up's pass
        together = client.post("/predict", json={"inputs": TEXTS}).json()
        alone = [client.post("/predict", json={"inputs": t}).json() for t in TEXTS]
        meta = client.get("/v2/models/" + run.name).json()
    return together, alone, meta, sizes


def test_onnx_backend_gives_the_torch_backends_labels_batched_and_alone(exported):
    onnx_batch, onnx_alone, meta, sizes = served(exported, "onnx")
    torch_batch, torch_alone, _, _ = served(exported, "torch")
    labels = [row[0]["label"] for row in torch_batch]
    assert len(set(labels)) == 2  # both classes occur: a constant answer would not pass
    assert [row[0]["label"] for row in onnx_batch] == labels
    assert [row[0]["label"] for row in onnx_alone] == [row[0]["label"] for row in torch_alone] == labels
    assert [row[0]["score"] for row in onnx_batch] == pytest.approx([row[0]["score"] for row in torch_batch],
                                                                    abs=1e-4)
    # the exported graph answered, not the PyTorch model
    assert meta["platform"] == "tunesmith_onnx" and meta["parameters"]["served_file"] == "export/model.onnx"
    # the request's 8 texts ran as a few passes of similar length (several, none of all 8), then 8 alone
    groups, singles = sizes[:-len(TEXTS)], sizes[-len(TEXTS):]
    assert sum(groups) == len(TEXTS) and 2 <= len(groups) < len(TEXTS) and singles == [1] * len(TEXTS)


def test_onnx_session_is_built_once_for_serving_not_per_request(exported, monkeypatch):
    import onnxruntime as ort

    from tunesmith.serve.onnx import usable_cores

    app = create_app(exported, backend="onnx")
    session = app.state.server.model.session
    options = session.get_session_options()
    assert options.intra_op_num_threads == usable_cores()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    built = []
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: built.append(a))
    with TestClient(app) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
        for _ in range(3):
            assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
    assert built == [] and app.state.server.model.session is session


def test_onnx_backend_serves_the_int8_file_when_the_export_chose_it(exported, tmp_path):
    run = tmp_path / exported.name
    shutil.copytree(exported, run)
    export = run / "export"
    # stand-in for an int8 search that kept a setting: the manifest names model.int8.onnx
    shutil.copy(export / "model.onnx", export / "model.int8.onnx")
    manifest = json.loads((export / "onnx_config.json").read_text())
    (export / "onnx_config.json").write_text(json.dumps({**manifest, "model_file": "model.int8.onnx"}))
    (export / "model.onnx").unlink()  # serving the fp32 file now would fail
    with TestClient(create_app(run, backend="onnx")) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
        assert client.post("/predict", json={"inputs": TEXTS}).status_code == 200
        meta = client.get(f"/v2/models/{run.name}").json()
    assert meta["parameters"]["served_file"] == "export/model.int8.onnx"
