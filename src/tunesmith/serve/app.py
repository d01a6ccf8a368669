"""`create_app(run_dir)`: a FastAPI app serving one finished run, usable in any ASGI stack.

Always on: /health/live, /health/ready (503 until a warm-up forward pass has completed), their
/v2 twins, and Prometheus /metrics. Then the run's own routes: classification (TEI /predict and
the Open Inference Protocol v2) or chat (OpenAI /v1). The model loads here, once; the warm-up and
every forward pass run in the batcher's worker thread, started by the app's lifespan, and the
lifespan's shutdown finishes the queued work before the process exits.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from tunesmith.errors import UserError
from tunesmith.serve import schemas
from tunesmith.serve.core import Server, ServeError
from tunesmith.serve.settings import ServeSettings

KINDS = {"text-classification": "text", "image-classification": "image", "sft": "chat"}


def _error_docs(openai: bool) -> dict:
    model = schemas.OpenAIError if openai else schemas.ErrorResponse
    docs = {404: "Unknown model name.", 413: "Request body too large.",
            422: "Invalid request, or an input that cannot be processed (the message names it).",
            429: "The queue is full; retry after the Retry-After header's seconds.",
            503: "Starting or shutting down.", 504: "No answer within the request timeout."}
    out = {code: {"model": model, "description": text} for code, text in docs.items()}
    out[429]["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    return out


def _load(run, kind: str, backend: str):
    if kind == "chat":
        if backend != "torch":
            raise UserError(f"serve --backend {backend}: chat (sft) runs are served with --backend torch only")
        from tunesmith.generate import ChatModel

        return ChatModel(run.path)
    from tunesmith.predict import load_predictor

    predictor = load_predictor(run.path, backend=backend)
    if backend == "onnx":
        from tunesmith.serve.onnx import for_serving

        return for_serving(predictor)
    return predictor


def create_app(run_dir: str | Path, settings: ServeSettings | None = None, **options):
    """The FastAPI app for a finished run. `settings` (or its fields as keyword arguments: max_batch,
    max_wait_ms, max_queue, timeout_s, max_body_bytes, max_item_chars, max_new_tokens, backend,
    api_keys) sets the limits; the model is loaded before this returns."""
    from fastapi import FastAPI

    from tunesmith import __version__
    from tunesmith.run import completed_run
    from tunesmith.serve.guard import OPEN_PATHS, GuardMiddleware
    from tunesmith.serve.metrics import MetricsMiddleware

    run = completed_run(run_dir)
    kind = KINDS.get(run.config.task)
    if kind is None:
        raise UserError(f"{run.path}: a {run.config.task} run; serve takes {', '.join(KINDS)} runs")
    settings = (settings or ServeSettings(**options)).resolved(kind)
    model = _load(run, kind, settings.backend)
    if kind == "chat":
        from tunesmith.serve.chat import add_routes, chat_batcher as make_batcher
        info: dict = {}
    else:
        from tunesmith.serve.classify import add_routes, classification_batcher as make_batcher, model_info
        info = model_info(run, model, settings.backend)
    server = Server(run.path.name, kind, settings, model, make_batcher, info=info)

    @asynccontextmanager
    async def lifespan(app):
        import gc

        import anyio

        server.start()
        # The model, tokenizer and app are loaded for good: move them out of the garbage collector's view.
        # Else each full collection walks them all while holding the GIL (measured: 37 ms for a MiniLM
        # ONNX app, 2 cores), and /health/live waited behind it under load (p99 51-55 ms above saturation,
        # 3-4 ms frozen: bench/RESULTS.md). Objects made later are collected; shutdown unfreezes.
        gc.collect()
        gc.freeze()
        yield
        await anyio.to_thread.run_sync(server.stop)
        gc.unfreeze()

    app = FastAPI(title=f"tunesmith: {server.name}", version=__version__, lifespan=lifespan,
                  description=f"Serving the {run.config.task} run {server.name!r} (tunesmith {__version__}).")
    app.state.server = server
    errors = _error_docs(kind == "chat")
    _add_health(app, server, errors)
    add_routes(app, server, errors)
    _add_error_handlers(app)
    if settings.api_keys:
        _document_auth(app, OPEN_PATHS)
    # the last added is the outermost: metrics see what the guard refuses
    app.add_middleware(GuardMiddleware, api_keys=settings.api_keys, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=server.metrics, routes_app=app)
    return app


def _add_health(app, server: Server, errors: dict) -> None:
    from fastapi import Response
    from fastapi.responses import JSONResponse

    # async: answered on the event loop itself. A plain def would wait for a thread of the pool (and the
    # GIL handed over twice) behind the traffic that loads the server, which is when a probe must be quick.
    async def live():
        return {"live": True}

    async def ready():
        reason = server.not_ready_reason()
        if reason is None:
            return {"ready": True}
        return JSONResponse({"ready": False, "detail": reason}, status_code=503, headers={"Retry-After": "1"})

    not_ready = {503: {"model": schemas.Ready, "description": "Not ready yet: loading or warming up."}}
    for prefix in ("", "/v2"):
        app.get(f"{prefix}/health/live", tags=["health"], response_model=schemas.Live,
                summary="The process answers (no auth)")(live)
        app.get(f"{prefix}/health/ready", tags=["health"], response_model=schemas.Ready, responses=not_ready,
                response_model_exclude_none=True,
                summary="The model has completed a warm-up forward pass (no auth)")(ready)

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text format."}},
             summary="Prometheus metrics (needs the API key when the server has one)")
    def metrics():
        body, content_type = server.metrics.exposition()
        return Response(body, media_type=content_type)


def _add_error_handlers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from tunesmith.serve.guard import error_body

    def answer(request, status: int, message: str, kind: str, headers: dict | None = None):
        from fastapi.responses import Response

        return Response(error_body(request.url.path, status, message, kind), status_code=status,
                        media_type="application/json", headers=headers)

    @app.exception_handler(ServeError)
    async def serve_error(request, err: ServeError):
        return answer(request, err.status, err.message, err.kind, err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, err: RequestValidationError):
        problems = err.errors()
        return answer(request, 422, validation_message(problems), "validation")

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(err.status_code, "http")
        return answer(request, err.status_code, str(err.detail), kind, getattr(err, "headers", None))


_FLAT_ERROR = {"type": "object", "required": ["error", "error_type"],
               "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}}}
_OPENAI_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "param": {}, "code": {}}}}}


def validation_message(problems: list[dict]) -> str:
    """One line from pydantic's errors: the most specific one, its place written like `inputs[3]`."""
    if not problems:
        return "body: invalid request"
    # a union (text or list of texts) reports one error per member; the deepest, not a type mismatch, says most
    first = max(problems, key=lambda p: (len(p["loc"]), p["type"] != "string_type"))
    if first["type"] == "json_invalid":
        return f"body: not valid JSON ({first.get('ctx', {}).get('error', 'decode error')} at character " \
               f"{first['loc'][-1]})"
    where = ""
    for part in first["loc"][1:]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part.isidentifier():  # skip the union members' tags, e.g. list[constrained-str]
            where += f".{part}"
    return f"{where.lstrip('.') or 'body'}: {first['msg']}"


def _document_auth(app, open_paths) -> None:
    """Add the bearer scheme and the 401 answer to the OpenAPI schema, on every route but the open ones."""
    plain = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = plain()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
                "type": "http", "scheme": "bearer"}
            for path, operations in schema["paths"].items():
                if path in open_paths:
                    continue
                body = _OPENAI_ERROR if path.startswith("/v1/") else _FLAT_ERROR
                for op in operations.values():
                    op["security"] = [{"bearer": []}]
                    op["responses"]["401"] = {"description": "Missing or invalid bearer API key.",
                                              "content": {"application/json": {"schema": body}}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
