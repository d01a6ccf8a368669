"""Classification routes: text-embeddings-inference's `POST /predict` and the Open Inference Protocol
v2 (`GET /v2/models/{name}`, `POST /v2/models/{name}/infer`), on one batched, calibrated model."""
import base64
import binascii
import io
import json
from typing import Union

import numpy as np

from tunesmith.serve import schemas
from tunesmith.serve.batcher import Batcher, ItemError
from tunesmith.serve.core import Server, ServeError

MAX_PIXELS = 25_000_000  # refuse larger images before decoding them (decompression bombs)
IMAGE_FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"]  # never EPS: PIL would call Ghostscript


def decode_image(data: str, max_side: int) -> np.ndarray:
    """A base64-encoded image file as uint8 H×W×C (longest side at most max_side); ItemError if not one."""
    from PIL import Image

    from tunesmith.data.images import shrink, to_uint8

    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ItemError("not base64 (expected an image file encoded in base64)") from None
    try:
        with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as img:
            if img.width * img.height > MAX_PIXELS:
                raise ItemError(f"image of {img.width}x{img.height} pixels; expected at most {MAX_PIXELS} pixels")
            img.load()
            return shrink(to_uint8(img), max_side)
    except ItemError:
        raise
    except Exception as err:  # PIL raises many types for damaged or unknown files
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ItemError(f"not a readable image ({reason}; formats: {', '.join(IMAGE_FORMATS)})") from None


def classification_batcher(server: Server) -> Batcher:
    from tunesmith.evaluate.metrics import softmax
    from tunesmith.predict import calibrated
    from tunesmith.serve.grouping import PASS_OVERHEAD_TOKENS, grouped_logits

    predictor, s = server.model, server.settings
    image = predictor.input_name == "image"
    warm = [np.zeros((32, 32, 3), dtype=np.uint8)] if image else ["warm up"]
    overhead = PASS_OVERHEAD_TOKENS[s.backend]

    def warmup() -> None:
        calibrated(predictor, warm)
        server.metrics.ready.set(1)

    def run_batch(inputs: list) -> list:
        if image:  # images are resized to one shape: nothing to gain from grouping
            return list(calibrated(predictor, inputs))
        # texts: one forward pass per group of similar length, so short texts are not padded to a long one
        return list(softmax(grouped_logits(predictor, inputs, overhead) / predictor.temperature))

    return Batcher(run_batch, s.max_batch, s.max_wait_ms / 1000,
                   s.max_queue, prepare=(lambda data: decode_image(data, predictor.max_side)) if image else None,
                   warmup=warmup, observe=server.metrics.observe_batch, on_depth=server.metrics.queue_depth.set,
                   wait_budget_s=0.8 * s.timeout_s)


def model_info(run, predictor, backend: str) -> dict:
    """The run's identity for the metadata route: labels, split fingerprints, test metrics, the served file."""
    from tunesmith.serve.onnx import served_file

    splits = json.loads((run.path / "splits.json").read_text()) if (run.path / "splits.json").is_file() else {}
    test = run.results.get("test") or {}
    metrics = None
    if "accuracy" in test:
        verdict = (run.results.get("comparison") or {}).get("accuracy", {}).get("verdict")
        metrics = {"n": test["n"], "accuracy": test["accuracy"], "macro_f1": test["macro_f1"],
                   "intervals": {k: {f: v[f] for f in ("value", "low", "high", "level")}
                                 for k, v in test.get("ci", {}).items()},
                   "versus_best_baseline": verdict}
    return {"task": run.config.task, "labels": list(predictor.labels),
            "calibration_temperature": float(predictor.temperature),
            "fingerprint": {k: {"rows": v["rows"], "sha256": v["sha256"]} for k, v in splits.items()},
            "metrics": metrics, "backend": backend, "served_file": served_file(predictor, backend)}


def _scores(row: np.ndarray, labels: list[str], every: bool) -> list[dict]:
    order = np.argsort(-row) if every else [int(row.argmax())]
    return [{"label": labels[i], "score": float(row[i])} for i in order]


