"""A ClientApp for the failure tests: silo 1 raises, the others add 1 to every received tensor.
(A module of its own, so that Ray's workers import it by name.)"""
from __future__ import annotations

import numpy as np


def build(crash_silo: int = 1):
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        if int(context.node_config["partition-id"]) == crash_silo:
            raise RuntimeError(f"silo {crash_silo} crashed")
        arrays = ArrayRecord()
        for name, array in msg.content["arrays"].items():
            arrays[name] = Array(array.numpy() + 1.0)
        return Message(RecordDict({"arrays": arrays, "metrics": MetricRecord({"num-examples": 10})}), reply_to=msg)

    return app


def run(folder: str, clients: int, rounds: int, min_available: int | None) -> None:
    """A federation of the crashing clients under tunesmith's ServerApp; raises when a round fails."""
    from pathlib import Path

    from flwr.simulation import run_simulation

    from tunesmith.config import FederatedConfig
    from tunesmith.federate.apps import build_server_app
    from tunesmith.federate.server import ServerHooks
    from tunesmith.federate.simulation import backend_config

    fed = FederatedConfig(clients=clients, rounds=rounds, min_available_clients=min_available)
    hooks = ServerHooks(initial={"w": np.zeros(4, dtype=np.float32)},
                        evaluate=lambda state: {"loss": float(-state["w"].sum()), "macro_f1": float(state["w"][0])},
                        metric="macro_f1", folder=Path(folder))
    run_simulation(server_app=build_server_app(hooks, fed), client_app=build(), num_supernodes=clients,
                   backend_config=backend_config(fed))

