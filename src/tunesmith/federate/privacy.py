"""Differential privacy for a federation (`federated.dp`): Flower's DP wrappers, the privacy budget, and a
sanity gate.

Mechanism (DP-FedAvg, McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models"):
each round, every sampled client's update (its new tensors minus the global ones) is clipped to L2 norm
`clip`, the server averages the m clipped updates and adds Gaussian noise of standard deviation
`noise_multiplier * clip / m`. Flower implements it: `DifferentialPrivacyServerSideFixedClipping` (the server
clips) or `DifferentialPrivacyClientSideFixedClipping` with the `fixedclipping_mod` client mod (each client
clips before sending). The unit of privacy is a client (a whole silo), not a row.

Budget: epsilon at `delta` from a Renyi-DP accountant of the sampled Gaussian mechanism, composed over the
rounds. Per round, RDP of order alpha (integer) with sampling rate q = m / clients and sigma =
noise_multiplier is log(sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2))) / (alpha - 1)
(Mironov, Talwar, Zhang 2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism", Sec. 3.3; for
q = 1 it is the Gaussian mechanism's alpha / (2 sigma^2), Mironov 2017). Conversion to (epsilon, delta):
epsilon = min over alpha of RDP + log((alpha-1)/alpha) - (log delta + log alpha) / (alpha - 1) (Balle et al.
2020, "Hypothesis Testing Interpretations and Renyi Differential Privacy", Prop. 12; the same as Opacus).
Flower samples a fixed number of clients without replacement; for q < 1 the Poisson-sampling bound above is
the usual approximation (as in Opacus and TF Privacy). Flower 1.42's own RdpAccountant needs Google's
dp-accounting package and supports only no-amplification accounting, hence this small one.

Gate: a DP model that does not beat the base model (the global model before round 1) on the test split,
by a paired bootstrap interval of accuracy entirely above zero, fails the run.
"""
from __future__ import annotations

import math

import numpy as np

ORDERS = tuple(range(2, 257))


class PrivacyGateError(RuntimeError):
    """The differentially private model is not better than the model before training: the run fails."""


def _log_add(a: np.ndarray, axis: int = 0) -> np.ndarray:
    top = np.max(a, axis=axis)
    return top + np.log(np.sum(np.exp(a - top), axis=axis))


def rdp_sampled_gaussian(q: float, sigma: float, orders=ORDERS) -> np.ndarray:
    """RDP of one release of the sampled Gaussian mechanism at each integer order (see the module doc)."""
    if not 0 < q <= 1:
        raise ValueError(f"sampling rate {q}: expected 0 < q <= 1")
    if sigma <= 0:
        return np.full(len(orders), np.inf)
    out = []
    for alpha in orders:
        k = np.arange(alpha + 1)
        log_binom = np.array([math.lgamma(alpha + 1) - math.lgamma(i + 1) - math.lgamma(alpha - i + 1) for i in k])
        log_q = np.log(q) * k
        log_1mq = (np.log1p(-q) * (alpha - k)) if q < 1 else np.where(k == alpha, 0.0, -np.inf)
        terms = log_binom + log_q + log_1mq + (k * k - k) / (2 * sigma ** 2)
        out.append(float(_log_add(terms)) / (alpha - 1))
    return np.array(out)


def epsilon(q: float, sigma: float, rounds: int, delta: float, orders=ORDERS) -> tuple[float, float | None]:
    """(epsilon, best order) of ROUNDS releases at sampling rate Q and noise multiplier SIGMA, at DELTA."""
    if sigma <= 0:
        return math.inf, None
    alphas = np.array(orders, dtype=float)
    rdp = rounds * rdp_sampled_gaussian(q, sigma, orders)
    eps = rdp + np.log((alphas - 1) / alphas) - (math.log(delta) + np.log(alphas)) / (alphas - 1)
    best = int(np.nanargmin(eps))
    return max(0.0, float(eps[best])), float(alphas[best])


def sampled_per_round(fed, strategy=None) -> int:
    """How many clients a round samples: Flower takes max(int(clients * fraction), min_train_nodes)."""
    floor = getattr(strategy, "min_train_nodes", 1) if strategy is not None else 1
    return max(int(fed.n_clients * fed.fraction_fit), floor, 1)


def budget(fed) -> dict:
    """The privacy budget of the configured run: epsilon at dp.delta after every round."""
    dp = fed.dp
    m = sampled_per_round(fed, _StrategyFloor(fed))
    q = m / fed.n_clients
    eps, order = epsilon(q, dp.noise_multiplier, fed.rounds, dp.delta)
    return {"side": dp.side, "clip": dp.clip, "noise_multiplier": dp.noise_multiplier, "delta": dp.delta,
            "epsilon": eps, "rdp_order": order, "rounds": fed.rounds, "clients_per_round": m,
            "sampling_rate": q, "unit": "client (a whole silo)",
            "accountant": "RDP of the sampled Gaussian mechanism (Mironov, Talwar, Zhang 2019), converted "
                          "with Balle et al. 2020"}


