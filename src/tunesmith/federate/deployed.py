"""The Flower App components of `--deployment local` (import strings `tunesmith.federate.deployed:client_app`
and `:server_app` in the generated app's pyproject.toml). Flower imports this module in each ClientApp and
ServerApp process; everything a process needs comes from the run config (deploy.py writes it) and the spec.

client_app is apps.build_client_app() itself: the client code of the simulation, unchanged. server_app
runs apps.build_server_app with a RoundRecorder in place of the in-memory ServerHooks, since the global
model is scored by the `tunesmith federate` process once the run has finished (deploy.replay).
"""
from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from tunesmith.federate.apps import SPEC_KEY, build_client_app, build_server_app
from tunesmith.federate.deploy import RECORD_KEY, SEED_KEY, RoundRecorder
from tunesmith.federate.spec import load_spec

client_app = build_client_app()
server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """The configured strategy over the SuperNodes of this deployment, rounds recorded for the parent."""
    spec = load_spec(str(context.run_config[SPEC_KEY]))
    hooks = RoundRecorder(Path(str(context.run_config[RECORD_KEY])))
    inner = build_server_app(hooks, spec.run_config.federated, int(context.run_config[SEED_KEY]))
    inner(grid, context)
