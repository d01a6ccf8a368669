"""The Flower apps: `build_client_app` and `build_server_app`, the only place that builds them.

Nothing here assumes simulation: the same ClientApp runs in a Ray actor (Flower's simulation runtime)
or in a SuperNode process (`flower-supernode`, deployment runtime), the same ServerApp in a thread of
`run_simulation` or beside a SuperLink.

How a client finds its data: `context.run_config["tunesmith-spec"]` (else the path given to
build_client_app) names the spec (spec.py); `context.node_config["partition-id"]` (Flower's simulation
sets it; a SuperNode gets it with `--node-config "partition-id=2"`) picks the silo, whose file is
spec.silo_files[partition-id] unless `node_config["silo-file"]` names one (a site's own file).
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tunesmith.config import FederatedConfig, parse_strategy
from tunesmith.errors import UserError
from tunesmith.federate.meter import serialized_bytes

if TYPE_CHECKING:  # pragma: no cover
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    from tunesmith.federate.server import ServerHooks

SPEC_KEY = "tunesmith-spec"
SILO_KEY = "silo-file"
# per process: the last silo's model and rows, reused while the same silo comes back (a SuperNode's always
# does). One at a time: a Ray actor serves several silos, and a model per silo ran a shared machine out of
# memory (Ray's memory monitor killed the actors) in the BBC benchmark
_TRAINERS: dict[tuple[str, int, str | None], object] = {}


class FederationError(RuntimeError):
    """A round did not get the replies it needs (crashed, killed or late clients): the run fails."""


def require_flwr() -> None:
    """A UserError naming the install command when Flower is missing."""
    import importlib.util

    if importlib.util.find_spec("flwr") is None:
        raise UserError("tunesmith federate needs Flower; install it with: pip install 'tunesmith[federated]'")


def _to_record(state: dict[str, np.ndarray]):
    from flwr.app import Array, ArrayRecord

    record = ArrayRecord()
    for name in sorted(state):  # the same key order from every party: aggregation pairs arrays by key
        record[name] = Array(np.ascontiguousarray(state[name]))
    return record


def _from_record(record) -> dict[str, np.ndarray]:
    return {name: array.numpy() for name, array in record.items()}


def silo_of(node_config, spec_silos: int) -> tuple[int, str | None]:
    """(silo index, own silo file or None) from a node's config."""
    if "partition-id" not in node_config and SILO_KEY not in node_config:
        raise UserError("this SuperNode has neither partition-id nor silo-file in its node config; start it with "
                        "--node-config \"partition-id=N\" (or silo-file='PATH')")
    silo = int(node_config.get("partition-id", 0))
    own = node_config.get(SILO_KEY)
    if own is None and not 0 <= silo < spec_silos:
        raise UserError(f"partition-id = {silo}: the federation has silos 0..{spec_silos - 1}")
    return silo, (str(own) if own else None)


