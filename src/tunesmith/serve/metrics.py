"""Prometheus metrics of one app, in its own registry (several apps can live in one process).

Labels hold the route template (`/v2/models/{name}/infer`), the method and the status code: never
a raw path or anything from a request body, so cardinality stays bounded and no input text leaks.
"""
from __future__ import annotations

import time
from typing import Any

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The collectors the middleware and the batcher update."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("route", "method", "status")
        self.requests = Counter("tunesmith_requests", "HTTP requests answered.", labels, registry=self.registry)
        self.latency = Histogram("tunesmith_request_duration_seconds", "Time to answer an HTTP request.", labels,
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("tunesmith_queue_depth", "Inputs waiting for a forward pass.",
                                 registry=self.registry)
        self.batch_size = Histogram("tunesmith_batch_size",
                                    "Inputs per batch (one forward pass per group of similar length).",
                                    buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.batch_seconds = Histogram("tunesmith_batch_duration_seconds", "Time of one forward pass.",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.shed = Counter("tunesmith_shed_requests", "Requests refused with 429 because the queue was full.",
                            ("route",), registry=self.registry)
        self.ready = Gauge("tunesmith_ready", "1 once the warm-up forward pass has completed.",
                           registry=self.registry)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_of(app, scope: dict) -> str:
    """The template of the route a request matches, or 'unmatched' (404s never add label values)."""
    from starlette.routing import Match

    for route in app.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", "unmatched")
    return "unmatched"


class MetricsMiddleware:
    """Outermost ASGI layer: counts and times every HTTP request, including those the auth and size
    guards refuse."""

    def __init__(self, app, metrics: Metrics, routes_app) -> None:
        self.app, self.metrics, self.routes_app = app, metrics, routes_app

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_of(self.routes_app, scope)
        status = {"code": 500}
        tic = time.perf_counter()

        async def send_and_note(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            labels = (route, scope["method"], str(status["code"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - tic)
