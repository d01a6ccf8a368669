"""Serving an image-classification run: base64 image files in, the same calibrated predictions as
`tunesmith predict`, and undecodable images failing alone inside a shared batch."""
from __future__ import annotations

import base64
import threading

import pytest
from fastapi.testclient import TestClient

from tests.image.test_image import face_folder, faces, image_config, tiny_cnn  # noqa: F401 (fixtures)
from tests.serve.conftest import Gate, wait_until
from tunesmith.serve import create_app


@pytest.fixture(scope="module")
def image_run(face_folder, tiny_cnn, tmp_path_factory):  # noqa: F811
    from tunesmith.config import build_config
    from tunesmith.run import fine_tune

    cfg = image_config(face_folder, tiny_cnn, tmp_path_factory.mktemp("serve-image") / "runs",
                       image={"freeze_epochs": 0}, train={"epochs": 1})
    return fine_tune(build_config(cfg)).path


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_images_in_base64_get_the_predictions_of_predict(image_run, face_folder):  # noqa: F811
    from tunesmith.predict import predict_images

    files = [face_folder / "face" / "000.png", face_folder / "other" / "001.png"]
    expected = predict_images(image_run, files)
    app = create_app(image_run)
    server = app.state.server
    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        got = c.post("/predict", json={"inputs": [b64(f) for f in files]}).json()
        assert [row[0]["label"] for row in got] == expected["label"].tolist()
        assert [row[0]["score"] for row in got] == pytest.approx(expected["probability"].tolist(), abs=1e-5)
        meta = c.get(f"/v2/models/{image_run.name}").json()
        assert meta["inputs"][0]["name"] == "image" and meta["parameters"]["task"] == "image-classification"

        gate = Gate(server.model)
        results: dict = {}

        def post(key, inputs):
            results[key] = c.post("/predict", json={"inputs": inputs})
        threads = [threading.Thread(target=post, args=("first", b64(files[0])))]
        threads[0].start()
        wait_until(gate.entered.is_set, "the first forward pass")
        eps = base64.b64encode(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n").decode()
        threads += [threading.Thread(target=post, args=("healthy", [b64(f) for f in files])),
                    threading.Thread(target=post, args=("not base64", [b64(files[0]), "%%% not base64 %%%"])),
                    threading.Thread(target=post, args=("eps", eps))]
        for t in threads[1:]:
            t.start()
        wait_until(lambda: server.batcher.depth == 5, "the requests to queue")
        gate.release()
        for t in threads:
            t.join(60)
        assert gate.sizes == [1, 3]  # the decodable images ran together; the others failed in decoding
        assert [row[0]["label"] for row in results["healthy"].json()] == expected["label"].tolist()
        bad = results["not base64"]
        assert bad.status_code == 422 and bad.json()["error"].startswith("inputs[1]: not base64")
        assert results["eps"].status_code == 422 and results["eps"].json()["error"].startswith(
            "inputs: not a readable image")


def test_image_app_conforms_to_its_schema(image_run, monkeypatch):
    """The image app's schema fuzzed like the text app's (test_openapi): whatever arrives as an image
    (random text, non-base64, base64 of something else) gets no 5xx and a documented answer."""
    from tests.serve.test_openapi import fuzz
    from tunesmith.serve import classify

    decoded = []
    decode = classify.decode_image
    monkeypatch.setattr(classify, "decode_image", lambda data, side: decoded.append(data) or decode(data, side))
    app = create_app(image_run, max_item_chars=4000, max_batch=4)
    seen = fuzz(app, examples=20)
    assert {"POST /predict", "POST /v2/models/{name}/infer", "GET /v2/models/{name}"} <= set(seen)
    assert len(decoded) > 5  # generated inputs got past validation into the image decoder
