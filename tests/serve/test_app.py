"""The classification app through FastAPI's test client: TEI /predict, Open Inference Protocol v2,
health, metrics, auth, limits, batching, shedding and timeouts, on a tiny finished text run."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.serve.conftest import Gate, wait_until
from tunesmith.errors import UserError
from tunesmith.serve import create_app, read_api_keys

KEY = "k3y-0123456789abcdef"
TEXTS = ["the food was great and superb", "awful and broken service", "it was a nice day"]


def started(app) -> TestClient:
    client = TestClient(app)
    client.__enter__()
    wait_until(lambda: client.get("/health/ready").status_code == 200, "the warm-up")
    return client


@pytest.fixture(scope="module")
def client(text_run):
    c = started(create_app(text_run))
    yield c
    c.__exit__(None, None, None)


def test_predict_gives_the_calibrated_probabilities_of_predict(client, text_run):
    from tunesmith.predict import predict

    expected = predict(text_run, TEXTS)
    one = client.post("/predict", json={"inputs": TEXTS[0]})
    assert one.status_code == 200
    assert one.json() == [{"label": expected["label"][0], "score": pytest.approx(expected["probability"][0], abs=1e-5)}]
    many = client.post("/predict", json={"inputs": TEXTS}).json()
    assert [row[0]["label"] for row in many] == expected["label"].tolist() == ["pos", "neg", "pos"]
    assert [row[0]["score"] for row in many] == pytest.approx(expected["probability"].tolist(), abs=1e-5)
    every = client.post("/predict", json={"inputs": TEXTS, "return_all_scores": True}).json()
    for row, top in zip(every, many):
        scores = [s["score"] for s in row]
        assert {s["label"] for s in row} == {"pos", "neg"} and scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5) and row[0] == top[0]


def test_open_inference_protocol_metadata_and_infer(client, text_run):
    name = text_run.name
    meta = client.get(f"/v2/models/{name}").json()
    splits = json.loads((text_run / "splits.json").read_text())
    results = json.loads((text_run / "results.json").read_text())
    params = meta["parameters"]
    assert meta["name"] == name and params["labels"] == ["neg", "pos"] and params["served_file"] == "model/"
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert params["fingerprint"]["test"] == {"rows": splits["test"]["rows"], "sha256": splits["test"]["sha256"]}
    assert params["metrics"]["accuracy"] == results["test"]["accuracy"]
    assert params["metrics"]["intervals"]["accuracy"]["low"] == results["test"]["ci"]["accuracy"]["low"]
    body = {"id": "r1", "inputs": [{"name": "text", "shape": [3, 1], "datatype": "BYTES", "data": TEXTS}]}
    out = client.post(f"/v2/models/{name}/infer", json=body).json()
    tensors = {t["name"]: t for t in out["outputs"]}
    assert out["model_name"] == name and out["id"] == "r1"
    assert tensors["label"]["data"] == ["pos", "neg", "pos"] and tensors["probabilities"]["shape"] == [3, 2]
    probs = np.array(tensors["probabilities"]["data"]).reshape(3, 2)
    top = [row[0]["score"] for row in client.post("/predict", json={"inputs": TEXTS}).json()]
    assert probs.max(1) == pytest.approx(top, abs=1e-6) and tensors["score"]["data"] == pytest.approx(top, abs=1e-6)
    only = client.post(f"/v2/models/{name}/infer", json={**body, "outputs": [{"name": "label"}]}).json()
    assert [t["name"] for t in only["outputs"]] == ["label"]
    assert client.get(f"/v2/models/{name}/ready").json() == {"name": name, "ready": True}
    from tunesmith import __version__

    assert client.get("/v2").json() == {"name": "tunesmith", "version": __version__, "extensions": []}
    # refusals
    wrong = client.post("/v2/models/other/infer", json=body)
    assert wrong.status_code == 404 and "serves" in wrong.json()["error"]
    assert client.get("/v2/models/..%2F..%2Fetc").status_code == 404
    bad_shape = client.post(f"/v2/models/{name}/infer", json={"inputs": [{**body["inputs"][0], "shape": [2]}]})
    assert bad_shape.status_code == 422 and "shape [2] does not match its 3 data elements" in bad_shape.json()["error"]
    bad_out = client.post(f"/v2/models/{name}/infer", json={**body, "outputs": [{"name": "logits"}]})
    assert bad_out.status_code == 422 and "unknown output 'logits'" in bad_out.json()["error"]


def test_ready_is_503_until_the_warm_up_forward_pass(text_run):
    app = create_app(text_run)
    cold = TestClient(app)  # no lifespan: the worker has not started, nothing has run
    assert cold.get("/health/live").json() == {"live": True}
    assert cold.get("/v2/health/live").status_code == 200
    for path in ("/health/ready", "/v2/health/ready"):
        r = cold.get(path)
        assert r.status_code == 503 and r.json() == {"ready": False, "detail": "not started"}
    assert cold.post("/predict", json={"inputs": "good"}).status_code == 503
    gate = Gate(app.state.server.model)  # holds the warm-up forward pass
    with TestClient(app) as warm:
        wait_until(gate.entered.is_set, "the warm-up pass to start")
        r = warm.get("/health/ready")
        assert r.status_code == 503 and r.json() == {"ready": False, "detail": "warming up"}
        assert warm.get("/health/live").status_code == 200 and "tunesmith_ready 0.0" in warm.get("/metrics").text
        gate.release()
        wait_until(lambda: warm.get("/health/ready").status_code == 200, "the warm-up")
        assert warm.get("/v2/health/ready").json() == {"ready": True}
        assert "tunesmith_ready 1.0" in warm.get("/metrics").text


@pytest.mark.parametrize("body, status, message", [
    ({"inputs": ["fine", "x" * 10_001]}, 422, "inputs[1]: String should have at most 10000 characters"),
    ({"inputs": []}, 422, "inputs: List should have at least 1 item"),
    ({"inputs": ["a"] * 33}, 422, "inputs: List should have at most 32 items"),
    ({"text": "no inputs"}, 422, "inputs: Field required"),
    ({"inputs": 7}, 422, "inputs"),
])
def test_bad_requests_get_422_naming_the_item(client, body, status, message):
    r = client.post("/predict", json=body)
    assert r.status_code == status and r.json()["error_type"] == "validation"
    assert r.json()["error"].startswith(message)


def test_body_limit_413_by_length_and_while_reading(client):
    big = json.dumps({"inputs": ["word " * 1000] * 300}).encode()  # ~1.5 MB, over the 1 MiB default
    r = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json() == {"error": "request body larger than 1048576 bytes",
                                                  "error_type": "payload_too_large"}

    def chunks():  # no Content-Length: the limit is enforced as the body arrives
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
    assert client.post("/predict", content=chunks(), headers={"content-type": "application/json"}).status_code == 413
    bad_json = client.post("/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and bad_json.json()["error"].startswith("body: not valid JSON")


def test_bearer_auth_guards_everything_but_health(text_run, caplog):
    app = create_app(text_run, api_keys=[KEY, "another-key-0123456789"])
    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        for path in ("/health/live", "/v2/health/live", "/health/ready", "/v2/health/ready", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        for headers in ({}, {"Authorization": f"Bearer {KEY}x"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": KEY}):
            r = c.post("/predict", json={"inputs": "good"}, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", headers
            assert c.get("/metrics", headers=headers).status_code == 401
            assert c.get(f"/v2/models/{text_run.name}", headers=headers).status_code == 401
        for key in (KEY, "another-key-0123456789"):
            ok = {"Authorization": f"Bearer {key}"}
            assert c.post("/predict", json={"inputs": "good"}, headers=ok).status_code == 200
        metrics = c.get("/metrics", headers=ok)
        assert metrics.status_code == 200 and 'status="401"' in metrics.text
        schema = c.get("/openapi.json").json()
        assert schema["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
        assert schema["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
        assert "security" not in schema["paths"]["/health/live"]["get"]
        everything = metrics.text + json.dumps(schema) + caplog.text
        assert KEY not in everything and "another-key" not in everything


def test_api_key_file_rules(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(f"# serving keys\n\n{KEY}\n  another-key-0123456789  \n")
    assert read_api_keys(keys) == [KEY, "another-key-0123456789"]
    keys.write_text("# none\n\n")
    with pytest.raises(UserError, match="no API key found"):
        read_api_keys(keys)
    keys.write_text(f"{KEY}\nshort\n")
    with pytest.raises(UserError, match="the key on line 2 is shorter than 16 characters"):
        read_api_keys(keys)
    with pytest.raises(UserError, match="cannot read the API key file"):
        read_api_keys(tmp_path / "missing")


def post_in_thread(client, results: dict, key: str, inputs) -> threading.Thread:
    def go():
        results[key] = client.post("/predict", json={"inputs": inputs})
    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_concurrent_requests_share_one_forward_pass_and_health_stays_responsive(text_run):
    app = create_app(text_run, max_batch=8, max_wait_ms=0)
    server = app.state.server
    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        gate = Gate(server.model)
        results: dict = {}
        threads = [post_in_thread(c, results, "first", TEXTS[0])]
        wait_until(gate.entered.is_set, "the first forward pass")
        threads += [post_in_thread(c, results, f"r{i}", text) for i, text in enumerate(TEXTS)]
        threads.append(post_in_thread(c, results, "pair", ["good", "bad"]))
        wait_until(lambda: server.batcher.depth == 5, "five queued inputs")
        # the worker is busy; the event loop is not
        assert c.get("/health/live").status_code == 200 and c.get("/health/ready").status_code == 200
        assert "tunesmith_queue_depth 5.0" in c.get("/metrics").text
        gate.release()
        for t in threads:
            t.join(60)
        assert gate.sizes == [1, 5]  # everything queued behind the first pass ran as one batch
        assert all(r.status_code == 200 for r in results.values())
        assert [results[f"r{i}"].json()[0]["label"] for i in range(3)] == ["pos", "neg", "pos"]
        assert [row[0]["label"] for row in results["pair"].json()] == ["pos", "neg"]
        metrics = c.get("/metrics").text
        assert "tunesmith_batch_size_count 2.0" in metrics and "tunesmith_batch_size_sum 6.0" in metrics


def test_a_full_queue_sheds_with_429_and_retry_after(text_run):
    app = create_app(text_run, max_batch=1, max_queue=2, max_wait_ms=0)
    server = app.state.server
    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        gate = Gate(server.model)
        results: dict = {}
        threads = [post_in_thread(c, results, "running", "good")]
        wait_until(gate.entered.is_set, "the first forward pass")
        threads += [post_in_thread(c, results, f"queued{i}", "bad") for i in range(2)]
        wait_until(lambda: server.batcher.depth == 2, "a full queue")
        shed = c.post("/predict", json={"inputs": "one too many"})
        assert shed.status_code == 429 and int(shed.headers["retry-after"]) >= 1
        assert shed.json()["error_type"] == "overloaded"
        gate.release()
        for t in threads:
            t.join(60)
        assert [results[k].status_code for k in ("running", "queued0", "queued1")] == [200, 200, 200]
        metrics = c.get("/metrics").text
        assert 'tunesmith_shed_requests_total{route="/predict"} 1.0' in metrics
        assert 'tunesmith_requests_total{method="POST",route="/predict",status="429"} 1.0' in metrics


def test_a_request_past_the_timeout_gets_504_and_its_queued_inputs_are_dropped(text_run):
    app = create_app(text_run, max_batch=4, timeout_s=0.2, max_wait_ms=0)
    server = app.state.server
    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        gate = Gate(server.model)
        late = c.post("/predict", json={"inputs": "good"})  # its forward pass is held past the timeout
        assert late.status_code == 504 and late.json()["error_type"] == "timeout"
        dropped = c.post("/predict", json={"inputs": ["queued", "then", "abandoned"]})
        assert dropped.status_code == 504
        gate.release()
        wait_until(lambda: server.batcher.depth == 0, "the queue to empty")
        assert c.post("/predict", json={"inputs": "good"}).status_code == 200
        assert gate.sizes == [1, 1]  # the abandoned inputs never reached the model


def test_one_failing_input_does_not_fail_the_requests_batched_with_it(text_run):
    app = create_app(text_run, max_batch=8, max_wait_ms=0)
    server = app.state.server
    with TestClient(app) as c:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        gate = Gate(server.model, fail_on="boom")
        results: dict = {}
        threads = [post_in_thread(c, results, "first", "good")]
        wait_until(gate.entered.is_set, "the first forward pass")
        threads += [post_in_thread(c, results, "healthy", ["nice", "bad"]),
                    post_in_thread(c, results, "poisoned", ["fine", "boom"])]
        wait_until(lambda: server.batcher.depth == 4, "both requests queued")
        gate.release()
        for t in threads:
            t.join(60)
        assert gate.sizes[:2] == [1, 4] and sorted(gate.sizes[2:]) == [1, 1, 1, 1]  # the batch, then each alone
        assert results["healthy"].status_code == 200
        assert [row[0]["label"] for row in results["healthy"].json()] == ["pos", "neg"]
        assert results["poisoned"].status_code == 500
        assert results["poisoned"].json()["error"] == "inputs[1]: the forward pass failed (RuntimeError)"


def test_metrics_label_routes_not_paths_and_never_hold_request_text(text_run):
    first, second = create_app(text_run), create_app(text_run)  # one registry each: no clash
    with TestClient(first) as c, TestClient(second) as other:
        wait_until(lambda: c.get("/health/ready").status_code == 200, "the warm-up")
        c.post("/predict", json={"inputs": "zebracorn quokka"})
        c.get("/v2/models/secret-zebracorn")
        c.get("/no/such/zebracorn/path")
        text = c.get("/metrics").text
        assert 'tunesmith_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
        assert 'tunesmith_request_duration_seconds_count{method="POST",route="/predict",status="200"} 1.0' in text
        assert 'route="/v2/models/{name}",status="404"' in text and 'route="unmatched",status="404"' in text
        assert "zebracorn" not in text and "quokka" not in text
        assert "tunesmith_batch_size_bucket" in text and "tunesmith_queue_depth 0.0" in text
        assert 'route="/predict"' not in other.get("/metrics").text


def test_serve_refuses_what_it_cannot_serve_with_one_line(text_run, tmp_path, capsys):
    from tunesmith.cli import main

    for args, message in [
        ([str(tmp_path)], "not a tunesmith run folder (no config.yaml)"),
        ([str(text_run), "--backend", "tensorrt"], "backend 'tensorrt': expected one of"),
        ([str(text_run), "--max-queue", "4"], "--max-queue 4: expected at least --max-batch (32)"),
        ([str(text_run), "--api-key-file", str(tmp_path / "nokeys")], "cannot read the API key file"),
    ]:
        capsys.readouterr()
        assert main(["serve", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_running_app_keeps_its_loaded_objects_out_of_full_collections_and_gives_them_back_at_shutdown(text_run):
    """gc.freeze() at start-up: a full collection no longer walks the model and app while holding the GIL
    (what kept /health/live waiting under load: bench/RESULTS.md); shutdown unfreezes them."""
    import gc

    app = create_app(text_run)
    model = app.state.server.model
    with TestClient(app) as c:
        assert c.get("/health/live").status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 0 and not any(o is model for o in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0
