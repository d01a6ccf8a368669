"""What every route shares: the loaded run, its settings and metrics, the batcher, and how a request's
inputs go through the queue (429 when full, 504 past the timeout, per-item errors)."""
from __future__ import annotations

import asyncio
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from tunesmith.serve.batcher import Batcher, Closed, ItemError, QueueFull
from tunesmith.serve.metrics import Metrics
from tunesmith.serve.settings import ServeSettings


class ServeError(Exception):
    """An answer other than 200: status, message, error type, extra headers."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


@dataclass
class Server:
    """One served run. `make_batcher` builds the batcher at startup, so an app can start again after
    a shutdown (tests open several clients on one app)."""
    name: str
    kind: str  # "text", "image" or "chat"
    settings: ServeSettings
    model: Any
    make_batcher: Callable[["Server"], Batcher]
    metrics: Metrics = field(default_factory=Metrics)
    batcher: Batcher | None = None
    info: dict = field(default_factory=dict)

    def start(self) -> None:
        self.metrics.ready.set(0)
        self.batcher = self.make_batcher(self)
        self.batcher.start()

    def stop(self) -> None:
        """Finish the queued work, then stop (the graceful half of a SIGTERM)."""
        if self.batcher is not None:
            self.batcher.close()

    def not_ready_reason(self) -> str | None:
        if self.batcher is None:
            return "not started"
        if self.batcher.warmup_error:
            return f"warm-up failed: {self.batcher.warmup_error}"
        if not self.batcher.ready.is_set():
            return "warming up"
        return None

    def submit(self, payloads: Sequence, route: str) -> list[Future]:
        if self.batcher is None:
            raise ServeError(503, "the server has not started", "unavailable", {"Retry-After": "1"})
        try:
            return self.batcher.submit(payloads)
        except QueueFull as full:
            self.metrics.shed.labels(route).inc()
            raise ServeError(429, f"too many requests waiting ({self.settings.max_queue} inputs); retry after "
                             f"{full.retry_after} s", "overloaded", {"Retry-After": str(full.retry_after)}) from None
        except Closed:
            raise ServeError(503, "the server is shutting down", "unavailable") from None

    async def run(self, payloads: Sequence, route: str, field_name: str = "inputs") -> list:
        """Results in input order. The first failed input decides the answer: 422 for an input that
        cannot be processed, 500 for a failed forward pass; others batched with it are unaffected."""
        futures = self.submit(payloads, route)
        waiting = [asyncio.wrap_future(f) for f in futures]
        try:
            results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True),
                                             self.settings.timeout_s)
        except asyncio.TimeoutError:
            for f in futures:  # inputs still queued are dropped by the worker
                f.cancel()
            raise ServeError(504, f"no answer within {self.settings.timeout_s:g} s", "timeout") from None
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                raise item_error(result, f"{field_name}[{i}]" if len(payloads) > 1 else field_name)
        return results


def item_error(err: BaseException, where: str) -> ServeError:
    if isinstance(err, ItemError):
        return ServeError(422, f"{where}: {err}", "validation")
    return ServeError(500, f"{where}: the forward pass failed ({type(err).__name__})", "backend")
