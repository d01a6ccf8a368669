"""OpenAI-compatible chat routes for an SFT run: `POST /v1/chat/completions` (with server-sent events
when `stream` is true) and `GET /v1/models`.

Generation runs in the batcher's worker thread, one conversation at a time, and ends at the run's
checked end-of-turn token (generate.ChatModel). Streamed pieces cross to the event loop through an
asyncio queue; a client that disconnects stops its generation at the next token.
"""
import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from tunesmith.serve import schemas
from tunesmith.serve.batcher import Batcher, ItemError
from tunesmith.serve.core import Server, ServeError, item_error

ROUTE = "/v1/chat/completions"


@dataclass
class ChatJob:
    messages: list[dict]
    max_tokens: int
    temperature: float
    stop: list[str]
    seed: int | None
    on_text: object = None  # callable(str) in the worker thread, for streaming
    cancel: threading.Event = field(default_factory=threading.Event)
    prompt: list[int] | None = None


def chat_batcher(server: Server) -> Batcher:
    model, s = server.model, server.settings

    def prepare(job: ChatJob) -> ChatJob:
        job.prompt = model.prompt_ids(job.messages)
        if len(job.prompt) + job.max_tokens > model.context:
            raise ItemError(f"the conversation is {len(job.prompt)} tokens; with max_tokens {job.max_tokens} it "
                            f"passes the model's context of {model.context} tokens")
        return job

    def generate(jobs: list[ChatJob]) -> list:
        return [model.complete(j.prompt, j.max_tokens, j.temperature, j.stop, j.seed, j.on_text, j.cancel.is_set)
                for j in jobs]

    def warmup() -> None:
        model.complete(model.prompt_ids([{"role": "user", "content": "hello"}]), 1)
        server.metrics.ready.set(1)

    # one conversation per forward pass: the queue bound and timeout still apply
    return Batcher(generate, 1, 0.0, s.max_queue, prepare=prepare, warmup=warmup,
                   observe=server.metrics.observe_batch, on_depth=server.metrics.queue_depth.set,
                   wait_budget_s=0.8 * s.timeout_s)


def _text(content) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


def _sse(payload: dict | str) -> str:
    return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"


def add_routes(app, server: Server, errors: dict) -> None:
    """GET /v1/models and POST /v1/chat/completions."""
    from fastapi.responses import StreamingResponse

    s = server.settings
    ChatRequest = schemas.chat_request(s.max_item_chars, s.max_new_tokens, server.name)
    created = int(time.time())

    @app.get("/v1/models", tags=["openai"], response_model=schemas.ModelList, summary="The served model")
    async def list_models():
        return {"data": [{"id": server.name, "created": created, "owned_by": "tunesmith"}]}

    # before OpenAPI 3.2 (FastAPI writes 3.1), the schema of an event stream describes one event
    event = {"type": "object", "required": ["data"], "description": "With stream: one server-sent event.",
             "properties": {"event": {"type": "string"}, "id": {"type": "string"},
                            "data": {"type": "string", "description": "A chat.completion.chunk in JSON; the last "
                                     "event's data is [DONE]."}}}
    stream_doc = {"text/event-stream": {"schema": event}}

    @app.post(ROUTE, tags=["openai"], response_model=schemas.ChatCompletion,
              responses={200: {"content": stream_doc}, **{k: errors[k] for k in (404, 413, 422, 429, 503, 504)}},
              summary="Answer a conversation (OpenAI chat completions; stream with server-sent events)")
    async def chat_completions(body: ChatRequest):  # type: ignore[valid-type]
        if body.model != server.name:
            raise ServeError(404, f"model {body.model!r} is not served here; this server serves {server.name!r}",
                             "model_not_found")
        stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        job = ChatJob([{"role": m.role, "content": _text(m.content)} for m in body.messages],
                      body.max_tokens or s.max_new_tokens, body.temperature, stop, body.seed)
        ident, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if not body.stream:
            try:
                [done] = await server.run([job], ROUTE, "messages")
            finally:
                job.cancel.set()
            return {"id": ident, "created": now, "model": server.name,
                    "choices": [{"index": 0, "message": {"content": done.text}, "finish_reason": done.finish_reason}],
                    "usage": _usage(done)}
        return await _stream(server, job, ident, now, bool(body.stream_options and body.stream_options.include_usage),
                             StreamingResponse)


def _usage(done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


async def _stream(server: Server, job: ChatJob, ident: str, now: int, include_usage: bool, StreamingResponse):
    """Wait (within the timeout) for the first piece or the end, so that 422, 429 and 504 are still
    real status codes; then stream the rest."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    job.on_text = lambda piece: loop.call_soon_threadsafe(events.put_nowait, ("text", piece))
    [future] = server.submit([job], ROUTE)
    future.add_done_callback(lambda f: loop.call_soon_threadsafe(events.put_nowait, ("end", f)))
    try:
        first = await asyncio.wait_for(events.get(), server.settings.timeout_s)
    except asyncio.TimeoutError:
        job.cancel.set()
        future.cancel()
        raise ServeError(504, f"no answer within {server.settings.timeout_s:g} s", "timeout") from None
    if first[0] == "end":
        if first[1].cancelled():
            raise ServeError(503, "the server is shutting down", "unavailable")
        if first[1].exception() is not None:
            raise item_error(first[1].exception(), "messages")

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {"id": ident, "object": "chat.completion.chunk", "created": now, "model": server.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def events_out():
        try:
            yield _sse(chunk({"role": "assistant", "content": ""}))
            event = first
            while event[0] == "text":
                yield _sse(chunk({"content": event[1]}))
                event = await events.get()
            if event[1].cancelled() or event[1].exception() is not None:
                yield _sse({"error": {"message": "generation failed", "type": "backend"}})
            else:
                done = event[1].result()
                yield _sse(chunk({}, done.finish_reason))
                if include_usage:
                    yield _sse({"id": ident, "object": "chat.completion.chunk", "created": now,
                                "model": server.name, "choices": [], "usage": _usage(done)})
            yield _sse("[DONE]")
        finally:  # the client went away or the stream ended: stop generating
            job.cancel.set()

    return StreamingResponse(events_out(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
