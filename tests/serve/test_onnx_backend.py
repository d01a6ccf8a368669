"""The server runs an ONNX export (`--backend onnx`) and answers as the PyTorch model does."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import wait_until
from tunesmith.serve import create_app

TEXTS = ["the food was great and superb", "awful and broken service", "it was a nice day", "meh sad staff"]


def test_onnx_backend_serves_the_exported_model(text_run):
    from tunesmith.export import export_run
    from tunesmith.predict import predict

    export_run(text_run, "onnx", overwrite=True)
    expected = predict(text_run, TEXTS)  # the PyTorch model
    with TestClient(create_app(text_run, backend="onnx")) as client:
        wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
        answer = client.post("/predict", json={"inputs": TEXTS}).json()
        meta = client.get("/v2/models/" + text_run.name).json()
    assert [row[0]["label"] for row in answer] == expected["label"].tolist()
    assert [row[0]["score"] for row in answer] == pytest.approx(expected["probability"].tolist(), abs=1e-4)
    assert meta["platform"] == "tunesmith_onnx"  # the exported graph answered, not the PyTorch model
