"""What a server is allowed to do: batch size, queue bound, timeouts, body and item limits, API keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tunesmith.errors import UserError

# Defaults per kind of run: an encoded image is far larger than a text, a chat prompt sits between.
BODY_BYTES = {"text": 1 << 20, "image": 16 << 20, "chat": 1 << 20}
ITEM_CHARS = {"text": 10_000, "image": 12 << 20, "chat": 100_000}


@dataclass
class ServeSettings:
    """Limits of one server process (`tunesmith serve --help` names the same options)."""
    max_batch: int = 32  # inputs per forward pass, and per request
    max_wait_ms: float = 5.0  # how long the first queued input waits for others to join its batch
    max_queue: int | None = None  # inputs waiting; beyond it requests get 429. Default: 8 * max_batch
    timeout_s: float = 30.0  # a request still waiting after this gets 504
    max_body_bytes: int | None = None  # larger bodies get 413. Default: by kind (BODY_BYTES)
    max_item_chars: int | None = None  # a longer text (or base64 image) gets 422. Default: ITEM_CHARS
    max_new_tokens: int = 256  # chat: default and upper bound of max_tokens (also capped by the context)
    backend: str = "torch"
    api_keys: list[str] = field(default_factory=list, repr=False)  # never printed

    def resolved(self, kind: str) -> "ServeSettings":
        """A copy with the per-kind defaults filled in, checked."""
        for name in ("max_batch", "timeout_s", "max_new_tokens"):
            if getattr(self, name) <= 0:
                raise UserError(f"serve --{name.replace('_', '-')} {getattr(self, name)}: expected a positive number")
        if self.max_wait_ms < 0:
            raise UserError(f"serve --max-wait-ms {self.max_wait_ms}: expected 0 or more")
        queue = self.max_queue if self.max_queue is not None else 8 * self.max_batch
        if queue < self.max_batch:
            raise UserError(f"serve --max-queue {queue}: expected at least --max-batch ({self.max_batch}), so that "
                            "one full request fits in the queue")
        body = self.max_body_bytes if self.max_body_bytes is not None else BODY_BYTES[kind]
        if body < 1024:
            raise UserError(f"serve --max-body-bytes {body}: expected at least 1024")
        item = self.max_item_chars if self.max_item_chars is not None else min(ITEM_CHARS[kind], body)
        return ServeSettings(self.max_batch, self.max_wait_ms, queue, self.timeout_s, body, item, self.max_new_tokens,
                             self.backend, list(self.api_keys))


def read_api_keys(path: str | Path) -> list[str]:
    """Bearer tokens, one per line (blank lines and lines starting with # are skipped). The file, not
    the command line, holds them, so they stay out of `ps` and shell history."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the API key file ({type(err).__name__}); expected a UTF-8 text file "
                        "with one key per line") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise UserError(f"{path}: no API key found; expected one key per line")
    short = [n for n, key in lines if len(key) < 16]
    if short:
        raise UserError(f"{path}: the key on line {short[0]} is shorter than 16 characters; use a long random key "
                        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return [key for _, key in lines]
