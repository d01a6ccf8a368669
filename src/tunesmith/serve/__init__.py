"""Serve a finished run over HTTP: `create_app(run_dir)` (FastAPI) and `serve(run_dir, ...)` (uvicorn).

Imported only by `tunesmith serve` and by users who mount the app: FastAPI stays out of `import tunesmith`.
"""
from tunesmith.serve.app import create_app
from tunesmith.serve.server import serve
from tunesmith.serve.settings import ServeSettings, read_api_keys

__all__ = ["create_app", "serve", "ServeSettings", "read_api_keys"]
