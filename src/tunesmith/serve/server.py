"""`serve(run_dir, ...)`: run the app under uvicorn; what `tunesmith serve` calls.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and waits for the requests in flight;
then the app's shutdown finishes the queued work, and the process exits with code 0.
"""
from __future__ import annotations

import ipaddress
import json
import math
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from tunesmith.serve.settings import ServeSettings, read_api_keys

ENV = "TUNESMITH_SERVE_OPTIONS"  # how --workers N hands the options to each worker process


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_from_environment():
    """App factory for uvicorn's worker processes (--workers > 1): each loads its own model."""
    from tunesmith.serve.app import create_app

    options = json.loads(os.environ[ENV])
    keys = read_api_keys(options["api_key_file"]) if options["api_key_file"] else []
    return create_app(options["run_dir"], ServeSettings(**options["settings"], api_keys=keys))


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, api_key_file: str | Path | None = None,
          workers: int = 1, log_level: str = "info", **settings) -> None:
    """Serve a finished run over HTTP until SIGTERM or Ctrl-C. `settings`: ServeSettings fields
    (max_batch, max_wait_ms, max_queue, timeout_s, max_body_bytes, backend, ...)."""
    # A server idles between requests. OpenMP's default makes torch's idle threads spin, burning CPU
    # and, on a shared host, starving the next forward pass: measured on 2 busy cores, a one-text
    # MiniLM pass took ~1000 ms spinning and 15-40 ms passive. Read when torch loads, so set it first;
    # an OMP_WAIT_POLICY already in the environment wins.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import uvicorn

    from tunesmith.errors import UserError
    from tunesmith.serve.app import create_app

    if workers < 1:
        raise UserError(f"serve --workers {workers}: expected 1 or more")
    if not 0 <= port <= 65535:
        raise UserError(f"serve --port {port}: expected 0 to 65535")
    keys = read_api_keys(api_key_file) if api_key_file else []
    config = ServeSettings(**settings)
    if not keys and not _loopback(host):
        print(f"warning: serving on {host} without --api-key-file: anyone who can reach port {port} can use the "
              "model", file=sys.stderr)
    graceful = math.ceil(config.timeout_s) + 5  # requests in flight end by their own timeout
    common = dict(host=host, port=port, log_level=log_level, timeout_graceful_shutdown=graceful,
                  server_header=False)
    # uvicorn re-raises the signal after its graceful shutdown; this handler turns that into a normal return
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        if workers == 1:
            app = create_app(run_dir, ServeSettings(**{**asdict(config), "api_keys": keys}))
            uvicorn.run(app, **common)
        else:
            create_app(run_dir, config)  # fail here, once, with one clear line, rather than in every worker
            os.environ[ENV] = json.dumps({"run_dir": str(run_dir), "api_key_file": str(api_key_file or "") or None,
                                          "settings": {k: v for k, v in asdict(config).items() if k != "api_keys"}})
            uvicorn.run("tunesmith.serve.server:app_from_environment", factory=True, workers=workers, **common)
    finally:
        signal.signal(signal.SIGTERM, previous)