class _StrategyFloor:
    """min_train_nodes as apps.make_strategy sets it, without building a Flower strategy."""

    def __init__(self, fed) -> None:
        self.min_train_nodes = fed.min_available_clients or max(math.ceil(fed.n_clients * fed.fraction_fit), 1)


def client_mod(msg, context, call_next):
    """The ClientApp mod of every tunesmith client: Flower's `fixedclipping_mod` when the server's train
    message carries a clipping norm (client-side DP), else a pass-through."""
    from flwr.app import MessageType
    from flwr.clientapp.mod import fixedclipping_mod
    from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

    if msg.metadata.message_type == MessageType.TRAIN and any(
            KEY_CLIPPING_NORM in record for record in msg.content.config_records.values()):
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def wrap_strategy(strategy, fed):
    """STRATEGY inside Flower's DP wrapper for fed.dp (unchanged without it). Unlike Flower's wrappers, which
    skip a round's aggregation when a client fails, a failed client fails the round (apps.FederationError):
    the noise is calibrated to the number of clients sampled."""
    if fed.dp is None:
        return strategy
    from flwr.serverapp.strategy import (
        DifferentialPrivacyClientSideFixedClipping,
        DifferentialPrivacyServerSideFixedClipping,
    )

    from tunesmith.federate.apps import FederationError

    base = (DifferentialPrivacyServerSideFixedClipping if fed.dp.side == "server"
            else DifferentialPrivacyClientSideFixedClipping)

    class Strict(base):  # type: ignore[misc, valid-type]
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            failed = [m for m in replies if m.has_error()]
            if failed or len(replies) < self.num_sampled_clients:
                reasons = "; ".join(f"node {m.metadata.src_node_id}: {m.error.reason}"[:300] for m in failed)
                why = f"; failures: {reasons}" if reasons else ""
                raise FederationError(
                    f"round {server_round}: {len(replies) - len(failed)} of {self.num_sampled_clients} clients "
                    f"replied successfully; with differential privacy every sampled client must reply (the noise "
                    f"is calibrated to {self.num_sampled_clients} updates){why}")
            return super().aggregate_train(server_round, replies)

    Strict.__name__ = Strict.__qualname__ = f"Strict{base.__name__}"
    return Strict(strategy, noise_multiplier=fed.dp.noise_multiplier, clipping_norm=fed.dp.clip,
                  num_sampled_clients=sampled_per_round(fed, strategy))


def judge(y: np.ndarray, dp_logits: np.ndarray, base_logits: np.ndarray, fed, eval_cfg, seed: int) -> dict:
    """The privacy section of results.json: the budget, and the DP model against the base model on the test
    split (paired bootstrap of accuracy); `passed` is False unless the interval lies above zero."""
    from tunesmith.evaluate.metrics import accuracy
    from tunesmith.evaluate.stats import paired_bootstrap

    versus = paired_bootstrap(y, dp_logits.argmax(1), base_logits.argmax(1), accuracy, eval_cfg.bootstrap_resamples,
                              eval_cfg.confidence_level, seed)
    return {**budget(fed), "dp_minus_base_accuracy": versus, "passed": bool(versus["low"] > 0)}


def gate(privacy: dict) -> None:
    """Raise PrivacyGateError, one line, when the DP model did not beat the base model."""
    if privacy["passed"]:
        return
    d = privacy["dp_minus_base_accuracy"]
    raise PrivacyGateError(
        f"differential privacy gate: the DP model does not beat the base model on the test split (accuracy "
        f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]; epsilon {privacy['epsilon']:.3g} at delta "
        f"{privacy['delta']:g}); lower federated.dp.noise_multiplier, raise federated.dp.clip, or add rounds or "
        "clients")


def test_logits(task, cfg, data, accelerator, global_state: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, DP model logits, base model logits) on the test split. Both models come from one fresh
    prepare with the run's seed, the model every client starts round 1 from (the base); the DP model is it
    with GLOBAL_STATE loaded. A fresh prepare, not the run's model: task.finish may have changed how that
    one reads its inputs (the linear-probe feature cache)."""
    from accelerate.utils import set_seed

    from tunesmith.evaluate.inference import predict_logits
    from tunesmith.models.methods import load_trainable_state

    set_seed(cfg.train.seed)
    p = task.prepare(cfg, data)

    def logits() -> tuple[np.ndarray, np.ndarray]:
        return predict_logits(p.model, p.encoded["test"], p.evaluation_collate, cfg.train.eval_batch_size,
                              accelerator, task.logits)

    base, y = logits()
    load_trainable_state(p.model, global_state)
    dp, _ = logits()
    return y, dp, base
