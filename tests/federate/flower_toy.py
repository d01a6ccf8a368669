"""A numpy-only Flower App for the deployment tests (imported by flwr-serverapp / flwr-clientapp processes).

Each client adds the number in its silo file to the global vector; the server runs FedAvg with tunesmith's
reply check (apps._metered) and writes the final vector to run_config["toy-out"]."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

client_app = ClientApp()
server_app = ServerApp()


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    silo = Path(str(context.node_config["silo-file"]))
    value = float(silo.read_text())
    if value < 0:
        raise RuntimeError(f"{silo}: a negative silo crashes its client")
    # a marker that this silo's round-1 task is under way (the kill test waits for it)
    silo.with_suffix(".training").touch()
    time.sleep(float(context.run_config["toy-sleep"]))
    arrays = [a + value for a in msg.content["arrays"].to_numpy_ndarrays()]
    content = RecordDict({"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 1})})
    return Message(content=content, reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    from tunesmith.federate.apps import _metered

    need = int(context.run_config["toy-need"])
    strategy = _metered(FedAvg)(fraction_evaluate=0.0, min_train_nodes=need, min_evaluate_nodes=0,
                                min_available_nodes=need)
    strategy.setup(need)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(2)]),
                            num_rounds=int(context.run_config["toy-rounds"]), timeout=120)
    out = {"vector": result.arrays.to_numpy_ndarrays()[0].tolist(), "traffic": strategy.traffic}
    Path(str(context.run_config["toy-out"])).write_text(json.dumps(out))
