"""Module-level Flower apps for a deployment runtime that loads them by name, e.g. a Flower App's
pyproject.toml: `[tool.flwr.app.components] serverapp = "tunesmith.federate.flower_app:server_app"`,
`clientapp = "tunesmith.federate.flower_app:client_app"`, with run config `tunesmith-spec = "<run>/federation/
spec.json"` and each SuperNode's node config `partition-id=N` (and optionally `silo-file='PATH'`).
Importing this module imports Flower."""
from __future__ import annotations

from tunesmith.federate.apps import build_client_app, build_server_app

client_app = build_client_app()
server_app = build_server_app()
