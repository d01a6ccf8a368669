"""Federated fine-tuning on Flower (`tunesmith federate`).

Entry point: `federate(config, overrides, deployment) -> Run`. Flower is imported only when a federation
runs (install it with `pip install 'tunesmith[federated]'`). Layout: partition.py (silos from a table),
spec.py (what every process needs), client.py (a silo's training round), server.py (global scoring and the
round record), meter.py (bytes), apps.py (the Flower ClientApp and ServerApp), flower_app.py (module-level
apps for a deployment runtime), simulation.py (Flower's simulation runtime), compare.py (centralized and
local-only models), entry.py (the job).
"""
from __future__ import annotations


def federate(config, overrides=(), deployment: str = "simulation"):
    """Run a federated fine-tuning job and return its run folder (see tunesmith.federate.entry.federate)."""
    from tunesmith.federate.entry import federate as _federate

    return _federate(config, overrides, deployment)


__all__ = ["federate"]