def build_client_app(spec_path: str | Path | None = None) -> "ClientApp":
    """A ClientApp whose `train` handler trains the received global tensors on this node's silo
    (LocalTrainer: tunesmith's task and training loop) and replies with the tensors that travel, plus
    `num-examples` (FedAvg's weight) and `train-loss`."""
    from flwr.app import Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    from tunesmith.federate.client import LocalTrainer
    from tunesmith.federate.spec import load_spec

    from tunesmith.federate.privacy import client_mod

    app = ClientApp(mods=[client_mod])  # clips the reply when the server asks for client-side DP

    def trainer_for(context: Context) -> LocalTrainer:
        path = str(context.run_config.get(SPEC_KEY, spec_path or ""))
        if not path:
            raise UserError(f"no federation spec: set run_config {SPEC_KEY} or pass spec_path to build_client_app")
        spec = load_spec(path)
        silo, own = silo_of(context.node_config, len(spec.silo_files))
        key = (path, silo, own)
        if key not in _TRAINERS:
            import gc

            _TRAINERS.clear()
            gc.collect()
            _TRAINERS[key] = LocalTrainer(spec, silo, own)
        return _TRAINERS[key]  # type: ignore[return-value]

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        """The head refit's request: this silo's class statistics under the global body (refit.py)."""
        stats = trainer_for(context).statistics(_from_record(msg.content["arrays"]))
        return Message(content=RecordDict({"statistics": _to_record(stats)}), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        trainer = trainer_for(context)
        config = msg.content["config"]
        result = trainer.train(_from_record(msg.content["arrays"]), int(config["local-epochs"]),
                               int(config["server-round"]), float(config.get("proximal-mu", 0.0)))
        # the same keys from every client: Flower refuses to aggregate metric records that differ
        metrics = {"num-examples": result.num_examples, "local-steps": result.steps,
                   "train-loss": float("nan") if result.train_loss is None else float(result.train_loss)}
        content = RecordDict({"arrays": _to_record(result.state), "metrics": MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    return app


def strategy_class(name: str):
    """Flower's strategy class for a `federated.strategy` name."""
    from flwr.serverapp.strategy import FedAdam, FedAvg, FedProx

    return {"fedavg": FedAvg, "fedprox": FedProx, "fedadam": FedAdam}[name]


JOIN_GRACE_S = 30.0


def _await_nodes(grid, expected: int, grace_s: float) -> None:
    """Wait up to GRACE_S for EXPECTED nodes to be online. Flower samples from the nodes registered at that
    moment and, with min_available_clients set, starts as soon as that many are there: without this a healthy
    federation could train its first round on whichever silos registered first."""
    deadline = time.monotonic() + grace_s
    while len(list(grid.get_node_ids())) < expected and time.monotonic() < deadline:
        time.sleep(0.2)


def _metered(base: type):
    """BASE with bytes metering and a strict reply check. The payload of every message sent and received is
    measured as serialized (meter.py); a round with fewer successful replies than required raises
    FederationError, so the ServerApp fails and the run exits non-zero instead of going on quietly."""

    class Metered(base):  # type: ignore[misc, valid-type]
        def setup(self, required: int | None, expected: int = 0) -> None:
            self.required, self.expected, self.traffic, self.sent = required, expected, {}, {}

        def configure_train(self, server_round, arrays, config, grid):
            if server_round == 1:
                _await_nodes(grid, self.expected, JOIN_GRACE_S)
            messages = list(super().configure_train(server_round, arrays, config, grid))
            sizes = [serialized_bytes(m) for m in messages]
            self.sent[server_round] = len(messages)
            self.traffic[server_round] = {"clients_sampled": len(messages), "bytes_sent": sum(sizes),
                                          "bytes_sent_per_client": max(sizes, default=0)}
            return messages

        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            ok = [m for m in replies if not m.has_error()]
            sent = self.sent.get(server_round, len(replies))
            need = self.required if self.required is not None else sent
            traffic = self.traffic.setdefault(server_round, {})
            sizes = [serialized_bytes(m) for m in ok]
            traffic.update(clients_ok=len(ok), clients_failed=sent - len(ok), bytes_received=sum(sizes),
                           bytes_received_per_client=max(sizes, default=0))
            _require(f"round {server_round}", replies, sent, need)
            arrays, metrics = super().aggregate_train(server_round, ok)
            if arrays is not None:  # how far each client's tensors are from the new global ones (L2)
                merged = _from_record(arrays)
                traffic["client_distance"] = [
                    float(np.sqrt(sum(float(np.sum((a - merged[k]) ** 2)) for k, a in
                                      _from_record(m.content["arrays"]).items()))) for m in ok]
                traffic["client_examples"] = [int(next(iter(m.content.metric_records.values()))["num-examples"])
                                              for m in ok]
            if metrics is not None and "train-loss" in metrics:
                traffic["train_loss"] = float(metrics["train-loss"])
            return arrays, metrics

    Metered.__name__ = Metered.__qualname__ = f"Metered{base.__name__}"
    return Metered


def _require(what: str, replies: list, sent: int, need: int) -> None:
    """FederationError unless at least NEED (and one) of the SENT messages got a successful reply."""
    ok = sum(not m.has_error() for m in replies)
    if ok < max(need, 1):
        reasons = "; ".join(f"node {m.metadata.src_node_id}: {_last_line(m.error.reason)}" for m in replies
                            if m.has_error())
        missing = sent - len(replies)
        raise FederationError(f"{what}: {ok} of {sent} clients replied successfully, {need} needed"
                              f"{f' ({missing} gave no reply before the timeout)' if missing else ''}"
                              f"{f'; failures: {reasons}' if reasons else ''}")


def _last_line(reason: str) -> str:
    """The exception line of an error reply (Ray wraps the client's traceback in the reason)."""
    lines = [ln.strip() for ln in str(reason).strip().rstrip("'>").splitlines() if ln.strip()]
    return (lines[-1] if lines else "no reason given")[:300]


def make_strategy(fed: FederatedConfig, initial_record=None):
    """The configured Flower strategy, metered; every client evaluation is left to the server."""
    name, arg = parse_strategy(fed.strategy)
    n = fed.n_clients
    # min_available_clients, when set, is also the round's minimum sample: a round goes on with the clients
    # that remain (Flower's sampling waits until min_train_nodes are online)
    sampled = fed.min_available_clients or max(math.ceil(n * fed.fraction_fit), 1)
    kwargs = dict(fraction_train=fed.fraction_fit, fraction_evaluate=0.0, min_train_nodes=sampled,
                  min_evaluate_nodes=0, min_available_nodes=fed.min_available_clients or n)
    if name == "fedprox":
        kwargs["proximal_mu"] = float(arg)
    if name == "fedadam":
        kwargs.update(eta=fed.server_learning_rate)
    strategy = _metered(strategy_class(name))(**kwargs)
    strategy.setup(fed.min_available_clients, expected=n)
    return strategy


def build_server_app(hooks: "ServerHooks | None" = None, fed: FederatedConfig | None = None,
                     seed: int | None = None) -> "ServerApp":
    """A ServerApp that runs FED.rounds rounds of the configured strategy from HOOKS.initial and scores the
    global model with HOOKS after each (round 0: before training); HOOKS writes rounds.jsonl and the best
    global tensors. A failed round raises FederationError out of the ServerApp.

    Left out, HOOKS, FED and SEED come from the spec named by `context.run_config["tunesmith-spec"]`
    (server.hooks_from_spec), for a ServerApp started by a deployment runtime in a process of its own."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        nonlocal hooks, fed, seed
        if hooks is None or fed is None:
            from tunesmith.federate.server import hooks_from_spec
            from tunesmith.federate.spec import load_spec

            path = str(context.run_config.get(SPEC_KEY, ""))
            if not path:
                raise UserError(f"no federation spec: set run_config {SPEC_KEY} or pass hooks to build_server_app")
            cfg = load_spec(path).run_config
            fed = fed or cfg.federated
            seed = cfg.train.seed if seed is None else seed
            hooks = hooks or hooks_from_spec(path)
        random.seed(0 if seed is None else seed)  # Flower samples the round's clients with the random module
        strategy = make_strategy(fed)

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            record = hooks.record_round(server_round, _from_record(arrays), strategy.traffic.get(server_round, {}))
            return MetricRecord(record["validation"])

        from tunesmith.federate.privacy import wrap_strategy

        runner = wrap_strategy(strategy, fed)  # Flower's DP wrapper around it when federated.dp is set
        runner.start(grid=grid, initial_arrays=_to_record(hooks.initial), num_rounds=fed.rounds,
                     timeout=fed.round_timeout, train_config=ConfigRecord({"local-epochs": fed.local_epochs}),
                     evaluate_fn=evaluate)
        if fed.refit_head:
            _refit_head(grid, hooks, fed)

    return app


def _refit_head(grid, hooks: "ServerHooks", fed: FederatedConfig) -> None:
    """Ask every silo for its class statistics under the best global body, pool them and offer the LDA heads
    to HOOKS.refit, which keeps one only if it validates better than the averaged head (refit.py)."""
    from flwr.app import Message, MessageType, RecordDict

    from tunesmith.federate import refit
    from tunesmith.federate.server import load_global

    state = {k: v.numpy() for k, v in load_global(hooks.folder).items()}
    record = _to_record(state)
    messages = [Message(content=RecordDict({"arrays": record}), dst_node_id=node, message_type=MessageType.QUERY)
                for node in sorted(grid.get_node_ids())]
    replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
    _require("head refit", replies, len(messages), fed.min_available_clients or len(messages))
    ok = [m for m in replies if not m.has_error()]
    pooled = refit.pool([_from_record(m.content["statistics"]) for m in ok])
    traffic = {"silos": len(ok), "bytes_sent": sum(serialized_bytes(m) for m in messages),
               "bytes_received": sum(serialized_bytes(m) for m in ok),
               "bytes_received_per_client": max(serialized_bytes(m) for m in ok)}
    hooks.refit(state, {f"lda shrinkage {a}": refit.lda_head(pooled, a) for a in refit.SHRINKAGES}, traffic)
