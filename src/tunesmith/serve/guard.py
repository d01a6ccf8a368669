"""Bearer-token auth and the request body limit, as one ASGI layer in front of the routes.

Health probes (`/health/live`, `/health/ready`, `/v2/health/live`, `/v2/health/ready`) and the API
description (`/openapi.json`, `/docs`) stay open: orchestrators probe without credentials, and the
schema holds no secret. Everything else, `/metrics` included (it reveals traffic), needs a key when
the server has any; Prometheus sends one with `authorization: {credentials_file: ...}`.
"""
from __future__ import annotations

import hmac
import json

from starlette.exceptions import HTTPException

OPEN_PATHS = frozenset({"/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/openapi.json",
                        "/docs", "/docs/oauth2-redirect", "/redoc"})


class BodyTooLarge(HTTPException):
    """Raised while reading a chunked body past the limit. An HTTPException, so that FastAPI's body
    parsing passes it on (it turns other exceptions into 400) and the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


def key_matches(presented: str, keys: list[bytes]) -> bool:
    """Constant-time comparison against every key (no early exit that would tell which one is close)."""
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key)
    return found


def error_body(path: str, status: int, message: str, kind: str) -> bytes:
    if path.startswith("/v1/"):  # OpenAI clients read error.message
        return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}}).encode()
    return json.dumps({"error": message, "error_type": kind}).encode()


async def send_error(send, path: str, status: int, message: str, kind: str,
                     headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error_body(path, status, message, kind)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """401 without a valid bearer key (when keys are set); 413 when the body passes `max_body_bytes`,
    judged from Content-Length before reading, and while reading for chunked bodies."""

    def __init__(self, app, api_keys: list[str], max_body_bytes: int) -> None:
        self.app, self.max_body_bytes = app, max_body_bytes
        self.keys = [k.encode("utf-8") for k in api_keys]

    def _authorized(self, scope: dict) -> bool:
        if not self.keys or scope["path"] in OPEN_PATHS:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and key_matches(token.strip(), self.keys)
        return False

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not self._authorized(scope):
            await send_error(send, path, 401, "missing or invalid API key: send 'Authorization: Bearer KEY'",
                             "authentication_error", [(b"www-authenticate", b"Bearer")])
            return
        length = dict(scope["headers"]).get(b"content-length")
        too_large = f"request body larger than {self.max_body_bytes} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await send_error(send, path, 413, too_large, "payload_too_large")
            return
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def noted_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, noted_send)
        except BodyTooLarge:
            if not started:
                await send_error(send, path, 413, too_large, "payload_too_large")
