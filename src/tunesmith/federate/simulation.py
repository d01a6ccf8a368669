"""Run the federation in Flower's simulation runtime: one virtual SuperNode per silo, clients in Ray actors."""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from tunesmith.config import FederatedConfig
from tunesmith.federate.server import ServerHooks

OBJECT_STORE_BYTES = 256 * 1024 ** 2  # Ray's default takes 30% of RAM; messages here are small (a LoRA
# adapter is kilobytes to megabytes) and larger ones spill to disk


def backend_config(fed: FederatedConfig) -> dict:
    """Ray settings: FED.client_cpus cores per client, at most the machine's cores in all, a small object
    store and no dashboard; a client reserves no GPU unless one is present."""
    import torch

    cores = max(1, min(os.cpu_count() or 1, int(fed.n_clients * fed.client_cpus + 0.999)))
    gpus = 1.0 / fed.n_clients if torch.cuda.is_available() else 0.0
    return {"client_resources": {"num_cpus": fed.client_cpus, "num_gpus": gpus},
            "init_args": {"num_cpus": max(cores, int(fed.client_cpus + 0.999)),
                          "object_store_memory": OBJECT_STORE_BYTES, "include_dashboard": False,
                          "logging_level": logging.ERROR, "log_to_driver": True}}


def simulate(spec_path: Path, hooks: ServerHooks, fed: FederatedConfig, seed: int) -> None:
    """Run every round; raises when the ServerApp fails (a round without the replies it needs: FederationError),
    so the command exits non-zero."""
    from flwr.simulation import run_simulation

    from tunesmith.federate.apps import build_client_app, build_server_app

    settings = {"RAY_DEDUP_LOGS": "0",
                "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # a client with no GPU share sees none
                # Ray's memory monitor kills workers when the whole machine passes 95% memory, whoever uses it: on
                # a shared 24 GB machine it failed the BBC benchmark because of other programs. Off unless the user
                # sets it; the kernel's OOM killer still stops a simulation that truly runs out (exit 1)
                "RAY_memory_monitor_refresh_ms": "0",
                # Ray workers start from this environment: keep each to the cores Ray gives it
                "OMP_NUM_THREADS": str(max(1, int(fed.client_cpus)))}
    with _environment_defaults(settings):  # only while Ray starts its workers: the caller's process keeps its own
        run_simulation(server_app=build_server_app(hooks, fed, seed), client_app=build_client_app(spec_path),
                       num_supernodes=fed.n_clients, backend_config=backend_config(fed))


@contextmanager
def _environment_defaults(settings: dict[str, str]):
    """Set the variables of SETTINGS the user has not set, and remove them again afterwards."""
    added = [k for k in settings if k not in os.environ]
    os.environ.update({k: settings[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