def add_routes(app, server: Server, errors: dict) -> None:
    """POST /predict, GET /v2, GET /v2/models/{name}[/ready], POST /v2/models/{name}/infer."""
    from fastapi import Path

    s, predictor = server.settings, server.model
    labels, input_name = list(predictor.labels), predictor.input_name
    PredictRequest = schemas.predict_request(s.max_batch, s.max_item_chars, input_name)
    InferRequest = schemas.infer_request(s.max_batch, s.max_item_chars, input_name)
    work = {k: errors[k] for k in (413, 422, 429, 503, 504) if k in errors}
    named = {**work, 404: errors[404]}
    # the one name this server answers to: stated in the schema, so clients and fuzzers can know it
    Name = Path(description="The served model's name (the run folder's name).",
                json_schema_extra={"enum": [server.name]})

    @app.post("/predict", tags=["classification"], responses=work,
              response_model=Union[list[schemas.Score], list[list[schemas.Score]]],
              summary="Label and calibrated probability of one input or a list (text-embeddings-inference shape)")
    async def predict(body: PredictRequest):  # type: ignore[valid-type]
        single = isinstance(body.inputs, str)
        rows = await server.run([body.inputs] if single else body.inputs, "/predict")
        out = [_scores(row, labels, body.return_all_scores) for row in rows]
        return out[0] if single else out

    @app.get("/v2", tags=["open inference protocol"], response_model=schemas.ServerMetadata,
             summary="Server metadata")
    async def server_metadata():
        from tunesmith import __version__

        return {"name": "tunesmith", "version": __version__, "extensions": []}

    def check_name(name: str) -> None:
        if name != server.name:  # compared, never used as a path
            raise ServeError(404, f"model {name!r} is not served here; this server serves {server.name!r}",
                             "not_found")

    @app.get("/v2/models/{name}", tags=["open inference protocol"], response_model=schemas.ModelMetadata,
             responses={404: errors[404]}, summary="Labels, input spec, run fingerprint and test metrics")
    async def model_metadata(name: str = Name):
        check_name(name)
        info = server.info
        return {"name": server.name, "versions": ["1"], "platform": f"tunesmith_{info['backend']}",
                "inputs": [{"name": input_name, "datatype": "BYTES", "shape": [-1]}],
                "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]},
                            {"name": "score", "datatype": "FP32", "shape": [-1]},
                            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]}],
                "parameters": {k: info[k] for k in ("task", "labels", "calibration_temperature", "fingerprint",
                                                    "metrics", "served_file")}}

    @app.get("/v2/models/{name}/ready", tags=["open inference protocol"], response_model=schemas.ModelReady,
             responses={404: errors[404]}, summary="Whether the model has completed its warm-up")
    async def model_ready(name: str = Name):
        check_name(name)
        return {"name": server.name, "ready": server.not_ready_reason() is None}

    @app.post("/v2/models/{name}/infer", tags=["open inference protocol"], response_model=schemas.InferResponse,
              response_model_exclude_none=True, responses=named,
              summary="Classify a BYTES tensor of texts (or base64 images)")
    async def infer(body: InferRequest, name: str = Name):  # type: ignore[valid-type]
        check_name(name)
        tensor = body.inputs[0]
        n = len(tensor.data)
        if tensor.shape not in ([n], [n, 1]):
            raise ServeError(422, f"inputs[0].shape {tensor.shape} does not match its {n} data elements; "
                             f"expected [{n}] or [{n}, 1]", "validation")
        wanted = [o.name for o in body.outputs] if body.outputs else ["label", "score", "probabilities"]
        unknown = [w for w in wanted if w not in ("label", "score", "probabilities")]
        if unknown:
            raise ServeError(422, f"outputs: unknown output {unknown[0]!r}; expected label, score or probabilities",
                             "validation")
        rows = np.stack(await server.run(tensor.data, "/v2/models/{name}/infer", "inputs[0].data"))
        tensors = {"label": {"datatype": "BYTES", "shape": [n], "data": [labels[i] for i in rows.argmax(1)]},
                   "score": {"datatype": "FP32", "shape": [n], "data": rows.max(1).astype(float).tolist()},
                   "probabilities": {"datatype": "FP32", "shape": [n, len(labels)],
                                     "data": rows.astype(float).ravel().tolist()}}
        return {"model_name": server.name, "model_version": "1", "id": body.id,
                "outputs": [{"name": w, **tensors[w]} for w in wanted]}
